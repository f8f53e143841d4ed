"""What the database scripts share: the Alembic config and head, connecting to the direct URL, handing
credentials to libpq tools without exposing them, inspecting a database, asking for confirmation.

Import after `_bootstrap.database_ready()`: settings are read once, at the first import of `app.config`.
"""

from __future__ import annotations

import os
import sys

import _bootstrap

ROOT = _bootstrap.ROOT


def alembic_config():
    """Alembic's config; ALEMBIC_CONFIG (Alembic's own variable) may point at another alembic.ini."""
    from alembic.config import Config

    return Config(os.environ.get("ALEMBIC_CONFIG") or str(ROOT / "alembic.ini"))


def code_head(config=None) -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(config or alembic_config()).get_heads()
    if len(heads) != 1:
        raise SystemExit(f"The migrations have {len(heads)} heads ({', '.join(heads)}); merge them into one first.")
    return heads[0]


def target():
    """Migrations, dumps and restores use the direct endpoint (Neon recommends it: no pooler in between)."""
    from app.config import settings

    return settings.database_direct


def is_production() -> bool:
    from app.config import Environment, settings

    return settings.ENVIRONMENT is Environment.production


async def connect(database: str | None = None):
    """An asyncpg connection to the direct URL (or to another database on the same server)."""
    import asyncpg

    from app.db import connect_to

    db = target()
    name = database or db.url.database
    try:
        return await connect_to(db, database=name)
    except asyncpg.InvalidCatalogNameError:
        raise SystemExit(f"Database {name!r} does not exist on {db.safe_url}: `make db-init` creates it.") from None
    # asyncpg's messages name the host and user, never the password.
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"Cannot connect to {db.safe_url}: {exc or type(exc).__name__}") from None


def libpq_env(db=None, database: str | None = None) -> dict[str, str]:
    """Environment for pg_dump/pg_restore: the credentials travel here, never on the command line (which
    `ps` shows to every user and which ends up in error messages and logs)."""
    from app.config import settings

    db = db or target()
    url = db.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # a stray PGSERVICE etc. would win
    env.update(
        {
            "PGHOST": url.host or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "PGUSER": url.username or "",
            "PGPASSWORD": url.password or "",
            "PGDATABASE": database or url.database or "",
            "PGAPPNAME": f"{settings.DB_APPLICATION_NAME}-ops",
            "PGCONNECT_TIMEOUT": str(max(2, round(settings.DB_CONNECT_TIMEOUT))),
        }
    )
    # The same TLS checks the app makes (app/tls.py), in libpq's own variables.
    names = {
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "channel_binding": "PGCHANNELBINDING",
        "sslnegotiation": "PGSSLNEGOTIATION",
    }
    env.update({names[key]: value for key, value in db.tls.libpq_params().items()})
    return env


async def row_counts(connection) -> dict[str, int]:
    """Exact row counts of every table in the public schema, keyed like `read_dump` keys them."""
    tables = await connection.fetch(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
    )
    counts = {}
    for row in tables:
        counts[f"public.{row['name'].split('.', 1)[1]}"] = await connection.fetchval(
            f"SELECT count(*) FROM {row['name']}"
        )
    return counts


async def public_objects(connection) -> list[str]:
    """Everything in the public schema that a restore could collide with (extension members excluded)."""
    rows = await connection.fetch(
        """
        SELECT 'relation ' || c.relname AS name FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'function ' || p.proname FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'type ' || t.typname FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
        ORDER BY 1
        """
    )
    return [r["name"] for r in rows]


# --- Asking first ------------------------------------------------------------------------------------------


def confirm(question: str, *, expected: str, yes: bool, how_to_skip: str) -> None:
    """Proceed if `yes`, else ask on a terminal for `expected` to be typed; never guess without a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise SystemExit(f"Refusing without confirmation (stdin is not a terminal): {how_to_skip}")
    print(question)
    try:
        answer = input(f"Type {expected!r} to continue: ").strip()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer != expected:
        raise SystemExit("Not confirmed; nothing was changed.")
