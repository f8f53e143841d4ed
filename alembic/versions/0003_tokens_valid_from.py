"""users.tokens_valid_from: a password change ends the sessions (access tokens) issued before it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Nullable with no default, so adding it is a catalog-only change (no table rewrite, a brief lock): NULL means
every unexpired token of the user is valid, as before this revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("users", sa.Column("tokens_valid_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("users", "tokens_valid_from")
