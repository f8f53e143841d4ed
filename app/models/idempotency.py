"""The `idempotency_keys` table: one row per `Idempotency-Key` a user sent with a write that succeeded.

The row is written by the same statement as the write it records (app/queries/idempotency.py), so a write and
its key are committed together or not at all: there is no second store and no "in progress" marker that a
timeout could leave behind. A retry with the key finds the row and is answered from it.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, SmallInteger, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import TABLE_CONFIG


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    # The primary key serves the lookup (user, operation, key); this index serves the purge of expired keys.
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)
    model_config = TABLE_CONFIG

    # A key is scoped to its user and its operation: the same key from another user, or on another operation,
    # is another key.
    user_id: uuid.UUID = Field(sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")], primary_key=True)
    operation: str = Field(sa_type=Text, primary_key=True)  # the route's operation id, e.g. "tasks_create"
    key: str = Field(sa_type=Text, primary_key=True)
    # SHA-256 (hex) of what the request asked for: method, route, its parameters, body, If-Match.
    fingerprint: str = Field(sa_type=Text, nullable=False)
    status_code: int = Field(sa_type=SmallInteger, nullable=False)
    # The written row as JSON: the response's body is this row through the route's response model, and its
    # Location and ETag come from the row's id and version, as they did the first time.
    response: dict[str, Any] = Field(sa_type=JSONB, nullable=False)
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
