"""The per-client limit on login and register: counted in PostgreSQL inside each route's one statement.

The suite runs with a very high limit (tests/conftest.py); these tests set their own on the live settings, start
from an empty counter table and give their clients addresses of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

import app.api.routes.auth as auth_routes
from app.api.rate_limit import RecentlyLimited, client_address, email_key
from app.config import settings
from app.queries.rate_limit import CLEANUP_BATCH
from tests.support.api import PASSWORD, make_account
from tests.test_roundtrips import FLOOR, app_engine_through_proxy, counted

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/token"
LIMIT = 3
WINDOW = 60


@pytest.fixture(autouse=True)
async def limited(db, monkeypatch) -> AsyncIterator[None]:
    """A small limit, an empty counter table, and a fresh per-process memory of limited clients."""
    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_ATTEMPTS", LIMIT)
    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_WINDOW_SECONDS", WINDOW)
    monkeypatch.setattr(auth_routes, "recently_limited", RecentlyLimited())
    await db.execute("DELETE FROM auth_attempts")
    yield
    await db.execute("DELETE FROM auth_attempts")


@asynccontextmanager
async def client_from(address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests reach the app from `address` (scope["client"], as Mangum sets it on Lambda)."""
    from app.main import app

    transport = httpx.ASGITransport(app=app, client=(address, 50123))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def login(http: httpx.AsyncClient, email: str, password: str = "not the password"):
    return http.post(LOGIN, data={"username": email, "password": password})


