"""`make db-reset`: drop our schema (every table of the models, alembic_version, our functions) and migrate
to head again, leaving an empty, current database. Refuses when ENVIRONMENT=production; asks first unless
--yes (YES=1).

Only our objects are dropped, by name, not the whole `public` schema: on Neon the schema's owner and grants
belong to the platform, and anything else a user keeps in the database stays untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _bootstrap

# Functions our migrations create. Tables come from the models; a migration that adds a function, type or
# sequence of its own adds it here too (tests/test_db_ops.py checks that a reset leaves nothing behind).
OUR_FUNCTIONS = ("set_updated_at()",)


def refuse_in_production(action: str) -> None:
    import _pg

    if _pg.is_production():
        raise SystemExit(
            f"Refusing to {action}: ENVIRONMENT=production. Production data is recovered with Neon's "
            "point-in-time restore or a branch (docs/database.md, 'Recovery'), never by dropping tables."
        )


async def drop_our_schema(connection) -> None:
    """Drop our tables, functions and alembic_version in one transaction (all or nothing)."""
    from app.models import metadata

    async with connection.transaction():
        # Fail fast instead of queueing behind a running app's locks (and blocking everyone behind us).
        await connection.execute("SET LOCAL lock_timeout = '5s'")
        tables = [table.name for table in reversed(metadata.sorted_tables)] + ["alembic_version"]
        for table in tables:
            await connection.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
        for function in OUR_FUNCTIONS:
            await connection.execute(f"DROP FUNCTION IF EXISTS {function} CASCADE")


async def describe(connection) -> str:
    """A line saying what is about to be lost."""
    import _pg

    counts = await _pg.row_counts(connection)
    revision = None
    if "public.alembic_version" in counts:
        revision = await connection.fetchval("SELECT version_num FROM alembic_version")
    rows = ", ".join(
        f"{name.split('.', 1)[1]}: {n}" for name, n in sorted(counts.items()) if name != "public.alembic_version"
    )
    return f"revision {revision or '(none)'}; rows: {rows or 'no tables'}"


async def reset(yes: bool) -> None:
    import _pg

    connection = await _pg.connect()
    try:
        db = _pg.target()
        _pg.confirm(
            f"This drops every table of the task API in {db.safe_url} ({await describe(connection)}) and "
            "migrates an empty schema to head.",
            expected=db.url.database or "",
            yes=yes,
            how_to_skip="run `make db-reset YES=1` to reset.",
        )
        try:
            await drop_our_schema(connection)
        except Exception as exc:  # lock_timeout and friends: say what to do, not only what happened
            raise SystemExit(
                f"Reset failed, nothing was dropped: {exc}\nIf another session holds a lock (make dev, a "
                "psql session), stop it and retry."
            ) from None
    finally:
        await connection.close()


def migrate_to_head() -> str:
    import _pg
    from alembic import command

    config = _pg.alembic_config()
    command.upgrade(config, "head")
    return _pg.code_head(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (make db-reset YES=1)")
    args = parser.parse_args(argv)
    _bootstrap.database_ready()
    refuse_in_production("reset the database")

    import _pg
    from init_db import create_database_if_missing

    asyncio.run(create_database_if_missing())
    asyncio.run(reset(args.yes))
    head = migrate_to_head()
    print(f"reset done: {_pg.target().safe_url} is empty and at revision {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
