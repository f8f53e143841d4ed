"""The `users` table and the user API schemas."""

import uuid
from datetime import datetime

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from sqlalchemy import DateTime, Index, Text, func, text
from sqlmodel import Field

from app.models.base import TimestampMixin
from app.models.fields import FullName, Password, StorableStr


class User(TimestampMixin, table=True):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are stored lower-cased by the API; the functional index makes uniqueness hold for any writer.
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        primary_key=True,
        sa_column_kwargs={"server_default": text("gen_random_uuid()")},
    )
    email: str = Field(sa_type=Text, nullable=False)
    hashed_password: str = Field(sa_type=Text, nullable=False)
    full_name: str | None = Field(default=None, sa_type=Text)
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    # Access tokens issued before this moment no longer work (set when the password changes); NULL: all do.
    tokens_valid_from: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class UserRead(BaseModel):
    """What the API shows of a user: never the password hash."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5b0f3c1e-8d1a-4c55-9a3e-0c6f2b7d9e10",
                    "email": "ada@example.com",
                    "full_name": "Ada Lovelace",
                    "created_at": "2026-11-22T04:30:00Z",
                    "updated_at": "2026-11-22T04:30:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    email: str
    full_name: str | None
    created_at: datetime
    updated_at: datetime


class UserUpdate(BaseModel):
    """Partial update of the current user. `full_name: null` clears the name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"full_name": "Ada King"},
                {"password": "a new long passphrase", "current_password": "correct horse battery"},
            ]
        },
    )

    full_name: FullName | None = None
    # Absent means "keep the password"; null is not a password, so the schema must not call it nullable.
    password: Password = pydantic.Field(  # type: ignore[assignment]
        default=None, description="The new password; requires `current_password`."
    )
    current_password: StorableStr | None = pydantic.Field(
        default=None, validate_default=True, max_length=128, description="Required to change the password."
    )

    @field_validator("password", mode="before")
    @classmethod
    def _password_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; omit it to keep the current password")
        return value

    @field_validator("current_password")
    @classmethod
    def _current_password_with_new_one(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("password") is not None and value is None:
            raise ValueError("is required to change the password")
        return value
