"""Any route that needs the database answers 503 (never a 500, never a hang) when it cannot be reached, and a
genuine bug stays a 500 (504s for statements past the timeout: tests/test_statement_timeout.py)."""

import time

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

import app.db as db_module
from app.api.deps import ConnectionDep
from app.config import normalize_database_url, settings
from app.db import create_engine
from app.dev.embedded import free_port
from app.errors import register_error_handlers


@pytest.fixture
def probe_at(monkeypatch):
    """A tiny app whose routes use the real dependencies, with the engine pointed at `url`."""
    engines = []

    def build(url: str, **changes) -> FastAPI:
        engine = create_engine(normalize_database_url(url), settings.model_copy(update=changes))
        engines.append(engine)
        monkeypatch.setattr(db_module, "engine", engine)
        probe = FastAPI()
        register_error_handlers(probe)

        @probe.get("/autocommit")
        async def read(connection: ConnectionDep) -> int:
            return (await connection.execute(text("SELECT 1"))).scalar_one()

        @probe.get("/bug")
        async def bug(connection: ConnectionDep) -> int:
            return (await connection.execute(text("SELEKT 1"))).scalar_one()

        return probe

    yield build
    for engine in engines:
        engine.sync_engine.dispose()


def http(probe: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=probe, raise_app_exceptions=False), base_url="http://t")


async def test_unreachable_database_is_a_503_within_the_connect_timeout(probe_at):
    probe = probe_at(f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app")
    async with http(probe) as client:
        started = time.monotonic()
        response = await client.get("/autocommit")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The database is unavailable")
    assert response.headers["Retry-After"]
    assert "s3cret-pw" not in response.text and "127.0.0.1" not in response.text
    assert elapsed < settings.DB_CONNECT_TIMEOUT + 2


async def test_a_bug_in_sql_stays_a_500(probe_at, database_url):
    """The handlers answer for the database's failures only; they do not hide mistakes as 503s."""
    probe = probe_at(database_url)
    async with http(probe) as client:
        response = await client.get("/bug")
    assert response.status_code == 500
