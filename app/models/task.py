"""The `tasks` table, the vocabularies of its status and priority, and the task API schemas."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Text, case, literal_column, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.expression import Grouping
from sqlmodel import Field

from app.models.base import TimestampMixin
from app.models.fields import (
    OFFSET_MESSAGE,
    Description,
    OffsetDatetime,
    QueryDatetime,
    Tag,
    TagList,
    Title,
    empty_list,
    storable_text,
)


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


PRIORITY_RANK = {priority.value: rank for rank, priority in enumerate(TaskPriority)}


def priority_rank(priority: Any) -> Any:
    """`CASE <priority> WHEN 'low' THEN 0 ... END`, with the constants inline rather than bound parameters.

    PostgreSQL uses an expression index only for the identical expression, so the sort by priority
    (app/queries/tasks.py) and the index `ix_tasks_user_priority_rank` are both built from this.
    """
    whens: dict[Any, Any] = {
        literal_column(f"'{value}'"): literal_column(str(rank)) for value, rank in PRIORITY_RANK.items()
    }
    # ELSE NULL spelled out, as PostgreSQL reports the index definition (tests/test_query_plans.py compares it).
    return case(whens, value=priority, else_=literal_column("NULL"))


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
        # The remaining sort orders, so every `sort=` walks an index instead of sorting all of a user's tasks.
        Index("ix_tasks_user_due_desc", "user_id", text("due_date DESC NULLS LAST"), text("id DESC")),
        Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
        # (Grouping: PostgreSQL needs an index expression in parentheses.)
        Index("ix_tasks_user_priority_rank", "user_id", Grouping(priority_rank(literal_column("priority"))), "id"),
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
    title: str = Field(sa_type=Text, nullable=False)
    description: str | None = Field(default=None, sa_type=Text)
    status: str = Field(
        default=TaskStatus.todo.value,
        sa_type=Text,
        sa_column_kwargs={"server_default": TaskStatus.todo.value},
        nullable=False,
    )
    priority: str = Field(
        default=TaskPriority.medium.value,
        sa_type=Text,
        sa_column_kwargs={"server_default": TaskPriority.medium.value},
        nullable=False,
    )
    due_date: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # text[] (not varchar[]): asyncpg decodes text[] without a per-connection pg_type lookup. PostgreSQL's own
    # ARRAY type: its comparator has @> (contains) and && (overlap), which the GIN index serves.
    tags: list[str] = Field(
        default_factory=empty_list,
        sa_type=ARRAY(Text),
        sa_column_kwargs={"server_default": text("'{}'::text[]")},
        nullable=False,
    )
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")}, nullable=False)


DUE_DATE_DESCRIPTION = (
    "ISO 8601 with a timezone offset (`Z` or `+02:00`); stored and returned in UTC. A date-time without an "
    "offset is rejected with 422, because its instant would be ambiguous."
)

TASK_EXAMPLE: dict[str, Any] = {
    "id": "0b7e7d1c-4a4e-4f0a-9b8e-2f1d6c3a5e71",
    "title": "Renew the passport",
    "description": "Photos first",
    "status": "todo",
    "priority": "high",
    "due_date": "2026-12-01T17:00:00Z",
    "tags": ["errand", "travel"],
    "completed_at": None,
    "created_at": "2026-11-22T04:30:00Z",
    "updated_at": "2026-11-22T04:30:00Z",
    "version": 1,
}


class TaskCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Renew the passport",
                    "description": "Photos first",
                    "priority": "high",
                    "due_date": "2026-12-01T18:00:00+01:00",
                    "tags": ["Errand", " travel "],
                }
            ]
        },
    )

    title: Title
    description: Description | None = None
    status: TaskStatus = TaskStatus.todo
    priority: TaskPriority = TaskPriority.medium
    due_date: OffsetDatetime | None = pydantic.Field(default=None, description=DUE_DATE_DESCRIPTION)
    tags: TagList = pydantic.Field(default_factory=empty_list)


# Fields a PATCH may not set to null (they have no "empty" state); description and due_date may.
NOT_NULLABLE = ("title", "status", "priority", "tags")


class TaskUpdate(BaseModel):
    """A partial update: only the fields present are changed; `null` clears description and due_date."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "done"}, {"title": "Renew both passports", "due_date": None}]},
    )

    # `None` here only means "absent, leave unchanged": the validator below refuses an explicit null, so the
    # schema shows these fields as non-nullable. Typing them `X | None` would document null as accepted.
    title: Title = None  # type: ignore[assignment]
    description: Description | None = None
    status: TaskStatus = None  # type: ignore[assignment]
    priority: TaskPriority = None  # type: ignore[assignment]
    due_date: OffsetDatetime | None = pydantic.Field(default=None, description=DUE_DATE_DESCRIPTION)
    tags: TagList = None  # type: ignore[assignment]

    @field_validator(*NOT_NULLABLE, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class TaskRead(BaseModel):
    """A task as the API shows it: the routes return rows of the `tasks` table, which FastAPI validates into this."""

    model_config = ConfigDict(json_schema_extra={"examples": [TASK_EXAMPLE]})

    id: uuid.UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: datetime | None
    tags: list[str]
    completed_at: datetime | None = pydantic.Field(
        description="Set when the task moves to done, cleared when it leaves done."
    )
    created_at: datetime
    updated_at: datetime
    version: int = pydantic.Field(description="Increases by one on every change; sent as the ETag.")


class TaskPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [TASK_EXAMPLE], "next_cursor": None}]})

    items: list[TaskRead]
    next_cursor: str | None = pydantic.Field(
        description="Pass as `cursor` (same filters and sort) for the next page; null on the last page."
    )


