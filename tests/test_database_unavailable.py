"""Any route that needs the database answers 503 (never a 500, never a hang) when it cannot be reached."""

import time

import pytest
from fastapi import FastAPI
from sqlalchemy import text

import app.db as db_module
from app.api.deps import ConnectionDep, SessionDep
from app.config import normalize_database_url, settings
from app.db import create_engine
from app.dev.embedded import free_port
from app.errors import register_error_handlers


@pytest.fixture
def probe_app(monkeypatch) -> FastAPI:
    """A tiny app whose routes use the real dependencies, with the engine pointed at a dead port."""
    dead = create_engine(normalize_database_url(f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app"))
    monkeypatch.setattr(db_module, "engine", dead)
    monkeypatch.setattr(db_module.SessionLocal, "kw", {**db_module.SessionLocal.kw, "bind": dead})
    probe = FastAPI()
    register_error_handlers(probe)

    @probe.get("/autocommit")
    async def read(connection: ConnectionDep) -> int:
        return (await connection.execute(text("SELECT 1"))).scalar_one()

    @probe.get("/transaction")
    async def write(session: SessionDep) -> int:
        return (await session.execute(text("SELECT 1"))).scalar_one()

    return probe


@pytest.mark.parametrize("path", ["/autocommit", "/transaction"])
async def test_unreachable_database_is_a_503_within_the_connect_timeout(probe_app, path):
    import httpx

    transport = httpx.ASGITransport(app=probe_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        started = time.monotonic()
        response = await client.get(path)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The database is unavailable")
    assert response.headers["Retry-After"]
    assert "s3cret-pw" not in response.text and "127.0.0.1" not in response.text
    assert elapsed < settings.DB_CONNECT_TIMEOUT + 2
