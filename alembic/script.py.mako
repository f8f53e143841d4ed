"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Hand-written: describe what changes and why, keep the downgrade real, and check with `alembic check`.
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401 (most revisions use it; ruff leaves the generated file clean)
from alembic import op
% if imports:
${imports}
% endif

revision: str = "${up_revision}"
down_revision: str | None = ${repr(down_revision).replace("'", '"')}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels).replace("'", '"')}
depends_on: str | Sequence[str] | None = ${repr(depends_on).replace("'", '"')}


def upgrade() -> None:
    # Neon: keep locks short. A migration that rewrites a large table belongs in several steps.
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Bound every statement too; raise it (or use several revisions) for deliberate long backfills.
    op.execute("SET LOCAL statement_timeout = '60s'")
    # CREATE INDEX CONCURRENTLY cannot run in a transaction: see docs/database.md, "Writing a migration".
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    ${downgrades if downgrades else "pass"}
