"""Concurrent writers against the real PostgreSQL: every answer is one that some serial order would have given,
and nothing written is lost.

Each race is run three ways: in-process through the ASGI app (NullPool: one real connection per request), over
HTTP against a real uvicorn (NullPool, straight to PostgreSQL), and over HTTP against uvicorn with DB_POOL=queue
behind a real PgBouncer in transaction mode (as docker compose runs it).

The races cannot pass by accident of serial execution: a direct connection holds a lock that every request's
statement needs (the task's row, or an uncommitted row with the same email), the test waits until PostgreSQL
shows that many backends blocked on a lock (pg_stat_activity), and only then lets go. Through PgBouncer only as
many statements as it has server connections can be in the database at once, so that is the number waited for.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.pooler.conftest import pgbouncer, pgbouncer_binary  # noqa: F401 - fixtures for the pooled variant
from tests.pooler.workers import app_environment, uvicorn_server
from tests.support.api import Account, create_task, make_account
from tests.support.outage import use_engine

# Each race holds CONCURRENCY connections of the one test server and waits for them all to block: two races at
# once (one per xdist worker) would compete for the server's connection slots. One worker runs them in turn.
pytestmark = pytest.mark.xdist_group("concurrency")

TASKS = "/api/v1/tasks"
REGISTER = "/api/v1/auth/register"
CONCURRENCY = 50
# Hang guards for a race's requests to reach the lock: all of them, and one more. Registrations get there one
# argon2 hash at a time per core (app.security.HASHING_SLOTS), so on a loaded machine the last arrives tens of
# seconds after the first: a registration race took 9-13 s at load average 8 on 2 cores, and 35-38 s with the
# tests held to 30% of a core (a cgroup CPU quota). Patches and deletes arrive within 1-5 s.
ARRIVAL_SECONDS = 300
STALL_SECONDS = 60
# The racers' servers let a statement wait on a lock until the race gives up: with the default DB_COMMAND_TIMEOUT
# (15 s) the first registrations to arrive were answered 504 before the last had hashed their passwords, and
# the race could never see all of them waiting at once.
RACE_COMMAND_TIMEOUT = ARRIVAL_SECONDS + STALL_SECONDS


@dataclass
class Api:
    """A way of reaching the app, and how many of its statements can wait in PostgreSQL at the same time."""

    client: httpx.AsyncClient
    in_database_at_once: int


@pytest.fixture(scope="module")
def uvicorn_direct(database_url, tmp_path_factory):
    env = app_environment(database_url, database_url, pooler_guard=False, pool="null")
    env["DB_COMMAND_TIMEOUT"] = str(RACE_COMMAND_TIMEOUT)
    with uvicorn_server(env, tmp_path_factory.mktemp("uvicorn-direct") / "uvicorn.log", workers=1) as server:
        yield server.url


@pytest.fixture(scope="module")
def uvicorn_pooled(pgbouncer, database_url, tmp_path_factory):  # noqa: F811 - the imported fixture
    env = app_environment(pgbouncer.url(), database_url, pooler_guard=True, pool="queue")
    env["DB_COMMAND_TIMEOUT"] = str(RACE_COMMAND_TIMEOUT)
    with uvicorn_server(env, tmp_path_factory.mktemp("uvicorn-pooled") / "uvicorn.log", workers=1) as server:
        yield server.url, pgbouncer.pool_size


@pytest.fixture(params=["asgi", "uvicorn", "uvicorn-pgbouncer"])
async def api(request, client, database_url, monkeypatch) -> AsyncIterator[Api]:
    if request.param == "asgi":
        engine = use_engine(monkeypatch, database_url, DB_COMMAND_TIMEOUT=RACE_COMMAND_TIMEOUT)
        try:
            yield Api(client, CONCURRENCY)
        finally:
            await engine.dispose()
        return
    if request.param == "uvicorn":
        base_url, at_once = request.getfixturevalue("uvicorn_direct"), CONCURRENCY
    else:
        base_url, at_once = request.getfixturevalue("uvicorn_pooled")
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=RACE_COMMAND_TIMEOUT + STALL_SECONDS
    ) as http:
        yield Api(http, min(at_once, CONCURRENCY))


async def blocked_on_locks(db: asyncpg.Connection) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )


async def race(
    database_url: str,
    db: asyncpg.Connection,
    hold: tuple[str, ...],
    requests: Callable[[], list[Awaitable[httpx.Response]]],
    waiters: int,
) -> list[httpx.Response]:
    """Send `requests` at once while a transaction holds what they need (`hold`: a statement and its
    arguments); release it only when `waiters` backends are blocked on a lock. The release is a rollback, so
    the holder itself writes nothing."""
    holder = await asyncpg.connect(database_url)
    sent: list[asyncio.Future[httpx.Response]] = []
    try:
        await holder.execute("BEGIN")
        await holder.execute(*hold)
        sent = [asyncio.ensure_future(request) for request in requests()]
        blocked = await wait_until_blocked(db, sent, waiters)
        await holder.execute("ROLLBACK")
        responses = await asyncio.wait_for(asyncio.gather(*sent), STALL_SECONDS)
    finally:
        for request in sent:
            request.cancel()  # only those still running, when the race failed
        await holder.close()
    failed = [(response.status_code, response.text) for response in responses if response.status_code >= 500]
    assert blocked >= waiters, f"only {blocked} of {waiters} requests were waiting in the database at once; {failed}"
    return responses


async def wait_until_blocked(db: asyncpg.Connection, sent: list[asyncio.Future[httpx.Response]], waiters: int) -> int:
    """How many backends are blocked on a lock once `waiters` are, or when waiting is hopeless: a request was
    answered although the lock is still held (none can be, unless it failed), or none more has reached the lock
    for STALL_SECONDS, or all of them have not in ARRIVAL_SECONDS."""
    clock = asyncio.get_running_loop().time
    started = last_arrival = clock()
    most = 0
    while True:
        blocked = await blocked_on_locks(db)
        if blocked > most:
            most, last_arrival = blocked, clock()
        if blocked >= waiters or any(request.done() for request in sent):
            return blocked
        if clock() - last_arrival > STALL_SECONDS or clock() - started > ARRIVAL_SECONDS:
            return blocked
        await asyncio.sleep(0.05)


def row_lock(task_id: str) -> tuple[str, ...]:
    return ("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", uuid.UUID(task_id))


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def if_match(account: Account, version: int) -> dict[str, str]:
    return {**account.headers, "If-Match": f'"{version}"'}


async def task_row(db: asyncpg.Connection, task_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT title, description, version FROM tasks WHERE id = $1", uuid.UUID(task_id))


async def test_patches_with_one_if_match_exactly_one_wins(api, db, database_url):
    """One 200, 49 x 412, and each 412 names the version the winner left (as it would after the winner in
    any serial order), so a client that retries with that ETag can succeed."""
    account = await make_account(db)
    task = await create_task(api.client, account, title="original")
    path, version = f"{TASKS}/{task['id']}", task["version"]

    def patches() -> list[Awaitable[httpx.Response]]:
        return [
            api.client.patch(
                path, json={"title": f"writer {i}", "description": f"by {i}"}, headers=if_match(account, version)
            )
            for i in range(CONCURRENCY)
        ]

    responses = await race(database_url, db, row_lock(task["id"]), patches, api.in_database_at_once)
    assert statuses(responses) == {200: 1, 412: CONCURRENCY - 1}, statuses(responses)
    winner = next(response.json() for response in responses if response.status_code == 200)
    index = int(re.fullmatch(r"writer (\d+)", winner["title"]).group(1))
    assert (winner["description"], winner["version"]) == (f"by {index}", version + 1)
    assert await task_row(db, task["id"]) == (winner["title"], winner["description"], version + 1)
    for response in responses:
        if response.status_code == 412:
            assert response.headers["ETag"] == f'"{version + 1}"', response.text
            assert f"current version is {version + 1}" in response.json()["detail"]


async def test_deletes_with_one_if_match_one_204_then_404(api, db, database_url):
    """One 204; the rest 404, not 412. Serially, every DELETE after the winner finds no task, and a
    precondition is only evaluated on a resource that exists (RFC 9110 13.2.1): a sequential second DELETE
    with the same If-Match is a 404 too. A 412 here would name the version of a task that no longer exists."""
    account = await make_account(db)
    task = await create_task(api.client, account)
    path, version = f"{TASKS}/{task['id']}", task["version"]

    def deletes() -> list[Awaitable[httpx.Response]]:
        return [api.client.delete(path, headers=if_match(account, version)) for _ in range(CONCURRENCY)]

    responses = await race(database_url, db, row_lock(task["id"]), deletes, api.in_database_at_once)
    assert statuses(responses) == {204: 1, 404: CONCURRENCY - 1}, [r.text for r in responses if r.status_code != 404]
    assert await task_row(db, task["id"]) is None
    again = await api.client.delete(path, headers=if_match(account, version))
    assert again.status_code == 404  # the same answer as the concurrent losers got


async def test_patches_without_if_match_all_apply_in_some_order(api, db, database_url):
    """All 200; each one saw the write before it (versions +1..+50, no two alike: no lost update), and the
    row holds the write of the one that went last."""
    account = await make_account(db)
    task = await create_task(api.client, account, title="original")
    path, version = f"{TASKS}/{task['id']}", task["version"]

    def patches() -> list[Awaitable[httpx.Response]]:
        return [
            api.client.patch(path, json={"title": f"writer {i}"}, headers=account.headers) for i in range(CONCURRENCY)
        ]

    responses = await race(database_url, db, row_lock(task["id"]), patches, api.in_database_at_once)
    assert statuses(responses) == {200: CONCURRENCY}, statuses(responses)
    written = sorted((response.json()["version"], response.json()["title"]) for response in responses)
    assert [v for v, _ in written] == list(range(version + 1, version + CONCURRENCY + 1))
    assert sorted(title for _, title in written) == sorted(f"writer {i}" for i in range(CONCURRENCY))
    last_version, last_title = written[-1]
    assert await task_row(db, task["id"]) == (last_title, None, last_version)


def mixed_case(email: str, seed: int) -> str:
    """`email` with the case of its n-th letter flipped when bit n of `seed` is set: many spellings of one
    address."""
    letters = iter(range(len(email)))
    return "".join(c.upper() if c.isalpha() and (seed >> next(letters)) & 1 else c for c in email)


async def test_registrations_of_one_email_in_any_case_one_201_rest_409(api, db, database_url):
    email = "race.winner@example.com"
    spellings = {mixed_case(email, seed) for seed in range(CONCURRENCY)}
    assert len(spellings) == CONCURRENCY

    def registrations() -> list[Awaitable[httpx.Response]]:
        return [api.client.post(REGISTER, json={"email": e, "password": "long enough"}) for e in spellings]

    # An uncommitted row with that email: every registration's INSERT waits on it (unique lower(email) index).
    hold = ("INSERT INTO users (email, hashed_password) VALUES ($1, 'not a hash')", email)
    responses = await race(database_url, db, hold, registrations, api.in_database_at_once)
    assert statuses(responses) == {201: 1, 409: CONCURRENCY - 1}, statuses(responses)
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {
        "An account with this email already exists."
    }
    assert await db.fetchval("SELECT array_agg(email) FROM users") == [email]
    token = next(r.json()["access_token"] for r in responses if r.status_code == 201)
    me = await api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["email"] == email


CREATES = 200


async def test_concurrent_creates_by_one_user_lose_nothing(api, db):
    """200 creates, 50 in flight at a time: every 201's id is in the database with its title, and nothing else."""
    account = await make_account(db)
    gate = asyncio.Semaphore(CONCURRENCY)
    in_flight = peak = 0

    async def create(i: int) -> httpx.Response:
        nonlocal in_flight, peak
        async with gate:
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await api.client.post(
                    TASKS, json={"title": f"task {i}", "tags": [f"n{i % 7}"]}, headers=account.headers
                )
            finally:
                in_flight -= 1

    responses = await asyncio.gather(*(create(i) for i in range(CREATES)))
    assert statuses(responses) == {201: CREATES}, statuses(responses)
    assert peak == CONCURRENCY
    answered = {r.json()["id"]: r.json()["title"] for r in responses}
    rows = await db.fetch("SELECT id, title FROM tasks WHERE user_id = $1", account.id)
    assert {str(row["id"]): row["title"] for row in rows} == answered
    assert sorted(answered.values()) == sorted(f"task {i}" for i in range(CREATES))


async def test_password_hashing_in_flight_is_bounded_by_the_cores(client, monkeypatch, production_hashing):
    """50 registrations at once run at most HASHING_SLOTS argon2 hashes at a time (64 MiB each), not 40.

    The hasher is the real one, wrapped to count how many calls are inside it at once."""
    import threading

    from app import security

    hasher = security._hasher()
    real_hash = hasher.hash
    lock, inside, peak = threading.Lock(), 0, 0

    def counting_hash(password: str) -> str:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        try:
            return real_hash(password)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(hasher, "hash", counting_hash)
    bodies = [{"email": f"burst-{i}@example.com", "password": "long enough"} for i in range(CONCURRENCY)]
    responses = await asyncio.gather(*(client.post(REGISTER, json=body) for body in bodies))
    assert statuses(responses) == {201: CONCURRENCY}, statuses(responses)
    assert 1 < peak <= security.HASHING_SLOTS
