"""DB_POOL=single in a warm Lambda process: one connection kept across invocations of the real handler (real
HTTP API 2.0 payloads), replaced when the server closed it in between, a read that meets a dying connection
read again once, and a write whose fate is unknown answered 503 and never sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import insert, text

import app.db
from app.errors import OUTCOME_UNKNOWN
from app.queries.tasks import tasks
from tests.aws_lambda.support import adapt, response_header, response_json
from tests.support.api import insert_task, make_account
from tests.support.outage import APPLICATION_NAME, app_sessions, use_engine

V2 = "powertools__apiGatewayProxyV2Event.json"


@pytest.fixture
def single(monkeypatch, database_url, lambda_thread) -> Iterator[None]:
    """The app's engine in DB_POOL=single, disposed on the 'Lambda' thread's loop that its connection lives on."""
    engine = use_engine(monkeypatch, database_url, DB_POOL="single")
    yield
    lambda_thread.submit(lambda: asyncio.get_event_loop().run_until_complete(engine.dispose())).result(timeout=10)


def list_event(headers: dict[str, str]) -> dict:
    return adapt(V2, "GET", "/api/v1/tasks", headers=headers, query={"tag": "x", "limit": "20"})


def create_event(headers: dict[str, str], title: str) -> dict:
    return adapt(V2, "POST", "/api/v1/tasks", headers=headers, body=json.dumps({"title": title}))


async def backend_pids(db) -> list[int]:
    return [session["pid"] for session in await app_sessions(db)]


async def wait_for(condition, timeout: float = 10.0) -> None:
    """Poll an async condition (the server's own view, pg_stat_activity) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


async def table_lock(database_url: str) -> asyncpg.Connection:
    """A session of its own holding the tasks table (until it is closed), so statements on it wait."""
    locker = await asyncpg.connect(database_url)
    await locker.execute("BEGIN; LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
    return locker


async def waiting_on_lock(db) -> list[int]:
    rows = await db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", APPLICATION_NAME
    )
    return [row["pid"] for row in rows]


async def test_one_connection_serves_every_invocation(invoke, db, single):
    account = await make_account(db)
    for index in range(3):
        await insert_task(db, account.id, f"task {index}", tags=["x"])
    seen = set()
    for _ in range(5):
        response = await invoke(list_event(account.headers))
        assert response["statusCode"] == 200
        assert len(response_json(response)["items"]) == 3
        pids = await backend_pids(db)
        assert len(pids) == 1, pids  # kept open between invocations, never a second one
        seen.update(pids)
    assert len(seen) == 1  # the same server session throughout


async def test_a_connection_closed_between_invocations_is_replaced_without_a_failed_request(invoke, db, single, caplog):
    account = await make_account(db)
    await insert_task(db, account.id, "kept", tags=["x"])
    assert (await invoke(list_event(account.headers)))["statusCode"] == 200
    for event, status in ((list_event(account.headers), 200), (create_event(account.headers, "after a kill"), 201)):
        (old,) = await backend_pids(db)
        assert await db.fetchval("SELECT pg_terminate_backend($1)", old)
        await wait_for(lambda old=old: _gone(db, old))
        with caplog.at_level(logging.INFO, logger="app.db"):
            assert (await invoke(event))["statusCode"] == status
        (new,) = await backend_pids(db)
        assert new != old
    assert "closed while idle" in caplog.text  # found before use, without sending anything on it
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'after a kill'") == 1


async def _gone(db, pid: int) -> bool:
    return not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)


async def test_a_read_cut_off_by_a_dying_connection_is_read_again_once(invoke, db, single, caplog, database_url):
    account = await make_account(db)
    await insert_task(db, account.id, "read me", tags=["x"])
    assert (await invoke(list_event(account.headers)))["statusCode"] == 200
    (first,) = await backend_pids(db)

    # Hold the table so the read blocks on the server, then end its session while it waits: the read was
    # sent, and the connection dies under it.
    locker = await table_lock(database_url)
    with caplog.at_level(logging.INFO, logger="app.db"):
        pending = asyncio.ensure_future(invoke(list_event(account.headers)))
        await wait_for(lambda: _waiting(db, first))
        await db.fetchval("SELECT pg_terminate_backend($1)", first)
        # The second attempt, on a new session, waits on the same lock.
        await wait_for(lambda: _waiting_other(db, first))
        await locker.close()
        response = await pending
    assert response["statusCode"] == 200
    assert [item["title"] for item in response_json(response)["items"]] == ["read me"]
    assert "lost during a read" in caplog.text


