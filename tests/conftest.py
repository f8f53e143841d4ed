"""Test session setup: a real PostgreSQL (embedded, or TEST_DATABASE_URL), migrated with the real Alembic revisions.

The database URL must be in the environment before `app` is imported (settings are read once at import), so
it is prepared in `pytest_configure`, before test modules are collected.

Under pytest-xdist (`make test`) the controller starts the one server and migrates the template database; each
worker copies it into a database of its own (`task_api_test_gw0`, ...) before it imports `app`. The app opens
its own connections, so workers cannot share a database behind per-test rollbacks: each has its own tables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.leaks import LeakHandler, LeakWatch, Secrets

ROOT = Path(__file__).resolve().parents[1]
TEST_DATABASE = "task_api_test"
# The app connects as a role of its own with a password (and signs with a SECRET_KEY) that cannot occur by
# chance, so that `leak_watch` can prove neither ever reaches a log line or a response. Superuser, because the
# tests create databases and roles with it (test_migrations, test_db_ops, tests/support/outage.py).
# Through the environment, xdist workers (started after this import in the controller) share them.
APP_ROLE = "task_api_app"
APP_PASSWORD = os.environ.setdefault("TASK_API_TEST_APP_PASSWORD", f"pw-{uuid.uuid4().hex}")
SECRET_KEY = os.environ.setdefault("TASK_API_TEST_SECRET_KEY", f"sk-test-{uuid.uuid4().hex}{uuid.uuid4().hex}")
# Set by the process that prepared the migrated template database, for the xdist workers that copy it.
TEMPLATE_URL_VARIABLE = "TASK_API_TEST_TEMPLATE_URL"
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", ... in an xdist worker; None in the controller or alone
RAM_TEMP = Path("/dev/shm")
RAM_TEMP_MIN_FREE = 4 << 30  # bytes: the servers' data and WAL, the Lambda zips and their unpacked copies


def _use_ram_for_temporary_files() -> None:
    """Temporary files of the session, the embedded servers' data directories among them, go to RAM (a tmpfs)
    when the machine has one with room to spare and TMPDIR does not say otherwise.

    On a disk, and most of all on one mounted with online discard, as here, every file unlinked or truncated costs
    milliseconds: PostgreSQL replaces the tables' files at each TRUNCATE between tests, and removing a server's
    data directory at the end took 7 s. The data is disposable (the servers run with fsync off for that reason),
    so RAM loses nothing. Through TMPDIR, subprocesses (uvicorn, pgbouncer, osls, xdist workers) use it too.
    """
    if os.environ.get("TMPDIR") or not RAM_TEMP.is_dir() or not os.access(RAM_TEMP, os.W_OK):
        return
    stats = os.statvfs(RAM_TEMP)
    if stats.f_bavail * stats.f_frsize >= RAM_TEMP_MIN_FREE:
        os.environ["TMPDIR"] = str(RAM_TEMP)
        tempfile.tempdir = None  # computed again from TMPDIR on next use


_use_ram_for_temporary_files()

_embedded = None  # the session's embedded server, if this process started one
_worker_database: tuple[str, str] | None = None  # (maintenance URL, name) of this worker's copy, to drop at exit


def _prepare_database() -> str:
    """Return the URL of a fresh, empty test database."""
    global _embedded
    from sqlalchemy.engine import make_url

    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        base = explicit
    else:
        from app.dev.embedded import ensure_running, free_port

        os.environ.setdefault("EMBEDDED_PG_FAST", "1")  # fsync off: test data is disposable
        data_dir = Path(tempfile.mkdtemp(prefix="task-api-test-pg-"))
        _embedded = ensure_running(data_dir / "pgdata", port=free_port(), database="postgres")
        base = _embedded.url("postgres")

    url = make_url(base.replace("postgres://", "postgresql://", 1))
    maintenance = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    test_db = TEST_DATABASE if not explicit else (url.database or TEST_DATABASE)
    if not explicit:

        async def recreate() -> None:
            connection = await asyncpg.connect(maintenance)
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{test_db}" WITH (FORCE)')
                await connection.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")
                await connection.execute(f"CREATE ROLE {APP_ROLE} LOGIN SUPERUSER PASSWORD '{APP_PASSWORD}'")
                await connection.execute(f'CREATE DATABASE "{test_db}" OWNER {APP_ROLE}')
            finally:
                await connection.close()

        asyncio.run(recreate())
        url = url.set(username=APP_ROLE, password=APP_PASSWORD)
    return url.set(drivername="postgresql", database=test_db).render_as_string(hide_password=False)


def _copy_for_worker(template_url: str, worker: str) -> str:
    """A database of this worker's own, copied from the migrated template (much faster than migrating again)."""
    global _worker_database
    from sqlalchemy.engine import make_url

    template = make_url(template_url)
    name = f"{template.database}_{worker}"
    maintenance = template.set(database="postgres").render_as_string(hide_password=False)

    async def copy() -> None:
        connection = await asyncpg.connect(maintenance)
        try:
            # PostgreSQL refuses to copy a template that another CREATE DATABASE is reading: one at a time.
            await connection.execute("SELECT pg_advisory_lock(7154)")
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.database}"')
        finally:
            await connection.close()  # and with it the advisory lock

    asyncio.run(copy())
    _worker_database = (maintenance, name)
    return template.set(database=name).render_as_string(hide_password=False)


