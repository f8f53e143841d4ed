"""Any route that needs the database answers 503 (never a 500, never a hang) when it cannot be reached, 504 when
its statement runs past the timeout (in a transaction too), and a genuine bug stays a 500."""

import time

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

import app.db as db_module
from app.api.deps import ConnectionDep, SessionDep
from app.config import normalize_database_url, settings
from app.db import create_engine
from app.dev.embedded import free_port
from app.errors import STATEMENT_CANCELLED, register_error_handlers


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

        @probe.get("/transaction")
        async def write(session: SessionDep) -> int:
            return (await session.execute(text("SELECT 1"))).scalar_one()

        @probe.get("/transaction/slow")
        async def slow(session: SessionDep) -> int:
            await session.execute(text("SELECT 1"))
            return (await session.execute(text("SELECT 2 FROM pg_sleep(5)"))).scalar_one()

        @probe.get("/bug")
        async def bug(connection: ConnectionDep) -> int:
            return (await connection.execute(text("SELEKT 1"))).scalar_one()

        return probe

    yield build
    for engine in engines:
        engine.sync_engine.dispose()


def http(probe: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=probe, raise_app_exceptions=False), base_url="http://t")


@pytest.mark.parametrize("path", ["/autocommit", "/transaction"])
async def test_unreachable_database_is_a_503_within_the_connect_timeout(probe_at, path):
    probe = probe_at(f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app")
    async with http(probe) as client:
        started = time.monotonic()
        response = await client.get(path)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The database is unavailable")
    assert response.headers["Retry-After"]
    assert "s3cret-pw" not in response.text and "127.0.0.1" not in response.text
    assert elapsed < settings.DB_CONNECT_TIMEOUT + 2


async def test_a_statement_timeout_inside_a_transaction_is_a_504(probe_at, database_url):
    probe = probe_at(database_url, DB_COMMAND_TIMEOUT=1)
    async with http(probe) as client:
        started = time.monotonic()
        response = await client.get("/transaction/slow")
        elapsed = time.monotonic() - started
        assert (await client.get("/transaction")).status_code == 200  # and the next transaction works
    assert response.status_code == 504, response.text
    assert response.json()["detail"] == STATEMENT_CANCELLED
    assert elapsed < 1 + 2 + 2


async def test_a_bug_in_sql_stays_a_500(probe_at, database_url):
    """The handlers answer for the database's failures only; they do not hide mistakes as 503s."""
    probe = probe_at(database_url)
    async with http(probe) as client:
        response = await client.get("/bug")
    assert response.status_code == 500
