"""Runaway statements: a statement blocked past DB_COMMAND_TIMEOUT is answered 504, cancelled on the server,
and its connection is never handed to the next request.

The slow statement is real: the test holds a row lock (SELECT ... FOR UPDATE in an open transaction on a
direct connection) and PATCHes that task through the API, whose UPDATE waits for the lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from app.config import settings
from app.errors import STATEMENT_CANCELLED
from tests.api import create_task, make_account
from tests.aws_lambda.support import open_app_connections
from tests.outage import detail_of, temporary_role, use_engine

COMMAND_TIMEOUT = 1.0
# Timeout, then up to 2 s for the graceful close that waits for the cancel's acknowledgement, plus slack.
HANG_GUARD = COMMAND_TIMEOUT + 2 + 2


@asynccontextmanager
async def row_locked(database_url: str, task_id: str) -> AsyncIterator[asyncpg.Connection]:
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
        yield holder
    finally:
        await holder.close()  # ends the transaction: the lock goes


async def waiting_updates(db: asyncpg.Connection, application_name: str | None = None) -> int:
    """Statements of the app still running on the server (an UPDATE of tasks waiting for the row lock)."""
    count = -1
    for _ in range(40):  # the cancel is asynchronous: give the server a moment to act on it
        count = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'UPDATE tasks%' "
            "AND pid <> pg_backend_pid() AND ($1::text IS NULL OR application_name = $1)",
            application_name,
        )
        if count == 0:
            break
        await asyncio.sleep(0.05)
    return count


async def app_sessions(db: asyncpg.Connection) -> list[dict]:
    rows = await db.fetch(
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = $1", settings.DB_APPLICATION_NAME
    )
    return [dict(row) for row in rows]


@pytest.mark.parametrize("pool", ["null", "queue"])
async def test_a_statement_past_the_command_timeout_is_a_504_and_is_cancelled_on_the_server(
    client, db, database_url, monkeypatch, pool
):
    engine = use_engine(monkeypatch, database_url, DB_COMMAND_TIMEOUT=COMMAND_TIMEOUT, DB_POOL=pool)
    try:
        account = await make_account(db)
        task = await create_task(client, account)
        pooled = await app_sessions(db)
        assert len(pooled) == (1 if pool == "queue" else 0)  # the pool keeps create_task's connection
        async with row_locked(database_url, task["id"]):
            started = time.monotonic()
            response = await client.patch(
                f"/api/v1/tasks/{task['id']}", json={"title": "Blocked"}, headers=account.headers
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 504, response.text
            assert detail_of(response) == (
                "The database took longer than 1 s to answer; the statement was cancelled. Retry later."
            )
            assert response.headers["Retry-After"]
            assert COMMAND_TIMEOUT <= elapsed < HANG_GUARD
            # The lock is still held: the UPDATE would still be waiting had asyncpg's CancelRequest not
            # reached the server.
            assert await waiting_updates(db, settings.DB_APPLICATION_NAME) == 0
            # The connection of the cancelled statement is closed, not parked in the pool for the next request.
            assert await open_app_connections(db) == 0

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
    async with temporary_role(db, database_url, "") as role_url:
        role = role_url.split("://", 1)[1].split(":", 1)[0]
        await db.execute(f"ALTER ROLE {role} SET statement_timeout = '1s'")
        account = await make_account(db)
        task = await create_task(client, account)  # through the default engine
        engine = use_engine(monkeypatch, role_url, DB_COMMAND_TIMEOUT=10)
        try:
            async with row_locked(database_url, task["id"]):
                started = time.monotonic()
                response = await client.patch(
                    f"/api/v1/tasks/{task['id']}", json={"title": "Blocked"}, headers=account.headers
                )
                elapsed = time.monotonic() - started
            assert response.status_code == 504, response.text
            assert detail_of(response) == STATEMENT_CANCELLED
            assert elapsed < 10 - 2  # the server's 1 s fired, not the client's 10 s
            response = await client.get(f"/api/v1/tasks/{task['id']}", headers=account.headers)
            assert response.status_code == 200 and response.json()["version"] == task["version"]
        finally:
            await engine.dispose()
