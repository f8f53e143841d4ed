"""Create the database if it is missing, apply every migration, verify the schema is at head. Re-runnable.

Works against the embedded PostgreSQL (default) or any DATABASE_URL_DIRECT / DATABASE_URL, Neon included.
"""

import asyncio
import sys

import _bootstrap
import _pg


async def create_database_if_missing() -> None:
    import asyncpg

    from app.config import settings
    from app.db import connect_to

    target = settings.database_direct
    url = target.url
    try:
        connection = await connect_to(target)
    except asyncpg.InvalidCatalogNameError:
        maintenance = await connect_to(target, database="postgres")
        try:
            # Identifiers cannot be parameters; quote it as PostgreSQL does.
            await maintenance.execute('CREATE DATABASE "{}"'.format(url.database.replace('"', '""')))
            print(f"created database {url.database}")
        finally:
            await maintenance.close()
    else:
        await connection.close()


def migrate_and_verify() -> str:
    from alembic import command

    config = _pg.alembic_config()
    command.upgrade(config, "head")
    command.check(config)  # raises if the models and the migrated schema differ
    return _pg.code_head(config)


def main() -> int:
    server = _bootstrap.database_ready()
    from app.config import settings

    asyncio.run(create_database_if_missing())
    head = migrate_and_verify()
    import os

    embedded_dir = server.data_dir if server else os.environ.get("EMBEDDED_PG_DATA_DIR")
    where = f"embedded PostgreSQL in {embedded_dir}" if embedded_dir else "configured database"
    print(f"database ready at revision {head}: {settings.database_direct.safe_url} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