class TagCount(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"tag": "errand", "count": 3}]})

    tag: str
    count: int


class TaskSort(StrEnum):
    created_at = "created_at"
    created_at_desc = "-created_at"
    updated_at = "updated_at"
    updated_at_desc = "-updated_at"
    due_date = "due_date"
    due_date_desc = "-due_date"
    priority = "priority"
    priority_desc = "-priority"

    @property
    def key(self) -> str:
        return self.value.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


SearchText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class TaskListQuery(BaseModel):
    """Query parameters of `GET /tasks`. Every filter is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    status: list[TaskStatus] = pydantic.Field(default_factory=empty_list, description="Repeatable: any of these.")
    priority: list[TaskPriority] = pydantic.Field(default_factory=empty_list, description="Repeatable: any of these.")
    tag: list[Tag] = pydantic.Field(
        default_factory=empty_list, max_length=20, description="Repeatable: the task has all of these tags."
    )
    any_tag: list[Tag] = pydantic.Field(
        default_factory=empty_list,
        max_length=20,
        description="Repeatable: the task has at least one of these tags.",
    )
    overdue: bool = pydantic.Field(
        default=False, description="`true`: only tasks due before now and not done. `false` does not filter."
    )
    due_before: QueryDatetime | None = pydantic.Field(
        default=None, description="Due strictly before this instant; " + OFFSET_MESSAGE + "."
    )
    due_after: QueryDatetime | None = pydantic.Field(
        default=None, description="Due strictly after this instant; " + OFFSET_MESSAGE + "."
    )
    q: SearchText | None = pydantic.Field(
        default=None,
        description="Case-insensitive substring of the title or the description; `%` and `_` match "
        "literally. Up to 200 characters; blank means no text filter.",
    )
    sort: TaskSort = pydantic.Field(
        default=TaskSort.created_at_desc,
        description="A leading `-` sorts descending. Ties are broken by id; tasks without a due date come "
        "last in both directions; priority sorts by rank (low < medium < high < urgent).",
    )
    limit: int = pydantic.Field(default=20, ge=1, le=100, description="Page size.")
    cursor: str | None = pydantic.Field(
        default=None, max_length=2048, description="`next_cursor` of the previous page (opaque)."
    )

    @field_validator("q", "cursor")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if not value:
            return None  # blank means "not given" (q is already trimmed)
        return storable_text(value)
