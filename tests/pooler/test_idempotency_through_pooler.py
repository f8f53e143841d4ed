"""Idempotency-Key through a real transaction pooler (PgBouncer 1.18, which keeps no prepared statements, and
1.24 configured like Neon's pooler), with DB_POOL=single, null and queue: a retry replays, another request with
the key is a 422, and concurrent duplicates write one row."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.pooler import pgbouncer as pgb
from tests.pooler.conftest import running_pgbouncer
from tests.support.api import make_account
from tests.support.outage import use_engine

pytestmark = pytest.mark.pooler

TASKS = "/api/v1/tasks"


@pytest.fixture
def bouncer(any_pgbouncer_binary: str, database_url: str) -> Iterator[pgb.PgBouncer]:
    yield from running_pgbouncer(any_pgbouncer_binary, database_url)


@pytest.mark.parametrize("pool", ["single", "null", "queue"])
async def test_keyed_writes_through_the_pooler(client, db, monkeypatch, bouncer, pool):
    # 20 fresh connections at once (null) log in through the pooler with SCRAM: on a loaded 2-core machine that
    # takes longer than the suite's 2 s connect timeout.
    engine = use_engine(monkeypatch, bouncer.url(), pooler=True, DB_POOL=pool, DB_CONNECT_TIMEOUT=15)
    try:
        account = await make_account(db)
        headers = {**account.headers, "Idempotency-Key": f'"through-{pool}"'}
        first = await client.post(TASKS, json={"title": "Through the pooler"}, headers=headers)
        assert first.status_code == 201, first.text
        for _ in range(3):  # on whichever server connection the pooler picks
            again = await client.post(TASKS, json={"title": "Through the pooler"}, headers=headers)
            assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
            assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
        other = await client.post(TASKS, json={"title": "Something else"}, headers=headers)
        assert other.status_code == 422
        patched = await client.patch(first.headers["location"], json={"status": "done"}, headers=headers)
        replayed = await client.patch(first.headers["location"], json={"status": "done"}, headers=headers)
        assert patched.status_code == 200 and replayed.json() == patched.json()
        assert replayed.headers["idempotent-replayed"] == "true"
        if pool != "single":  # one kept connection serves one request at a time (a Lambda sandbox's)
            duplicates = {**account.headers, "Idempotency-Key": f'"twenty-{pool}"'}
            responses = await asyncio.gather(
                *(client.post(TASKS, json={"title": "Twenty"}, headers=duplicates) for _ in range(20))
            )
            assert {response.status_code for response in responses} <= {201, 409}, [
                r.text for r in responses if r.status_code != 201
            ]
            assert await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'Twenty'") == 1
            assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
        assert await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", account.id) == 1 + (pool != "single")
    finally:
        await engine.dispose()
