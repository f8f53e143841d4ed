"""Runaway statements behind a real transaction pooler (pgbouncer 1.18): the client-side timeout's
CancelRequest goes through the pooler and stops the statement on the server, and a role's statement_timeout
(no startup parameter: pgbouncer rejects those) cancels on the server by itself. Either way the API answers
504 and the next request through the pooler works.
"""

from __future__ import annotations

import pytest

from app.errors import STATEMENT_CANCELLED
from tests.pooler import pgbouncer as pgb
from tests.support.api import create_task, make_account
from tests.support.outage import detail_of, row_locked, temporary_role, timed_patch, use_engine, waiting_updates

pytestmark = pytest.mark.pooler


async def test_the_client_timeout_cancels_through_the_pooler(client, db, database_url, monkeypatch, fresh_pgbouncer):
    pgbouncer = fresh_pgbouncer  # its own: stopping it closes the server connections this test used
    account = await make_account(db)
    task = await create_task(client, account)  # direct, before the engine is swapped
    engine = use_engine(monkeypatch, pgbouncer.url(), pooler=True, DB_COMMAND_TIMEOUT=1)
    try:
        async with row_locked(database_url, task["id"]):
            response, elapsed = await timed_patch(client, account, task)
            assert response.status_code == 504, response.text
            assert detail_of(response).startswith("The database took longer than 1 s to answer")
            assert elapsed < 1 + 2 + 2
            # Still locked: only a cancel that reached the server (via pgbouncer) ends the waiting UPDATE.
            assert await waiting_updates(db) == 0

        response = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "Free"}, headers=account.headers)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == task["version"] + 1
        assert all(row["state"] in {"idle", "used"} for row in pgbouncer.servers()), pgbouncer.servers()
    finally:
        await engine.dispose()


async def test_a_role_statement_timeout_works_behind_the_pooler(
    client, db, database_url, monkeypatch, pgbouncer_binary
):
    """`ALTER ROLE ... SET statement_timeout`: applied by the server to pgbouncer's server connections, so it
    guards statements even when the client that sent them is frozen or gone."""
    account = await make_account(db)
    task = await create_task(client, account)
    async with temporary_role(db, database_url, statement_timeout="1s") as role_url:
        bouncer = pgb.start(role_url, binary=pgbouncer_binary, auth_type="md5")
        engine = use_engine(monkeypatch, bouncer.url(), pooler=True, DB_COMMAND_TIMEOUT=10)
        try:
            async with row_locked(database_url, task["id"]):
                response, elapsed = await timed_patch(client, account, task)
            assert response.status_code == 504, response.text
            assert detail_of(response) == STATEMENT_CANCELLED
            assert elapsed < 10 - 2  # the server's 1 s, not the client's 10 s
            assert "unsupported startup parameter" not in bouncer.log

            response = await client.get(f"/api/v1/tasks/{task['id']}", headers=account.headers)
            assert response.status_code == 200, response.text
            assert response.json()["version"] == task["version"]  # the cancelled UPDATE wrote nothing
        finally:
            await engine.dispose()
            bouncer.stop()
