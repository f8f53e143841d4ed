"""Liveness never touches the database; readiness answers 503 quickly when the database is gone."""

import time

import pytest

from app.config import normalize_database_url, settings
from app.db import create_engine
from app.dev.embedded import ensure_running, free_port


async def test_liveness(client):
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_revision_and_latency(client):
    from alembic.script import ScriptDirectory

    from tests.conftest import ROOT

    head = ScriptDirectory(str(ROOT / "alembic")).get_current_head()
    response = await client.get("/api/v1/health/db")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database_revision"] == body["expected_revision"] == head
    assert body["latency_ms"] >= 0


async def test_readiness_503_when_schema_is_behind(client, db):
    await db.execute("UPDATE alembic_version SET version_num = '0000_old'")
    try:
        response = await client.get("/api/v1/health/db")
    finally:
        head = response.json()["expected_revision"]
        await db.execute("UPDATE alembic_version SET version_num = $1", head)
    assert response.status_code == 503
    assert "make migrate" in response.json()["reason"]


@pytest.fixture
def engine_at(monkeypatch):
    """Point the readiness probe at another database URL."""

    def use(url: str):
        import app.db

        monkeypatch.setattr(app.db, "engine", create_engine(normalize_database_url(url)))

    return use


async def test_readiness_503_on_a_port_nobody_listens_on(client, engine_at):
    engine_at(f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/app")
    started = time.monotonic()
    response = await client.get("/api/v1/health/db")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["reason"].startswith("The database is unavailable")
    assert response.headers["Retry-After"]
    # Bounded by the connect timeout (retries included), never a hang.
    assert elapsed < settings.DB_CONNECT_TIMEOUT + 2


async def test_readiness_503_when_the_database_is_stopped(client, engine_at, tmp_path):
    server = ensure_running(tmp_path / "stopped-pg", port=free_port(), database="app")
    engine_at(server.url("app"))
    assert (await client.get("/api/v1/health/db")).status_code == 503  # running but not migrated
    server.stop()
    response = await client.get("/api/v1/health/db")
    assert response.status_code == 503
    assert "postgres:postgres" not in response.text


async def test_openapi_documents_both_probes(client):
    spec = (await client.get("/openapi.json")).json()
    assert spec["paths"]["/api/v1/health"]["get"]["summary"]
    assert "503" in spec["paths"]["/api/v1/health/db"]["get"]["responses"]
