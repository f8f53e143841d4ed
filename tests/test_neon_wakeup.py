"""Neon wake-ups: connecting is retried with growing, jittered delays on "not yet" errors, within
DB_CONNECT_TIMEOUT in total; what retrying cannot fix fails at once; a statement that may have written is never
sent twice.

A FakeEndpoint (tests/support/fake_postgres.py) on 127.0.0.1 answers the first connection attempts with the wire
ErrorResponse PostgreSQL or Neon's proxy sends (or hangs up), then pipes bytes to the real test PostgreSQL.
Neon's proxy sends its own errors with SQLSTATE XX000 (neondatabase/neon proxy/src/stream.rs), e.g.
"Couldn't connect to compute node" (proxy/src/compute.rs) while a compute wakes up.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import settings
from app.db_faults import backoff_delays
from app.errors import DATABASE_REFUSED_LOGIN, DATABASE_UNAVAILABLE, OUTCOME_UNKNOWN
from tests.support.api import create_task, make_account
from tests.support.fake_postgres import DROP, FORWARD, PgError, endpoint_for, url_through
from tests.support.outage import detail_of, use_engine

BUDGET = settings.DB_CONNECT_TIMEOUT  # 2 s in the tests (tests/conftest.py)
HANG_GUARD = BUDGET + 1.5

STARTING_UP = PgError("57P03", "the database system is starting up")
NEON_COMPUTE = PgError("XX000", "Couldn't connect to compute node: connection refused")
NEON_FORWARDED_STARTUP = PgError("XX000", "the database system is starting up")
FULL = PgError("53300", "sorry, too many clients already")
NEON_PERMITS = PgError(
    "XX000",
    "Failed to acquire permit to connect to the database. Too many database connection attempts are currently ongoing.",
)


@pytest.fixture
def fake(database_url):
    endpoints = []

    def make(**options):
        endpoint = endpoint_for(database_url, **options)
        endpoints.append(endpoint)
        return endpoint

    yield make
    for endpoint in endpoints:
        endpoint.stop()


def gaps(endpoint) -> list[float]:
    times = [attempt.at for attempt in endpoint.logins()]
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


@pytest.mark.parametrize(
    "not_yet",
    [STARTING_UP, NEON_COMPUTE, NEON_FORWARDED_STARTUP, NEON_PERMITS, FULL, DROP],
    ids=["57P03", "neon-compute", "neon-forwarded-57P03", "neon-permits", "53300", "hang-up"],
)
async def test_a_waking_database_is_retried_until_it_answers(client, db, database_url, monkeypatch, fake, not_yet):
    account = await make_account(db)
    endpoint = fake(script=[not_yet] * 4)
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        started = time.monotonic()
        response = await client.get("/api/v1/tasks", headers=account.headers)
        elapsed = time.monotonic() - started
    finally:
        await engine.dispose()
    assert response.status_code == 200, response.text
    logins = endpoint.logins()
    assert [attempt.action for attempt in logins] == [not_yet] * 4 + [FORWARD]
    spacing = gaps(endpoint)
    # Growing delays (nominal 50, 100, 200, 400 ms, each x [0.5, 1.5)): the last wait is longer than the first.
    assert spacing[-1] > spacing[0], spacing
    assert sum(spacing[2:]) > sum(spacing[:2]), spacing  # increasing on average, jitter notwithstanding
    assert elapsed < BUDGET


async def test_the_delays_grow_exponentially_with_jitter():
    """The schedule itself: doubling to a cap, each delay drawn from [0.5, 1.5) x nominal."""
    low = backoff_delays(rng=lambda: 0.0)
    high = backoff_delays(rng=lambda: 0.999)
    assert [round(next(low), 3) for _ in range(7)] == [0.025, 0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [round(next(high), 3) for _ in range(3)] == [0.075, 0.15, 0.3]
    first_delays = {round(next(backoff_delays()), 6) for _ in range(20)}  # as 20 processes would draw them
    assert len(first_delays) > 1, "every process would retry in lockstep"
    assert all(0.025 <= delay < 0.075 for delay in first_delays)


@pytest.mark.parametrize("never", [STARTING_UP, NEON_COMPUTE], ids=["57P03", "neon-compute"])
async def test_a_database_that_never_wakes_is_a_503_within_the_budget(
    client, db, database_url, monkeypatch, fake, never
):
    account = await make_account(db)
    endpoint = fake(default=never)
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        started = time.monotonic()
        response = await client.post("/api/v1/tasks", json={"title": "x"}, headers=account.headers)
        elapsed = time.monotonic() - started
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert detail_of(response) == DATABASE_UNAVAILABLE
    assert response.headers["Retry-After"] == "2"
    assert len(endpoint.logins()) >= 4  # it did retry
    assert elapsed < HANG_GUARD
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"password": "wrong-password"}, None),  # the real server: 28P01
        ({"database": "no_such_database"}, None),  # the real server: 3D000
        ({"username": "no_such_role"}, None),  # the real server: 28P01 too (it does not tell which)
        ({}, PgError("XX000", "password authentication failed for user 'app'")),  # Neon's proxy says it so
        ({}, PgError("XX000", "Control plane request failed: endpoint is disabled")),
        ({"query": {"sslmode": "require"}}, None),  # the test server has no TLS: asyncpg's ConnectionError
    ],
    ids=["wrong-password", "unknown-database", "unknown-role", "neon-password", "neon-endpoint-disabled", "no-tls"],
)
async def test_what_retrying_cannot_fix_fails_at_the_first_attempt(
    client, db, database_url, monkeypatch, fake, change, refusal, caplog
):
    """503 (the service is unavailable until an operator fixes its configuration; nothing the client did
    wrong), with its own detail and a longer Retry-After, logged as an ERROR; the secret never shows."""
    account = await make_account(db)
    endpoint = fake(default=refusal) if refusal else fake()
    engine = use_engine(monkeypatch, url_through(database_url, endpoint, **change))
    try:
        response = await client.get("/api/v1/users/me", headers=account.headers)
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert detail_of(response) == DATABASE_REFUSED_LOGIN
    assert response.headers["Retry-After"] == "30"
    assert len(endpoint.logins()) == 1  # no retry
    assert "wrong-password" not in response.text and "postgres" not in response.text
    assert [r.levelname for r in caplog.records if r.name == "app.errors"] == ["ERROR"]  # an operator must act


async def test_a_write_whose_connection_drops_after_it_was_sent_is_not_retried(
    client, db, database_url, monkeypatch, fake
):
    """The connection is cut right after the INSERT left (the server still runs and commits it; its answer never
    arrives): 503 saying the change may have been saved, and the INSERT was sent exactly once."""
    account = await make_account(db)
    endpoint = fake(cut_after=lambda sql: sql.lstrip().upper().startswith("INSERT INTO TASKS"))
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        response = await client.post("/api/v1/tasks", json={"title": "Sent once"}, headers=account.headers)
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert detail_of(response) == OUTCOME_UNKNOWN
    assert response.headers["Retry-After"]
    assert [attempt.cut for attempt in endpoint.logins()] == [True]  # one connection, the cut one
    assert endpoint.statements("INSERT INTO tasks") == 1
    rows = 0
    for _ in range(40):  # the server finishes the INSERT after the client is gone
        rows = await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'Sent once'")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == 1


async def test_a_read_whose_connection_drops_is_a_plain_503(client, db, database_url, monkeypatch, fake):
    account = await make_account(db)
    task = await create_task(client, account)
    endpoint = fake(cut_after=lambda sql: sql.lstrip().upper().startswith("SELECT"))
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        response = await client.get(f"/api/v1/tasks/{task['id']}", headers=account.headers)
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert detail_of(response) == DATABASE_UNAVAILABLE
    assert endpoint.statements("SELECT") == 1
