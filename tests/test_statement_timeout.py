"""Runaway statements: a statement blocked past DB_COMMAND_TIMEOUT is answered 504, cancelled on the server,
and its connection is never handed to the next request.

The slow statement is real: the test holds a row lock (SELECT ... FOR UPDATE in an open transaction on a
direct connection) and PATCHes that task through the API, whose UPDATE waits for the lock.
"""

from __future__ import annotations

import pytest

from app.errors import STATEMENT_CANCELLED
from tests.support.api import create_task, make_account
from tests.support.outage import (
    APPLICATION_NAME,
    app_sessions,
    detail_of,
    row_locked,
    temporary_role,
    timed_patch,
    use_engine,
    waiting_updates,
)

COMMAND_TIMEOUT = 1.0
# Timeout, then up to 2 s for the graceful close that waits for the cancel's acknowledgement, plus slack.
HANG_GUARD = COMMAND_TIMEOUT + 2 + 2


@pytest.mark.parametrize("pool", ["null", "queue"])
async def test_a_statement_past_the_command_timeout_is_a_504_and_is_cancelled_on_the_server(
    client, db, database_url, monkeypatch, pool
):
    engine = use_engine(monkeypatch, database_url, DB_COMMAND_TIMEOUT=COMMAND_TIMEOUT, DB_POOL=pool)
    try:
        account = await make_account(db)
        task = await create_task(client, account)
        # NullPool: create_task's connection is closed (its backend may take a moment to go); queue: kept.
        pooled = await app_sessions(db, settle=pool == "null")
        assert len(pooled) == (1 if pool == "queue" else 0)  # the pool keeps create_task's connection
        async with row_locked(database_url, task["id"]):
            response, elapsed = await timed_patch(client, account, task)
            assert response.status_code == 504, response.text
            assert detail_of(response) == (
                "The database took longer than 1 s to answer; the statement was cancelled. Retry later."
            )
            assert response.headers["Retry-After"]
            assert COMMAND_TIMEOUT <= elapsed < HANG_GUARD
            # The lock is still held: the UPDATE would still be waiting had asyncpg's CancelRequest not
            # reached the server.
            assert await waiting_updates(db, APPLICATION_NAME) == 0
            # The connection of the cancelled statement is closed, not parked in the pool for the next request.
            assert await app_sessions(db, settle=True) == []

        # The next request (on the same pool) works, on a clean connection, and the cancelled write left
        # nothing behind: one version bump, for this request only.
        response = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "Free"}, headers=account.headers)
        assert response.status_code == 200, response.text
        assert (response.json()["title"], response.json()["version"]) == ("Free", task["version"] + 1)
        assert all(session["state"] != "idle in transaction" for session in await app_sessions(db))
    finally:
        await engine.dispose()


async def test_a_role_statement_timeout_cancels_on_the_server_even_if_the_client_would_wait(
    client, db, database_url, monkeypatch
):
    """The server-side guard that outlives a frozen or killed Lambda: `ALTER ROLE ... SET statement_timeout`.
    The client would wait 10 s; the server cancels after 1 s and the API answers 504."""
    async with temporary_role(db, database_url, statement_timeout="1s") as role_url:
        account = await make_account(db)
        task = await create_task(client, account)  # through the default engine
        engine = use_engine(monkeypatch, role_url, DB_COMMAND_TIMEOUT=10)
        try:
            async with row_locked(database_url, task["id"]):
                response, elapsed = await timed_patch(client, account, task)
            assert response.status_code == 504, response.text
            assert detail_of(response) == STATEMENT_CANCELLED
            assert elapsed < 10 - 2  # the server's 1 s fired, not the client's 10 s
            response = await client.get(f"/api/v1/tasks/{task['id']}", headers=account.headers)
            assert response.status_code == 200 and response.json()["version"] == task["version"]
        finally:
            await engine.dispose()
