"""Async Alembic environment: NullPool, the direct (non-pooled) URL from the app's settings, our models."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.config import settings
from app.db import asyncpg_connect_kwargs
from app.models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata

# Expression indexes that PostgreSQL reports back reformatted over several lines, which Alembic's comparison does
# not normalise (it strips spaces and casts, not newlines), so `alembic check` would always see a change.
# tests/test_query_plans.py checks their definition and that the planner uses them instead.
NOT_COMPARED_INDEXES = {"ix_tasks_user_priority_rank"}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in NOT_COMPARED_INDEXES)


def database_target():
    """A URL passed programmatically (tests, scripts) wins; otherwise the direct URL from settings."""
    from app.config import normalize_database_url

    explicit = config.attributes.get("database_url")
    if explicit:
        return normalize_database_url(explicit, variable="database_url")
    return settings.database_direct


def run_migrations_offline() -> None:
    context.configure(url=database_target().url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_server_default=False,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    target = database_target()
    # A plain engine (no first-connect shortcuts): migrations reflect, so they need the real default schema.
    connect_args = asyncpg_connect_kwargs(target, settings)
    if not target.behind_pooler:
        # A role-level statement_timeout set for the API (docs/reliability.md, statement timeouts) must not cancel
        # a long index build: this session gets DB_COMMAND_TIMEOUT (280 s in the `migrate` function) instead. A startup
        # parameter is fine here because migrations connect directly; a pooler would reject it.
        timeout_ms = str(int(settings.DB_COMMAND_TIMEOUT * 1000))
        connect_args["server_settings"] = {**connect_args["server_settings"], "statement_timeout": timeout_ms}
    engine = create_async_engine(target.url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
