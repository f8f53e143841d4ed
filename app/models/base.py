"""Pieces shared by every table: the timestamp columns and the naming convention for constraints."""

from datetime import datetime
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import DateTime, MetaData, Table, inspect, text
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

# The tables' pydantic validators are built on first use, not at import: the app reads and writes rows with
# statements on the models (app/queries/) and never validates a table model.
TABLE_CONFIG: Any = ConfigDict(defer_build=True)  # Any: SQLModel types model_config with a private TypedDict


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model: its columns by name (`table_of(Task).c[name]`), for the statements of
    `app/queries/` that choose a column at run time (a sort key, a literal's type).

    sqlmodel's classes do not declare `__table__` to type checkers; the mapper's table is the same object.
    """
    table = inspect(model).local_table
    assert isinstance(table, Table), f"{model.__name__} is not a table model"
    return table


class TimestampMixin(SQLModel):
    """`created_at` / `updated_at` as timestamptz set by the database.

    `updated_at` is bumped by the `set_updated_at` trigger (see the initial migration), so raw SQL updates
    are covered too and the application never has to remember it.
    """

    model_config = TABLE_CONFIG

    created_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
    updated_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
