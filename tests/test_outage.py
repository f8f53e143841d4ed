"""Database outages: refused, unreachable (a port that never answers), out of connections. Every
database-backed endpoint answers 503 with Retry-After and a JSON detail, never a 500 and never later than the
connect budget; when the database comes back, the same process (the same engine) serves again.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import asyncpg
import pytest

import app.db
from app.config import settings
from app.dev.embedded import ensure_running, free_port
from app.errors import DATABASE_UNAVAILABLE
from tests.conftest import alembic_config_for
from tests.support.api import make_account
from tests.support.fake_postgres import SILENT, STALL_AFTER_SSL, endpoint_for, url_through
from tests.support.outage import (
    SERVING_STATUSES,
    detail_of,
    every_endpoint,
    stranger_headers,
    temporary_role,
    use_engine,
)
from tests.support.routes import arranged_ids

BUDGET = settings.DB_CONNECT_TIMEOUT  # 2 s in the tests
HANG_GUARD = BUDGET + 2  # connect budget (retries included) plus scheduling slack on a shared machine


async def all_at_once(requests) -> tuple[dict, float]:
    started = time.monotonic()
    responses = await asyncio.gather(*(request() for request in requests.values()))
    return dict(zip(requests, responses, strict=True)), time.monotonic() - started


def assert_all_unavailable(responses: dict, secret: str = "postgres") -> None:
    for name, response in responses.items():
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.headers["Retry-After"] == "2", name
        assert response.headers["content-type"] == "application/json", name
        assert detail_of(response) == DATABASE_UNAVAILABLE, (name, response.text)
        assert secret not in response.text and "127.0.0.1" not in response.text, name


async def test_refused_every_endpoint_is_a_503(client, monkeypatch):
    engine = use_engine(monkeypatch, f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app")
    try:
        responses, elapsed = await all_at_once(every_endpoint(client, stranger_headers(), uuid.uuid4()))
    finally:
        await engine.dispose()
    assert_all_unavailable(responses, secret="s3cret-pw")
    assert elapsed < HANG_GUARD


@pytest.mark.parametrize("silence", [SILENT, STALL_AFTER_SSL], ids=["never-answers", "handshake-never-completes"])
async def test_unreachable_every_endpoint_is_a_503_within_the_connect_timeout(
    client, database_url, monkeypatch, silence
):
    endpoint = endpoint_for(database_url, default=silence)
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        responses, elapsed = await all_at_once(every_endpoint(client, stranger_headers(), uuid.uuid4()))
    finally:
        await engine.dispose()
        endpoint.stop()
    assert_all_unavailable(responses)
    assert len(endpoint.logins()) >= len(responses)  # each request did try the silent port
    assert elapsed < HANG_GUARD


async def test_out_of_connections_every_endpoint_is_a_503_and_a_freed_slot_is_used(
    client, db, database_url, monkeypatch
):
    """A real PostgreSQL refusing with "too many connections for role" (53300): the test holds the role's only
    connection. Connecting is retried (the slot may free up), then 503; once the slot is free, the request
    that was retrying gets it."""
    async with temporary_role(db, database_url, "CONNECTION LIMIT 1") as role_url:
        hog = await asyncpg.connect(role_url)
        engine = use_engine(monkeypatch, role_url)
        try:
            with pytest.raises(asyncpg.TooManyConnectionsError):
                await asyncpg.connect(role_url)  # what the app's connector meets
            responses, elapsed = await all_at_once(every_endpoint(client, stranger_headers(), uuid.uuid4()))
            assert_all_unavailable(responses, secret=role_url.split(":")[2].split("@")[0])
            assert elapsed < HANG_GUARD

            account = await make_account(db)
            waiting = asyncio.create_task(client.get("/api/v1/tasks", headers=account.headers))
            await asyncio.sleep(0.3)  # the request is retrying now
            assert not waiting.done()
            await hog.close()
            response = await waiting
            assert response.status_code == 200, response.text
        finally:
            await engine.dispose()
            if not hog.is_closed():
                await hog.close()


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A PostgreSQL of this module's own (migrated), that tests may stop and start again."""
    from alembic import command

    data_dir = tmp_path_factory.mktemp("outage-pg") / "pgdata"
    server = ensure_running(data_dir, port=free_port(), database="app")
    command.upgrade(alembic_config_for(server.url("app")), "head")
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("pool", ["null", "queue"])
async def test_after_a_restart_the_same_engine_serves_again(client, monkeypatch, own_server, pool):
    url = own_server.url("app")
    engine = use_engine(monkeypatch, url, DB_POOL=pool)
    direct = await asyncpg.connect(url)
    try:
        account = await make_account(direct)
    finally:
        await direct.close()
    requests = every_endpoint(client, account.headers, await arranged_ids(client, account.headers))
    try:
        before = await requests["tasks-list"]()
        assert before.status_code == 200 and before.json()["items"], before.text

        own_server.stop()
        responses, elapsed = await all_at_once(requests)
        assert_all_unavailable(responses)
        assert elapsed < HANG_GUARD

        ensure_running(own_server.data_dir, port=own_server.port, database="app")
        assert app.db.engine is engine  # no new engine, no restart of the process
        # Sequentially, the account's deletion last: each endpoint answers as it would have before the outage.
        statuses = {name: (await request()).status_code for name, request in requests.items() if name != "me-delete"}
        statuses["me-delete"] = (await requests["me-delete"]()).status_code
        assert statuses == SERVING_STATUSES
    finally:
        await engine.dispose()
        ensure_running(own_server.data_dir, port=own_server.port, database="app")
