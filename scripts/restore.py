"""`make db-restore FILE=backups/....dump`: restore a `make db-backup` archive, then verify it.

- The Alembic revision is read from the archive. One that differs from the code's head is refused before the
  database is touched, with what to do instead (MIGRATE=1 restores an older one and migrates it forward).
- The target (the direct URL) is created if missing. If it already holds tables, the restore asks first
  (YES=1 skips the question), drops our schema like `make db-reset` and restores; never in production.
- pg_restore runs in one transaction: a failure leaves the database as empty as it was.
- Verified afterwards: the database's revision and the row count of every table equal the archive's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import _bootstrap
import _pgtools


def check_revision(file: Path, revision: str | None, head: str, migrate: bool) -> None:
    """Refuse an archive this code cannot serve, saying what would work."""
    import _pg
    from alembic.script import ScriptDirectory

    if revision is None:
        raise SystemExit(
            f"{file} holds no alembic_version row: it is not a backup of this project's database (or of one "
            "that was never migrated). Nothing was changed."
        )
    if revision == head:
        return
    script = ScriptDirectory.from_config(_pg.alembic_config())
    ancestors = {r.revision for r in script.iterate_revisions(head, "base")}
    if revision in ancestors:
        if migrate:
            return
        raise SystemExit(
            f"{file} was taken at revision {revision}; this code's migrations end at {head}. "
            "Nothing was changed.\n"
            "Either restore it and migrate it forward in one go:\n"
            f"    make db-restore FILE={file} MIGRATE=1\n"
            f"or check out the code at revision {revision} to restore it as it was."
        )
    raise SystemExit(
        f"{file} was taken at revision {revision}, which this code does not know (its head is {head}): the "
        "backup comes from newer or different code. Nothing was changed.\n"
        "Check out the commit that has the revision "
        f"(git log --all --oneline -- 'alembic/versions/{revision}_*'), restore there (make db-restore), "
        "and run this older code only after `make db-downgrade` there."
    )


async def server_major(database: str) -> int:
    import _pg

    connection = await _pg.connect(database)
    try:
        return connection.get_server_version().major
    finally:
        await connection.close()


async def make_room(file: Path, yes: bool) -> None:
    """Make sure the target is empty: as it is, or after a confirmed reset of our schema."""
    import _pg
    from reset import describe, drop_our_schema, refuse_in_production

    connection = await _pg.connect()
    try:
        if not await _pg.public_objects(connection):
            return
        db = _pg.target()
        refuse_in_production(f"restore over the existing database {db.safe_url}")
        _pg.confirm(
            f"{db.safe_url} is not empty ({await describe(connection)}). Restoring {file.name} first drops "
            "every table of the task API in it, as `make db-reset` does.",
            expected=db.url.database or "",
            yes=yes,
            how_to_skip=f"{db.safe_url} is not empty; run `make db-restore FILE={file} YES=1` to replace its "
            "contents, or point DATABASE_URL_DIRECT at an empty database.",
        )
        await drop_our_schema(connection)
        left = await _pg.public_objects(connection)
        if left:
            raise SystemExit(
                f"{db.safe_url} still holds objects that are not ours ({', '.join(left)}); the restore would "
                "collide with them. Restore into a new, empty database instead (CREATE DATABASE ...)."
            )
    finally:
        await connection.close()


async def verify(expected_revision: str, expected_counts: dict[str, int]) -> dict[str, int]:
    import _pg

    connection = await _pg.connect()
    try:
        revision = await connection.fetchval("SELECT version_num FROM alembic_version")
        counts = await _pg.row_counts(connection)
        await connection.execute("ANALYZE")  # pg_restore leaves the planner without statistics
    finally:
        await connection.close()
    problems = []
    if revision != expected_revision:
        problems.append(f"revision is {revision}, the archive's is {expected_revision}")
    for table, rows in sorted(expected_counts.items()):
        if counts.get(table) != rows:
            problems.append(f"{table} has {counts.get(table)} rows, the archive {rows}")
    if problems:
        raise SystemExit("The restore did not verify: " + "; ".join(problems))
    return counts


def restore(file: Path, yes: bool, migrate: bool) -> None:
    import _pg
    from init_db import create_database_if_missing

    if not file.is_file():
        available = sorted((_bootstrap.ROOT / "backups").glob("*.dump"))
        hint = "\navailable:\n  " + "\n  ".join(str(p) for p in available[-10:]) if available else ""
        raise SystemExit(f"No such backup file: {file}{hint}")
    head = _pg.code_head()
    contents = _pgtools.read_dump(_pgtools.newest_tool("pg_restore"), file)
    check_revision(file, contents.revision, head, migrate)
    assert contents.revision is not None

    asyncio.run(create_database_if_missing())
    db = _pg.target()
    server = asyncio.run(server_major(db.url.database or ""))
    pg_restore = _pgtools.find_tool("pg_restore", max(server, contents.pg_dump_major))
    asyncio.run(make_room(file, yes))
    _pgtools.run_tool(
        pg_restore,
        [
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={db.url.database}",
            str(file),
        ],
        _pg.libpq_env(),
        f"Restoring {file.name} into {db.safe_url}",
    )
    counts = asyncio.run(verify(contents.revision, contents.row_counts))
    rows = ", ".join(f"{t.split('.', 1)[1]}: {n}" for t, n in sorted(counts.items()))
    print(f"restored {file.name} into {db.safe_url}\n  verified: revision {contents.revision}; rows: {rows}")
    if contents.revision != head:
        from reset import migrate_to_head

        print(f"migrating {contents.revision} -> {head}")
        migrate_to_head()
        print(f"  now at revision {head}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default="", help="the archive, e.g. backups/task-api_..._rev-0001.dump")
    parser.add_argument("--yes", action="store_true", help="replace a non-empty database without asking (YES=1)")
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="accept an archive at an older revision and migrate it to head (MIGRATE=1)",
    )
    args = parser.parse_args(argv)
    if not args.file:
        parser.error("which archive? make db-restore FILE=backups/task-api_<time>_rev-<revision>.dump")
    _bootstrap.database_ready()
    restore(Path(args.file), args.yes, args.migrate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
