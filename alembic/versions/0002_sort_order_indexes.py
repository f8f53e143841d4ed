"""Indexes for the sort orders that had none: -due_date, updated_at (both ways), priority (both ways).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Without them `GET /tasks?sort=priority` (or updated_at, or -due_date) sorts all of a user's tasks for every
page: ~100 ms at 100,000 tasks against ~10 ms for the indexed orders. With them every sort order walks an
index and stops after one page.

The priority index is on the exact expression the list query sorts by (app.models.task.priority_rank):
PostgreSQL uses an expression index only for an identical expression.

Built CONCURRENTLY (outside a transaction), so a live table keeps taking writes. A build that fails leaves an
INVALID index behind; it is dropped before the retry.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY_RANK = (
    "(CASE priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 WHEN 'urgent' THEN 3 ELSE NULL END)"
)

INDEXES = {
    "ix_tasks_user_due_desc": "(user_id, due_date DESC NULLS LAST, id DESC)",
    "ix_tasks_user_updated": "(user_id, updated_at, id)",
    "ix_tasks_user_priority_rank": f"(user_id, {PRIORITY_RANK}, id)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")  # session level: there is no transaction for SET LOCAL here
        for name, definition in INDEXES.items():
            op.execute(
                f"""
                DO $$ BEGIN
                    IF EXISTS (SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid
                               WHERE pg_class.relname = '{name}' AND NOT pg_index.indisvalid) THEN
                        DROP INDEX {name};
                    END IF;
                END $$
                """
            )
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON tasks {definition}")
        op.execute("RESET lock_timeout")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        for name in reversed(list(INDEXES)):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute("RESET lock_timeout")
