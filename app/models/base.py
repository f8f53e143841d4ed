"""Pieces shared by every table: the timestamp columns and the naming convention for constraints."""

from datetime import datetime

from sqlalchemy import DateTime, MetaData, text
from sqlmodel import Field, SQLModel

# Stable, predictable constraint names, so hand-written migrations can refer to them and `alembic check`
# compares like with like.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


class TimestampMixin(SQLModel):
    """`created_at` / `updated_at` as timestamptz set by the database.

    `updated_at` is bumped by the `set_updated_at` trigger (see the initial migration), so raw SQL updates
    are covered too and the application never has to remember it.
    """

    created_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
    updated_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
