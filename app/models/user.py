"""The `users` table. API schemas for users live with the routes that use them."""

import uuid

from sqlalchemy import Index, Text, func, text
from sqlmodel import Field

from app.models.base import TimestampMixin


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
    email: str = Field(sa_type=Text, nullable=False)  # type: ignore[call-overload]
    hashed_password: str = Field(sa_type=Text, nullable=False)  # type: ignore[call-overload]
    full_name: str | None = Field(default=None, sa_type=Text)  # type: ignore[call-overload]
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