async def _waiting(db, pid: int) -> bool:
    return pid in await waiting_on_lock(db)


async def _waiting_other(db, pid: int) -> bool:
    return any(other != pid for other in await waiting_on_lock(db))


async def test_a_write_of_unknown_fate_is_answered_503_and_never_sent_twice(invoke, db, single, caplog, database_url):
    account = await make_account(db)
    assert (await invoke(create_event(account.headers, "first")))["statusCode"] == 201
    (first,) = await backend_pids(db)

    locker = await table_lock(database_url)
    with caplog.at_level(logging.INFO, logger="app.db"):
        pending = asyncio.ensure_future(invoke(create_event(account.headers, "fate unknown")))
        await wait_for(lambda: _waiting(db, first))
        await db.fetchval("SELECT pg_terminate_backend($1)", first)
        response = await pending
    await locker.close()

    assert response["statusCode"] == 503
    assert response_header(response, "retry-after") == "2"
    assert response_json(response)["detail"] == OUTCOME_UNKNOWN
    assert "outcome is unknown, so it is not sent again" in caplog.text
    assert await waiting_on_lock(db) == []  # no second attempt was left waiting on the lock
    await asyncio.sleep(0.2)  # had it been sent again, it would be running now that the lock is gone
    titles = [row["title"] for row in await db.fetch("SELECT title FROM tasks WHERE user_id = $1", account.id)]
    assert titles == ["first"]
    # The process serves again, on a new connection.
    assert (await invoke(create_event(account.headers, "next")))["statusCode"] == 201
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", account.id) == 2


async def test_a_keyed_write_of_unknown_fate_is_sent_again_and_stored_once(invoke, db, single, caplog, database_url):
    """With an Idempotency-Key the write is safe to send twice: the second finds the first's key if it committed."""
    account = await make_account(db)
    assert (await invoke(create_event(account.headers, "first")))["statusCode"] == 201
    (first,) = await backend_pids(db)
    event = create_event({**account.headers, "Idempotency-Key": '"lost-once"'}, "fate unknown")

    locker = await table_lock(database_url)
    with caplog.at_level(logging.INFO, logger="app.db"):
        pending = asyncio.ensure_future(invoke(event))
        await wait_for(lambda: _waiting(db, first))
        await db.fetchval("SELECT pg_terminate_backend($1)", first)
        await wait_for(lambda: _waiting_other(db, first))  # the second attempt, on a new session
        await locker.close()
        response = await pending
    assert response["statusCode"] == 201, response
    assert "lost during a keyed write; sending it again" in caplog.text
    stored = await db.fetch("SELECT id FROM tasks WHERE user_id = $1 AND title = 'fate unknown'", account.id)
    assert [str(row["id"]) for row in stored] == [response_json(response)["id"]]
    # A client retrying anyway (it saw no answer) is told what the first attempt did.
    again = await invoke(event)
    assert response_json(again) == response_json(response)
    assert response_header(again, "idempotent-replayed") == "true"


def test_single_without_a_pooler_warns_at_startup(caplog, database_url):
    from app.config import normalize_database_url, settings

    cfg = settings.model_copy(update={"DB_POOL": "single"})
    with caplog.at_level(logging.WARNING, logger="app.db"):
        app.db.create_engine(normalize_database_url(database_url), cfg)
    assert "DB_POOL=single without a pooler" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.db"):
        app.db.create_engine(normalize_database_url(database_url, force_pooler=True), cfg)
    assert "without a pooler" not in caplog.text


async def test_a_statement_on_a_connection_closed_before_sending_is_sent_once_on_a_new_one(
    db, monkeypatch, database_url, caplog
):
    account = await make_account(db)
    engine = use_engine(monkeypatch, database_url, DB_POOL="single")
    connection = app.db.LazyConnection(engine)
    try:
        await connection.execute(text("SELECT 1"))
        (first,) = await backend_pids(db)
        # The connection closes between two statements of a request (our side hung up: nothing was sent).
        assert connection._connection is not None
        raw = await connection._connection.get_raw_connection()
        raw.driver_connection.terminate()
        with caplog.at_level(logging.INFO, logger="app.db"):
            await connection.execute(insert(tasks).values(user_id=account.id, title="sent once"))
        assert "closed before the statement was sent" in caplog.text
        (second,) = await backend_pids(db)
        assert second != first
    finally:
        await connection.close()
        await engine.dispose()
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'sent once'") == 1
