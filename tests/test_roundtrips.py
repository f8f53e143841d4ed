"""Round trips per request on a fresh connection, counted by scripts/rtt_proxy.py (counts, never times).

A new engine (as in a new Lambda process) talks to the test database through the counting proxy. Every request
must sit at the floor of its single statement: TCP connect 1 + SSLRequest 1 + SCRAM 3 + prepare 1 + execute 1,
on the process's first request too (SQLAlchemy's first-connect queries are answered from the startup packet),
and the connection must be closed with a Terminate the request does not wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.engine import make_url

import app.db
from app.config import normalize_database_url
from scripts.rtt_proxy import RttProxy, total
from tests.support.api import create_task, make_account

FLOOR = 7


@asynccontextmanager
async def app_engine_through_proxy(database_url: str, monkeypatch, cfg=None, **proxy_options):
    """The app's engine replaced by a new one (as in a new process) that reaches the database via the proxy."""
    target = make_url(database_url)
    counting = RttProxy(target.host or "127.0.0.1", target.port or 5432, **proxy_options).start()
    proxied = normalize_database_url(target.set(port=counting.port).render_as_string(hide_password=False))
    engine = app.db.create_engine(proxied, cfg) if cfg is not None else app.db.create_engine(proxied)
    monkeypatch.setattr(app.db, "engine", engine)
    try:
        yield counting
    finally:
        await engine.dispose()
        counting.stop()


@pytest.fixture
async def proxy(database_url: str, monkeypatch) -> AsyncIterator[RttProxy]:
    # A new engine: its first connection is a cold start's. eof_hold shows whether the close is waited for.
    async with app_engine_through_proxy(database_url, monkeypatch, eof_hold_ms=50) as counting:
        yield counting


async def settled(proxy: RttProxy, since: int) -> dict:
    """The request's counts once its connection is gone.

    asyncio closes an aborted socket one loop iteration after `terminate()` (call_soon), and `wait_idle` blocks
    this thread, so let the loop run that iteration first (Mangum's run_until_complete runs it too).
    """
    await asyncio.sleep(0)
    return total(proxy.wait_idle(since))


async def counted(proxy: RttProxy, request) -> tuple[dict, object]:
    mark = proxy.mark()
    response = await request
    return await settled(proxy, mark), response


async def test_every_request_on_a_fresh_connection_sits_at_the_floor(client, db, proxy) -> None:
    account = await make_account(db)
    task = await create_task(client, account, tags=["x"])  # through the proxy too: the first (cold) request
    cold = await settled(proxy, 0)
    assert (cold["connections"], cold["round_trips"]) == (1, FLOOR), cold

    requests = {
        "list by tag": client.get("/api/v1/tasks", params={"tag": "x"}, headers=account.headers),
        "get": client.get(f"/api/v1/tasks/{task['id']}", headers=account.headers),
        "update": client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=account.headers),
        "tags": client.get("/api/v1/tags", headers=account.headers),
        "me": client.get("/api/v1/users/me", headers=account.headers),
        "delete": client.delete(f"/api/v1/tasks/{task['id']}", headers=account.headers),
    }
    for name, request in requests.items():
        stats, response = await counted(proxy, request)
        assert response.status_code < 300, (name, response.text)
        assert stats["connections"] == 1 and stats["round_trips"] == FLOOR, (name, stats)
        assert stats["unwaited"] == 1, (name, stats)  # the Terminate, sent and not waited for


async def test_a_bad_token_opens_no_connection(client, proxy) -> None:
    stats, response = await counted(proxy, client.get("/api/v1/tasks", headers={"Authorization": "Bearer nope"}))
    assert response.status_code == 401
    assert stats["connections"] == 0


async def test_invalid_input_opens_no_connection(client, db, proxy) -> None:
    """FastAPI enters dependencies before validating; the connection waits for the first statement."""
    account = await make_account(db)
    bad_requests = {
        "body": client.post("/api/v1/tasks", json={"title": "   "}, headers=account.headers),
        "query": client.get("/api/v1/tasks", params={"limit": 0}, headers=account.headers),
        "cursor": client.get("/api/v1/tasks", params={"cursor": "forged"}, headers=account.headers),
        "path": client.get("/api/v1/tasks/not-a-uuid", headers=account.headers),
    }
    for name, request in bad_requests.items():
        stats, response = await counted(proxy, request)
        assert response.status_code == 422, (name, response.text)
        assert stats["connections"] == 0, (name, stats)


@pytest.fixture
async def pooled(database_url: str, monkeypatch) -> AsyncIterator[RttProxy]:
    """As `proxy`, for a long-running server's engine (DB_POOL=queue: a pool with a pre-ping per checkout)."""
    from app.config import settings

    async with app_engine_through_proxy(
        database_url, monkeypatch, settings.model_copy(update={"DB_POOL": "queue"})
    ) as counting:
        yield counting


async def test_a_pooled_request_costs_the_ping_and_its_statement(client, db, pooled) -> None:
    account = await make_account(db)
    listing = {"params": {"tag": "x"}, "headers": account.headers}
    assert (await client.get("/api/v1/tasks", **listing)).status_code == 200  # opens the pooled connection
    before = pooled.round_trips_so_far()
    assert (await client.get("/api/v1/tasks", **listing)).status_code == 200
    assert pooled.round_trips_so_far() - before == 2  # pre-ping 1 (not BEGIN; ; ROLLBACK) + statement 1

    # The ping still finds a connection the server dropped (as Neon does when its compute scales to zero):
    # the pool replaces it and the request succeeds.
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()",
        app.db.settings.DB_APPLICATION_NAME,
    )
    assert killed >= 1
    assert (await client.get("/api/v1/tasks", **listing)).status_code == 200


@pytest.fixture
async def kept(database_url: str, monkeypatch) -> AsyncIterator[RttProxy]:
    """As `proxy`, for a warm Lambda sandbox's engine (DB_POOL=single: one connection kept across requests)."""
    from app.config import settings

    async with app_engine_through_proxy(
        database_url, monkeypatch, settings.model_copy(update={"DB_POOL": "single"})
    ) as counting:
        yield counting


async def test_a_warm_single_read_is_one_round_trip(client, db, kept) -> None:
    """docs/connections.md's sequence diagram: the kept connection is checked on its socket, the statement
    prepared by the first request is bound and executed: one round trip, no new connection."""
    account = await make_account(db)
    await create_task(client, account, tags=["x"])  # opens the kept connection
    listing = {"params": {"tag": "x"}, "headers": account.headers}
    assert (await client.get("/api/v1/tasks", **listing)).status_code == 200  # prepares the list statement
    opened = len(kept.every_connection)
    before = kept.round_trips_so_far()
    for _ in range(3):
        response = await client.get("/api/v1/tasks", **listing)
        assert response.status_code == 200 and len(response.json()["items"]) == 1
    assert kept.round_trips_so_far() - before == 3
    assert len(kept.every_connection) == opened == 1  # the one kept connection served them all