def pytest_configure(config: pytest.Config) -> None:
    url = _prepare_database() if WORKER is None else _copy_for_worker(os.environ[TEMPLATE_URL_VARIABLE], WORKER)
    os.environ["DATABASE_URL"] = url
    os.environ["DATABASE_URL_DIRECT"] = url
    os.environ["ENVIRONMENT"] = "test"  # accepts any SECRET_KEY
    os.environ["SECRET_KEY"] = SECRET_KEY
    os.environ["DB_CONNECT_TIMEOUT"] = "2"
    os.environ.setdefault("DB_APPLICATION_NAME", "task-api-test")
    os.environ.setdefault("AUTH_RATE_LIMIT_ATTEMPTS", "1000000")  # the suite logs in a lot; limit tests set their own
    # The suite hashes ~700 passwords; at production's argon2 cost (~150 ms of CPU each) that was a third of its
    # CPU. Set on this process's settings, not in os.environ, where the tests that build production Settings
    # would inherit it (and be refused); the app servers the tests start get it from
    # tests.pooler.workers.app_environment. The tests of the hashing itself use `production_hashing`.
    from app.config import settings

    settings.FAST_PASSWORD_HASHING = True
    if WORKER is None:
        # Migrate once per run with the real revisions (downgrade first: TEST_DATABASE_URL may be reused).
        from alembic import command

        alembic_config = alembic_config_for(url)
        command.downgrade(alembic_config, "base")
        command.upgrade(alembic_config, "head")
        os.environ[TEMPLATE_URL_VARIABLE] = url


def drop_database(maintenance_url: str, name: str) -> None:
    """Drops database `name` (if there is one) through the server's maintenance database, closing its sessions."""

    async def drop() -> None:
        connection = await asyncpg.connect(maintenance_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def pytest_unconfigure(config: pytest.Config) -> None:
    if _worker_database is not None and os.environ.get("TEST_DATABASE_URL"):
        drop_database(*_worker_database)  # an embedded server is removed whole, by the controller
    if _embedded is not None:
        _embedded.stop()
        shutil.rmtree(_embedded.data_dir.parent, ignore_errors=True)


def alembic_config_for(url: str):
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["DATABASE_URL"]


@pytest.fixture
def production_hashing() -> Iterator[None]:
    """Production's argon2 cost (64 MiB, 3 passes, 4 lanes) for one test, instead of the suite's cheap one."""
    from app import security
    from app.config import settings
    from tests.support.api import password_hash

    def use(fast: bool) -> None:
        settings.FAST_PASSWORD_HASHING = fast
        for cached in (security._hasher, security.dummy_hash, password_hash):  # each made at the cost in force
            cached.cache_clear()

    use(False)
    try:
        yield
    finally:
        use(True)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct asyncpg connection for arranging data and checking what the API wrote."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
async def _clean_tables(database_url: str) -> AsyncIterator[None]:
    """Each test starts from empty tables (the schema stays: it is built once per session)."""
    yield
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE users, tasks, auth_attempts CASCADE")
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
def leak_watch(monkeypatch) -> Iterator[LeakWatch]:
    """Fails the test if the database password, the SECRET_KEY or a password hash appears in any log record
    of this process (every logger, at DEBUG) or in any response an httpx client of this process received
    (`client`, the tests' own clients, the ones talking to `osls offline`); the Lambda `invoke` fixture feeds
    it the handler's responses. Not covered: what subprocesses log or receive (see tests/support/leaks.py)."""
    from sqlalchemy.engine import make_url

    import app.main  # noqa: F401 - its logging setup runs first, so that it cannot undo the DEBUG below

    watch = LeakWatch(Secrets.of(make_url(os.environ["DATABASE_URL"]).password, os.environ["SECRET_KEY"]))
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self, request, **kwargs):
        response = sync_send(self, request, **kwargs)
        scan_response(watch, response)
        return response

    async def asend(self, request, **kwargs):
        response = await async_send(self, request, **kwargs)
        scan_response(watch, response)
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
    handler = LeakHandler(watch)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the app's own quiet loggers (app/observability.py) keep their levels
    # httpcore's DEBUG trace is a dozen records for every request a client sends (the load tests send 10,000s).
    # All it carries is the request's method and host and the response's status and headers: httpx's own INFO
    # line has the URL, and `scan_response` reads the headers and the body, so at DEBUG it added only cost.
    httpcore_logger = logging.getLogger("httpcore")
    httpcore_level = httpcore_logger.level
    httpcore_logger.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        httpcore_logger.setLevel(httpcore_level)
    if watch.findings:
        pytest.fail("secrets leaked: " + "; ".join(dict.fromkeys(watch.findings)), pytrace=False)


def scan_response(watch: LeakWatch, response: httpx.Response) -> None:
    try:
        body = response.text
    except httpx.ResponseNotRead:  # `client.stream(...)`: the test reads it later, unscanned
        body = ""
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    where = f"the response to {response.request.method} {response.request.url.path}"
    watch.scan(where, f"{headers}\n{body}", tokens=False)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    from app.main import app

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