def register(http: httpx.AsyncClient, email: str | None = None):
    return http.post(REGISTER, json={"email": email or f"new-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD})


def assert_limited(response: httpx.Response, window: int = WINDOW) -> int:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert response.json() == {
        "detail": f"Too many login or registration attempts from this address; retry in {retry_after} seconds."
    }
    return retry_after


async def count_of(db, key: str) -> int | None:
    return await db.fetchval("SELECT count FROM auth_attempts WHERE client_key = $1", key)


class CountingCalls:
    """Wraps a real function and counts its calls (the function still runs)."""

    def __init__(self, function) -> None:
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


async def test_login_allows_the_limit_then_429_with_retry_after_and_no_password_check(db, monkeypatch):
    account = await make_account(db)
    verify = CountingCalls(auth_routes.verify_password)
    monkeypatch.setattr(auth_routes, "verify_password", verify)
    async with client_from("203.0.113.10") as http:
        for _ in range(LIMIT):
            assert (await login(http, account.email)).status_code == 401
        assert verify.calls == LIMIT
        assert assert_limited(await login(http, account.email)) > WINDOW - 5
        # Over the limit even the right password gets no token, and no verify runs (no CPU spent on it).
        assert_limited(await login(http, account.email, PASSWORD))
        assert verify.calls == LIMIT
    assert await count_of(db, "ip:203.0.113.10") == LIMIT + 2


async def test_another_address_is_not_affected(db):
    account = await make_account(db)
    async with client_from("203.0.113.11") as attacker:
        for _ in range(LIMIT):
            await login(attacker, f"guess-{uuid.uuid4().hex[:6]}@example.com")
        assert_limited(await login(attacker, account.email, PASSWORD))
    async with client_from("203.0.113.12") as someone_else:
        assert (await login(someone_else, account.email, PASSWORD)).status_code == 200


async def test_one_email_is_limited_across_addresses(db):
    """Password guessing against one account from many addresses: the email has its own counter."""
    account = await make_account(db)
    for i in range(LIMIT):
        async with client_from(f"203.0.113.{20 + i}") as http:
            assert (await login(http, account.email.upper())).status_code == 401
    async with client_from("203.0.113.40") as fresh_address:
        assert_limited(await login(fresh_address, account.email, PASSWORD))
        assert (await login(fresh_address, "someone-else@example.com")).status_code == 401
    assert await count_of(db, email_key(account.email)) == LIMIT + 1


async def test_the_window_resets_and_retry_after_counts_down(db):
    account = await make_account(db)
    key = "ip:203.0.113.13"
    async with client_from("203.0.113.13") as http:
        for _ in range(LIMIT + 1):
            await login(http, f"guess-{uuid.uuid4().hex[:6]}@example.com")
        await db.execute(
            "UPDATE auth_attempts SET window_start = now() - interval '45 seconds' WHERE client_key = $1", key
        )
        retry_after = assert_limited(await login(http, "guess@example.com"))
        assert 14 <= retry_after <= 16
        # The window has passed: the next attempt opens a new one, counted from 1.
        await db.execute(
            "UPDATE auth_attempts SET window_start = now() - interval '61 seconds' WHERE client_key = $1", key
        )
        assert (await login(http, account.email, PASSWORD)).status_code == 200
    assert await count_of(db, key) == 1
    assert await db.fetchval(
        "SELECT window_start > now() - interval '5 seconds' FROM auth_attempts WHERE client_key = $1", key
    )


async def test_register_is_limited_and_writes_no_user_over_the_limit(db, monkeypatch):
    hashing = CountingCalls(auth_routes.hash_password)
    monkeypatch.setattr(auth_routes, "hash_password", hashing)
    async with client_from("203.0.113.14") as http:
        for _ in range(LIMIT):
            assert (await register(http)).status_code == 201
        assert_limited(await register(http, "over@example.com"))
        assert hashing.calls == LIMIT + 1  # the statement that said 429 needed the hash before it ran
        counted_so_far = await count_of(db, "ip:203.0.113.14")
        # This process has been told: further attempts cost neither a hash nor a statement until the window ends.
        assert_limited(await register(http, "again@example.com"))
        assert hashing.calls == LIMIT + 1
        assert await count_of(db, "ip:203.0.113.14") == counted_so_far == LIMIT + 1
    assert await db.fetchval("SELECT count(*) FROM users") == LIMIT
    assert await db.fetchval("SELECT count(*) FROM users WHERE email IN ('over@example.com', 'again@example.com')") == 0
    async with client_from("203.0.113.15") as someone_else:
        assert (await register(someone_else, "over@example.com")).status_code == 201


async def test_concurrent_attempts_from_one_address_cannot_exceed_the_limit(db, monkeypatch):
    limit = 5
    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_ATTEMPTS", limit)
    async with client_from("203.0.113.16") as http:
        logins = await asyncio.gather(*(login(http, f"g{i}@example.com") for i in range(20)))
    assert sorted(r.status_code for r in logins) == [401] * limit + [429] * 15
    assert await count_of(db, "ip:203.0.113.16") == 20

    async with client_from("203.0.113.17") as http:
        registrations = await asyncio.gather(*(register(http) for _ in range(12)))
    assert sorted(r.status_code for r in registrations) == [201] * limit + [429] * 7
    assert await db.fetchval("SELECT count(*) FROM users") == limit


async def test_a_limit_of_zero_counts_nothing(db, monkeypatch):
    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_ATTEMPTS", 0)
    async with client_from("203.0.113.18") as http:
        statuses = {(await login(http, "nobody@example.com")).status_code for _ in range(LIMIT + 2)}
        assert (await register(http)).status_code == 201
    assert statuses == {401}
    assert await db.fetchval("SELECT count(*) FROM auth_attempts") == 0


async def test_each_attempt_removes_a_batch_of_expired_rows_but_never_live_ones(db):
    await db.execute(
        "INSERT INTO auth_attempts (client_key, window_start, count) "
        "SELECT 'ip:old-' || g, now() - interval '1 hour', 3 FROM generate_series(1, $1::int) AS g",
        CLEANUP_BATCH + 5,
    )
    await db.execute("INSERT INTO auth_attempts (client_key, count) VALUES ('ip:live', 2)")
    async with client_from("203.0.113.19") as http:
        await login(http, "nobody@example.com")
    left = {r["client_key"] for r in await db.fetch("SELECT client_key FROM auth_attempts")}
    assert len([key for key in left if key.startswith("ip:old-")]) == 5
    assert {"ip:live", "ip:203.0.113.19", email_key("nobody@example.com")} <= left
    async with client_from("203.0.113.19") as http:
        await login(http, "nobody@example.com")
    assert await db.fetchval("SELECT count(*) FROM auth_attempts WHERE client_key LIKE 'ip:old-%'") == 0


async def test_login_and_register_with_the_limit_stay_at_the_round_trip_floor(client, db, database_url, monkeypatch):
    account = await make_account(db)
    async with app_engine_through_proxy(database_url, monkeypatch, eof_hold_ms=50) as proxy:
        for name, request in {
            "login": login(client, account.email, PASSWORD),
            "register": register(client),
            "login, wrong password": login(client, account.email),
        }.items():
            stats, response = await counted(proxy, request)
            assert response.status_code in (200, 201, 401), (name, response.text)
            assert (stats["connections"], stats["round_trips"]) == (1, FLOOR), (name, stats)
    assert await count_of(db, "ip:127.0.0.1") == 3  # the counter did ride along


@pytest.mark.parametrize(
    ("scope_client", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("192.168.0.1/32", "192.168.0.1"),  # as some API Gateway test payloads write sourceIp
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),  # one subscriber's /64 is one client
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),  # ALB's X-Forwarded-For: only the last entry is ALB's
        ("testclient", "testclient"),
    ],
)
def test_client_address(scope_client, key):
    from starlette.requests import Request

    request = Request({"type": "http", "client": (scope_client, 0), "headers": []})
    assert client_address(request) == key


def test_the_memory_of_limited_clients_is_bounded():
    memory = RecentlyLimited(capacity=3)
    for i in range(10):
        memory.remember(f"ip:{i}", 60)
    assert [memory.retry_after(f"ip:{i}") for i in range(10)] == [None] * 7 + [60] * 3
