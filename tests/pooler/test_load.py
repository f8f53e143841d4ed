"""10,000 mixed requests at concurrency 50 through a real pgbouncer in transaction mode: no error, no lost
write, and the server's memory levels off.

The server is uvicorn running app.main:app with DB_POOL=queue and DB_POOLER=true, as docker compose runs it;
the client is an async httpx client with 50 virtual users in this (separate) process. bench/load.py runs the
same load and prints the figures, for this configuration and for NullPool (Lambda's).

The memory bound is a leak guard, not a performance target. After the first half of the run (the warm-up:
the connection pool filled, SQLAlchemy's statement cache and Python's allocator arenas at their working size),
RSS at any sample of the second half must stay within GROWTH_LIMIT_MB of its half-way value. Measured here:
growth of 0-1 MB over the second half, on an RSS of ~100 MB. A leak of one kilobyte per request would add
about 5 MB over those 5,000 requests, and most real leaks (a response, a connection, a statement per request)
are far larger than that; GROWTH_LIMIT_MB leaves room for allocator noise on a shared machine.
"""

from __future__ import annotations

import os

import pytest

from tests.pooler.load_run import MB, run_mixed_load
from tests.pooler.test_proof import assert_clean_servers
from tests.pooler.workers import app_environment

TOTAL = int(os.environ.get("LOAD_TEST_REQUESTS", "10000"))
CONCURRENCY = 50
GROWTH_LIMIT_MB = 16
EVERY_STEP = {
    "register",
    "login",
    "create",
    "get",
    "patch",
    "delete",
    "list",
    "list_next_page",
    "list_filtered",
    "tags",
    "users_me",
    "health_db",
}


@pytest.mark.parametrize("pool", ["queue", "null"])
async def test_mixed_load_through_the_pooler(pgbouncer, database_url, tmp_path, pool):
    env = app_environment(pgbouncer.url(), database_url, pooler_guard=True, pool=pool)
    run = await run_mixed_load(env, pgbouncer, database_url, tmp_path, total=TOTAL, concurrency=CONCURRENCY)
    print("mixed load:", run.figures())
    report = run.report
    assert report.error_count == 0, (dict(report.errors), report.error_samples)
    assert report.completed == TOTAL
    assert set(report.by_step) == EVERY_STEP, report.by_step
    assert report.by_step["login"] == CONCURRENCY  # logins stay few: one per virtual user
    assert not run.lost, run.lost
    # Every request ran a statement, all of them through pgbouncer, on its few server connections.
    assert run.queries >= TOTAL
    assert 0 < max(run.server_connections) <= pgbouncer.pool_size
    await assert_clean_servers(pgbouncer)
    assert run.growth_second_half < GROWTH_LIMIT_MB * MB, run.figures()
