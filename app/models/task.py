"""The `tasks` table and the vocabularies of its status and priority."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, CheckConstraint, DateTime, ForeignKey, Index, Text, text
from sqlmodel import Field

from app.models.base import TimestampMixin


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


class TaskPriority(StrEnum):
    """Declared in rank order: low < medium < high < urgent."""

    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


def _sql_list(values: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


class Task(TimestampMixin, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        # Status and priority are text + CHECK rather than PostgreSQL enum types: asyncpg must introspect
        # enum types on every new connection, which costs a round trip per Lambda invocation.
        CheckConstraint(f"status IN ({_sql_list(TaskStatus)})", name="status_valid"),
        CheckConstraint(f"priority IN ({_sql_list(TaskPriority)})", name="priority_valid"),
        CheckConstraint("length(btrim(title)) BETWEEN 1 AND 200", name="title_length"),
        CheckConstraint("length(description) <= 10000", name="description_length"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("(status = 'done') = (completed_at IS NOT NULL)", name="completed_at_matches_status"),
        # Per-user listings: default order, filtered by status, filtered by priority, by due date.
        Index("ix_tasks_user_created", "user_id", "created_at", "id"),
        Index("ix_tasks_user_status_created", "user_id", "status", "created_at", "id"),
        Index("ix_tasks_user_priority_created", "user_id", "priority", "created_at", "id"),
        Index("ix_tasks_user_due", "user_id", "due_date", "id"),
        Index("ix_tasks_tags_gin", "tags", postgresql_using="gin"),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        primary_key=True,
        sa_column_kwargs={"server_default": text("gen_random_uuid()")},
    )
    user_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")],
        nullable=False,
    )
    title: str = Field(sa_type=Text, nullable=False)  # type: ignore[call-overload]
    description: str | None = Field(default=None, sa_type=Text)  # type: ignore[call-overload]
    status: str = Field(
        default=TaskStatus.todo.value,
        sa_type=Text,  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": TaskStatus.todo.value},
        nullable=False,
    )
    priority: str = Field(
        default=TaskPriority.medium.value,
        sa_type=Text,  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": TaskPriority.medium.value},
        nullable=False,
    )
    due_date: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    # text[] (not varchar[]): asyncpg decodes text[] without a per-connection pg_type lookup.
    tags: list[str] = Field(
        default_factory=list,
        sa_type=ARRAY(Text),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": text("'{}'::text[]")},
        nullable=False,
    )
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")}, nullable=False)
