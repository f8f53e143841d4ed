"""auth_attempts: per-client counters for the login and register rate limit (fixed windows).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A new, empty table: creating it takes no lock on existing tables. Rows are short-lived (each counted attempt
deletes a few rows whose window has ended, through the window_start index), so the table stays about as large
as the number of clients seen in one window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    op.create_table(
        "auth_attempts",
        sa.Column("client_key", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("client_key", name="pk_auth_attempts"),
    )
    op.create_index("ix_auth_attempts_window_start", "auth_attempts", ["window_start"])


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    op.drop_table("auth_attempts")  # drops its index with it
