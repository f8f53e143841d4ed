"""The `auth_attempts` table: per-client counters of login and register attempts (fixed windows).

It lives in PostgreSQL because the limit must hold across Lambda instances, and it is updated inside the
statement each auth route already runs (app/queries/rate_limit.py), so it costs no round trip.
"""

from datetime import datetime

from sqlalchemy import DateTime, Index, Text, text
from sqlmodel import Field, SQLModel

from app.models.base import TABLE_CONFIG  # the naming convention of app.models.base applies here too


class AuthAttempt(SQLModel, table=True):
    __tablename__ = "auth_attempts"
    # Expired rows are found through this index by the cleanup that rides along with every counted attempt.
    __table_args__ = (Index("ix_auth_attempts_window_start", "window_start"),)
    model_config = TABLE_CONFIG

    # "ip:<address or IPv6 /64>" or "email:<sha256 of the lower-cased email>"; see app/api/rate_limit.py.
    client_key: str = Field(sa_type=Text, primary_key=True)
    window_start: datetime = Field(
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
    )
    count: int = Field(sa_column_kwargs={"server_default": text("1"), "nullable": False})
