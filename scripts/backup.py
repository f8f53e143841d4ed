"""`make db-backup`: a pg_dump custom-format archive of the database in backups/, named with the UTC time and
the Alembic revision it holds, e.g. backups/task-api_20261122T053000Z_rev-0001.dump.

Uses the direct URL (DATABASE_URL_DIRECT, else DATABASE_URL without Neon's -pooler) and a pg_dump at least as
new as the server. The archive holds the schema, every row and the alembic_version row; not roles, owners or
grants (--no-owner --no-privileges), so it restores into any database whatever its roles are called.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import _bootstrap
import _pgtools

DEFAULT_DIR = _bootstrap.ROOT / "backups"
PREFIX = "task-api"


async def server_major() -> int:
    import _pg

    connection = await _pg.connect()
    try:
        if not await connection.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
            raise SystemExit(
                f"{_pg.target().safe_url} has no alembic_version table: it was never migrated, so there is "
                "none of our data to back up. Run `make db-init` first (or check DATABASE_URL)."
            )
        return connection.get_server_version().major
    finally:
        await connection.close()


def backup_name(revision: str, when: datetime) -> str:
    safe_revision = re.sub(r"[^A-Za-z0-9_.-]", "_", revision)
    return f"{PREFIX}_{when.strftime('%Y%m%dT%H%M%SZ')}_rev-{safe_revision}.dump"


def backup(output_dir: Path) -> Path:
    import _pg

    major = asyncio.run(server_major())
    pg_dump = _pgtools.find_tool("pg_dump", major)
    pg_restore = _pgtools.find_tool("pg_restore", max(major, pg_dump.major))
    # Dumps hold password hashes: keep them to the owner.
    output_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    when = datetime.now(UTC)
    partial = output_dir / f".{PREFIX}_{when.strftime('%Y%m%dT%H%M%S%fZ')}.partial"
    try:
        _pgtools.run_tool(
            pg_dump,
            ["--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"],
            _pg.libpq_env(),
            f"pg_dump of {_pg.target().safe_url}",
        )
        os.chmod(partial, 0o600)
        # Name the file after what the archive really holds: one snapshot, read back from the archive.
        contents = _pgtools.read_dump(pg_restore, partial)
        if contents.revision is None:
            raise SystemExit("The dump has no alembic_version row: the database is not migrated (make db-init).")
        final = output_dir / backup_name(contents.revision, when)
        counter = 2
        while final.exists():  # two backups within one second: never overwrite
            final = output_dir / backup_name(f"{contents.revision}-{counter}", when)
            counter += 1
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    rows = ", ".join(f"{t.split('.', 1)[1]}: {n}" for t, n in sorted(contents.row_counts.items()))
    print(
        f"backup written: {final}\n  from {_pg.target().safe_url} (PostgreSQL {contents.server_version}, "
        f"{pg_dump.path.name} {pg_dump.major})\n  revision {contents.revision}; rows: {rows}"
    )
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("BACKUP_DIR") or DEFAULT_DIR),
        help="where to write the archive (default: backups/, or BACKUP_DIR)",
    )
    args = parser.parse_args(argv)
    _bootstrap.database_ready()
    backup(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
