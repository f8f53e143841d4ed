"""Test session setup: a real PostgreSQL (embedded, or TEST_DATABASE_URL), migrated with the real Alembic revisions.

The database URL must be in the environment before `app` is imported (settings are read once at import), so
it is prepared in `pytest_configure`, before test modules are collected.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATABASE = "task_api_test"

_embedded = None  # the session's embedded server, if we started one


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
                await connection.execute(f'CREATE DATABASE "{test_db}"')
            finally:
                await connection.close()

        asyncio.run(recreate())
    return url.set(drivername="postgresql", database=test_db).render_as_string(hide_password=False)


def pytest_configure(config: pytest.Config) -> None:
    url = _prepare_database()
    os.environ["DATABASE_URL"] = url
    os.environ["DATABASE_URL_DIRECT"] = url
    os.environ["ENVIRONMENT"] = "test"
    os.environ["DB_CONNECT_TIMEOUT"] = "2"
    os.environ.setdefault("DB_APPLICATION_NAME", "task-api-test")
    os.environ.setdefault("AUTH_RATE_LIMIT_ATTEMPTS", "1000000")  # the suite logs in a lot; limit tests set their own
    # Migrate once per session with the real revisions (downgrade first: TEST_DATABASE_URL may be reused).
    from alembic import command

    alembic_config = alembic_config_for(url)
    command.downgrade(alembic_config, "base")
    command.upgrade(alembic_config, "head")


def pytest_unconfigure(config: pytest.Config) -> None:
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


@pytest.fixture(scope="session")
def embedded_server():
    """The embedded server of this session, or None with TEST_DATABASE_URL."""
    return _embedded


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
        await connection.execute("TRUNCATE users, tasks CASCADE")
    finally:
        await connection.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    from app.main import app

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
