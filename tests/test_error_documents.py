"""Every error the OpenAPI document shows is the error the server sends: each documented `{"detail": ...}`
response is provoked for real, and its status, body and headers compared with the document's examples for that
operation.

Numbers in a message (a task's version, seconds to wait, DB_COMMAND_TIMEOUT) differ between the example and a
given response, so they are compared as placeholders, in the headers of that response too (its ETag, its
Retry-After); every other character must match. A response whose message is the example's exactly must carry
the example's headers exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

import app.api.routes.auth as auth_routes
import app.queries.users as user_queries
from app.api.rate_limit import RecentlyLimited
from app.config import settings
from app.dev.certificates import create_ca, self_signed
from app.dev.embedded import free_port
from app.errors import DATABASE_FAILURES
from app.security import create_access_token
from scripts.tls_terminator import TlsTerminator
from tests.support.api import PASSWORD, create_task, make_account
from tests.support.fake_postgres import endpoint_for, url_through
from tests.support.outage import row_locked, temporary_role, use_engine
from tests.support.routes import EXAMPLES, url_of

Spec = dict[str, Any]
# The headers an error may carry to tell the client what to do next: each one sent must be documented.
ERROR_HEADERS = ("retry-after", "www-authenticate", "etag")
# Every documented error example, by name, and the test below that provokes it. A new documented error fails
# `test_no_documented_error_goes_unprovoked` until a test here provokes it and it is added.
PROVOKED = {
    "missing_token": "test_every_401_is_documented_for_its_operation",
    "invalid_token": "test_every_401_is_documented_for_its_operation",
    "account_gone": "test_every_401_is_documented_for_its_operation",
    "bad_credentials": "test_auth_errors_are_documented",
    "email_taken": "test_auth_errors_are_documented",
    "rate_limited": "test_auth_errors_are_documented",
    "malformed_if_match": "test_task_and_user_errors_are_documented",
    "wrong_current_password": "test_task_and_user_errors_are_documented",
    "task_not_found": "test_task_and_user_errors_are_documented",
    "version_mismatch": "test_task_and_user_errors_are_documented",
    "malformed_idempotency_key": "test_idempotency_key_errors_are_documented",
    "idempotency_key_reused": "test_idempotency_key_errors_are_documented",
    "idempotency_key_in_flight": "test_idempotency_key_errors_are_documented",
    "password_changed_meanwhile": "test_a_concurrent_password_change_is_documented",
    "body_too_large": "test_body_errors_are_documented",
    "unsupported_media_type": "test_body_errors_are_documented",
    "database_unavailable": "test_every_503_is_documented_for_its_operation",
    "database_refused_login": "test_a_refused_login_is_documented_for_every_operation",
    "database_tls_untrusted": "test_an_untrusted_certificate_is_documented_for_every_operation",
    "database_connection_lost": "test_a_write_whose_connection_is_lost_is_documented",
    "statement_timeout": "test_a_504_is_documented_with_the_configured_timeout",
    "statement_cancelled": "test_a_statement_cancelled_by_the_server_is_documented",
}


@dataclass(frozen=True)
class Example:
    name: str
    detail: str
    headers: dict[str, str]  # lower-cased names


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> Spec:
    return (await client.get("/openapi.json")).json()


def shape(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "<n>", text)


def examples(spec: Spec, method: str, path: str, status: int) -> list[Example]:
    """The documented examples of one operation's response: body and headers, paired by example name."""
    response = spec["paths"][path][method]["responses"].get(str(status))
    assert response is not None, f"{method.upper()} {path} answered {status}, which its document does not list"
    found = []
    for name, body in response["content"]["application/json"]["examples"].items():
        headers = {
            header.lower(): str(doc["examples"][name]["value"])
            for header, doc in response.get("headers", {}).items()
            if name in doc["examples"]
        }
        found.append(Example(name, body["value"]["detail"], headers))
    return found


def assert_as_documented(spec: Spec, response: httpx.Response, method: str, path: str, status: int) -> str:
    """Checks `response` against the operation's document; returns the name of the example it is."""
    assert response.status_code == status, (method, path, response.status_code, response.text)
    detail = response.json()["detail"]
    candidates = [item for item in examples(spec, method, path, status) if shape(item.detail) == shape(detail)]
    assert candidates, (method, path, status, detail)
    sent = {name: response.headers[name] for name in ERROR_HEADERS if name in response.headers}
    for example in candidates:
        exact = example.detail == detail
        if set(sent) == set(example.headers) and all(
            sent[name] == value if exact else shape(sent[name]) == shape(value)
            for name, value in example.headers.items()
        ):
            return example.name
    documented = {example.name: example.headers for example in candidates}
    raise AssertionError(f"{method.upper()} {path} {status}: headers {sent} are not as documented: {documented}")


def operations(spec: Spec, status: int) -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if str(status) in operation["responses"]
        and "ErrorMessage" in str(operation["responses"][str(status)].get("content", ""))
    ]


def database_operations(spec: Spec) -> list[tuple[str, str]]:
    """Every operation that runs a statement (all but the health checks, which document their own 503)."""
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if not path.startswith("/api/v1/health")
    ]


def send(client: httpx.AsyncClient, method: str, path: str, ids: Any, **kwargs: Any):
    """The route's example request (tests/support/routes.py), as a new user's email where it takes one."""
    example = EXAMPLES[(method.upper(), path)]
    options = example.options(f"doc-{uuid.uuid4().hex[:8]}@example.com")
    return client.request(method.upper(), url_of(path, ids), **options, **kwargs)


async def assert_every_operation_answers(
    client: httpx.AsyncClient, spec: Spec, headers: dict[str, str], status: int, name: str
) -> None:
    """Every database-backed operation answers the documented example `name` (the database being broken). The
    requests run at once: each may wait out DB_CONNECT_TIMEOUT."""
    operations = database_operations(spec)
    assert len(operations) >= 10
    requests = [send(client, method, path, uuid.uuid4(), headers=headers) for method, path in operations]
    for (method, path), response in zip(operations, await asyncio.gather(*requests), strict=True):
        assert assert_as_documented(spec, response, method, path, status) == name, (method, path, response.text)


async def test_every_401_is_documented_for_its_operation(client, db, spec):
    account = await make_account(db)
    task = await create_task(client, account)
    gone = await make_account(db)
    await db.execute("DELETE FROM users WHERE id = $1", gone.id)
    authorizations = [
        ("missing_token", []),
        ("missing_token", [("Authorization", "Basic dXNlcjpwdw==")]),
        ("missing_token", [("Authorization", account.headers["Authorization"])] * 2),  # ambiguous
        ("invalid_token", [("Authorization", "Bearer not-a-jwt")]),
        ("invalid_token", [("Authorization", f"Bearer {create_access_token(account.id, minutes=-1)}")]),
        ("account_gone", [("Authorization", f"Bearer {create_access_token(gone.id)}")]),
    ]
    checked = 0
    for method, path in operations(spec, 401):
        if path == "/api/v1/auth/token":
            continue  # the login's own 401 (wrong password): below
        for expected, headers in authorizations:
            response = await send(client, method, path, task["id"], headers=headers)
            assert assert_as_documented(spec, response, method, path, 401) == expected
            checked += 1
    assert checked >= 6 * 8


async def test_auth_errors_are_documented(client, db, spec, monkeypatch):
    email = f"doc-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "long enough pw"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    again = await client.post("/api/v1/auth/register", json=body)
    assert assert_as_documented(spec, again, "post", "/api/v1/auth/register", 409) == "email_taken"
    wrong = await client.post("/api/v1/auth/token", data={"username": email, "password": "not the password"})
    assert assert_as_documented(spec, wrong, "post", "/api/v1/auth/token", 401) == "bad_credentials"

    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_ATTEMPTS", 1)
    monkeypatch.setattr(auth_routes, "recently_limited", RecentlyLimited())  # this test's memory of limited clients
    limited = operations(spec, 429)
    assert len(limited) == 2
    for method, path in limited:
        responses = [await send(client, method, path, None) for _ in range(3)]  # the 3rd: remembered, for register
        for response in responses[1:]:
            assert assert_as_documented(spec, response, method, path, 429) == "rate_limited"


async def test_task_and_user_errors_are_documented(client, db, spec):
    account = await make_account(db)
    task = await create_task(client, account)
    headers = account.headers
    path = "/api/v1/tasks/{task_id}"
    for method in ("get", "patch", "delete"):
        missing = await send(client, method, path, uuid.uuid4(), headers=headers)
        assert assert_as_documented(spec, missing, method, path, 404) == "task_not_found"
    for method in ("patch", "delete"):
        malformed = await send(client, method, path, task["id"], headers=headers | {"If-Match": "3"})
        assert assert_as_documented(spec, malformed, method, path, 400) == "malformed_if_match"
        stale = await send(client, method, path, task["id"], headers=headers | {"If-Match": '"9"'})
        assert assert_as_documented(spec, stale, method, path, 412) == "version_mismatch"
        assert stale.headers["ETag"] == f'"{task["version"]}"'
    wrong = await client.patch(
        "/api/v1/users/me", json={"password": "a new long passphrase", "current_password": "wrong"}, headers=headers
    )
    assert assert_as_documented(spec, wrong, "patch", "/api/v1/users/me", 400) == "wrong_current_password"


async def test_a_concurrent_password_change_is_documented(client, db, spec, monkeypatch):
    """The password changes between the route reading its hash and writing the new one (the compare-and-set)."""
    account = await make_account(db)
    read_hash = user_queries.password_hash

    async def changed_after_reading(connection, token):
        old_hash = await read_hash(connection, token)
        await db.execute("UPDATE users SET hashed_password = hashed_password || 'x' WHERE id = $1", account.id)
        return old_hash

    monkeypatch.setattr(user_queries, "password_hash", changed_after_reading)
    response = await client.patch(
        "/api/v1/users/me",
        json={"password": "a new long passphrase", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert assert_as_documented(spec, response, "patch", "/api/v1/users/me", 409) == "password_changed_meanwhile"


async def test_body_errors_are_documented(client, db, spec):
    account = await make_account(db)
    for method, path in operations(spec, 413):
        too_large = await client.request(
            method.upper(),
            path.replace("{task_id}", str(uuid.uuid4())),
            content=b"x" * (1024 * 1024 + 1),
            headers=account.headers | {"Content-Type": "application/json"},
        )
        assert assert_as_documented(spec, too_large, method, path, 413) == "body_too_large"
    plain = await client.post(
        "/api/v1/tasks", content=b"title", headers=account.headers | {"Content-Type": "text/plain"}
    )
    assert assert_as_documented(spec, plain, "post", "/api/v1/tasks", 415) == "unsupported_media_type"


async def test_each_database_503_is_documented(spec):
    """Every answer app/errors.py can give a database failure is in the 503 or 504 document of every route that
    runs a statement, with its message and its Retry-After, exactly as the server sends them."""
    operations = database_operations(spec)
    assert len(operations) >= 10
    for problem in DATABASE_FAILURES:
        for method, path in operations:
            documented = {item.name: item for item in examples(spec, method, path, problem.status)}
            assert problem.name in documented, (method, path, problem.status, problem.name)
            example = documented[problem.name]
            assert example.detail == problem.detail_for(**problem.example), (method, path, problem.name)
            assert example.headers == {
                name.lower(): value for name, value in problem.headers_for(**problem.example).items()
            }
            assert example.headers["retry-after"].isdigit()


async def test_every_503_is_documented_for_its_operation(client, db, spec, monkeypatch):
    account = await make_account(db)
    engine = use_engine(monkeypatch, f"postgresql://postgres:unused@127.0.0.1:{free_port()}/app")
    try:
        await assert_every_operation_answers(client, spec, account.headers, 503, "database_unavailable")
    finally:
        await engine.dispose()


async def test_a_refused_login_is_documented_for_every_operation(client, db, database_url, spec, monkeypatch):
    account = await make_account(db)
    url = make_url(database_url).set(database="no_such_database").render_as_string(hide_password=False)
    engine = use_engine(monkeypatch, url)
    try:
        await assert_every_operation_answers(client, spec, account.headers, 503, "database_refused_login")
    finally:
        await engine.dispose()


async def test_an_untrusted_certificate_is_documented_for_every_operation(
    client, db, database_url, spec, monkeypatch, tmp_path
):
    """A server whose certificate no trusted CA signed (a man in the middle): the connection is refused."""
    account = await make_account(db)
    server = make_url(database_url)
    terminator = TlsTerminator(
        (server.host or "127.0.0.1", server.port or 5432), self_signed(tmp_path, "mitm", ("127.0.0.1",))
    ).start()
    ca = create_ca(tmp_path)
    url = server.set(port=terminator.port).render_as_string(hide_password=False)
    engine = use_engine(monkeypatch, f"{url}?sslmode=verify-full&sslrootcert={ca.cert}")
    try:
        await assert_every_operation_answers(client, spec, account.headers, 503, "database_tls_untrusted")
    finally:
        await engine.dispose()
        terminator.stop()


async def test_a_write_whose_connection_is_lost_is_documented(client, db, database_url, spec, monkeypatch):
    account = await make_account(db)
    endpoint = endpoint_for(database_url, cut_after=lambda sql: sql.lstrip().upper().startswith("INSERT INTO TASKS"))
    engine = use_engine(monkeypatch, url_through(database_url, endpoint))
    try:
        response = await send(client, "post", "/api/v1/tasks", None, headers=account.headers)
    finally:
        await engine.dispose()
        endpoint.stop()
    assert assert_as_documented(spec, response, "post", "/api/v1/tasks", 503) == "database_connection_lost"


async def test_a_504_is_documented_with_the_configured_timeout(client, db, database_url, spec, monkeypatch):
    account = await make_account(db)
    task = await create_task(client, account)
    engine = use_engine(monkeypatch, database_url, DB_COMMAND_TIMEOUT=1.0)
    try:
        async with row_locked(database_url, task["id"]):
            response = await send(client, "patch", "/api/v1/tasks/{task_id}", task["id"], headers=account.headers)
    finally:
        await engine.dispose()
    assert assert_as_documented(spec, response, "patch", "/api/v1/tasks/{task_id}", 504) == "statement_timeout"
    assert response.json()["detail"].startswith("The database took longer than 1 s")
    # The document's example names this deployment's DB_COMMAND_TIMEOUT, not a fixed figure.
    assert f"{settings.DB_COMMAND_TIMEOUT:g} s" in str(spec["paths"]["/api/v1/tasks"]["get"]["responses"]["504"])


async def test_a_statement_cancelled_by_the_server_is_documented(client, db, database_url, spec, monkeypatch):
    """The role's statement_timeout (1 s) fires before the client's DB_COMMAND_TIMEOUT (10 s)."""
    async with temporary_role(db, database_url, statement_timeout="1s") as role_url:
        account = await make_account(db)
        task = await create_task(client, account)
        engine = use_engine(monkeypatch, role_url, DB_COMMAND_TIMEOUT=10)
        try:
            async with row_locked(database_url, task["id"]):
                response = await send(client, "delete", "/api/v1/tasks/{task_id}", task["id"], headers=account.headers)
        finally:
            await engine.dispose()
    assert assert_as_documented(spec, response, "delete", "/api/v1/tasks/{task_id}", 504) == "statement_cancelled"


async def test_idempotency_key_errors_are_documented(client, db, spec):
    account = await make_account(db)
    task = await create_task(client, account)
    for method, path in (("post", "/api/v1/tasks"), ("patch", "/api/v1/tasks/{task_id}")):
        malformed = await send(client, method, path, task["id"], headers={**account.headers, "Idempotency-Key": '""'})
        assert assert_as_documented(spec, malformed, method, path, 400) == "malformed_idempotency_key"
        keyed = {**account.headers, "Idempotency-Key": f'"{method}-1"'}
        assert (await send(client, method, path, task["id"], headers=keyed)).status_code in (200, 201)
        other = await client.request(
            method.upper(), path.replace("{task_id}", task["id"]), json={"title": "Other"}, headers=keyed
        )
        assert assert_as_documented(spec, other, method, path, 422) == "idempotency_key_reused"
        before = await db.fetchval("SELECT count(*) || ':' || sum(version) FROM tasks")
        async with key_race_lost(db):  # every insert of a key fails as if a concurrent duplicate won the race
            busy = await send(client, method, path, task["id"], headers={**keyed, "Idempotency-Key": f'"{method}-2"'})
        assert assert_as_documented(spec, busy, method, path, 409) == "idempotency_key_in_flight"
        assert await db.fetchval("SELECT count(*) || ':' || sum(version) FROM tasks") == before  # nothing written


@contextlib.asynccontextmanager
async def key_race_lost(db):
    """The database answers each insert into idempotency_keys with the unique violation a lost race gets."""
    await db.execute(
        """
        CREATE FUNCTION lose_key_race() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            RAISE unique_violation USING CONSTRAINT = 'pk_idempotency_keys',
                MESSAGE = 'duplicate key value violates unique constraint "pk_idempotency_keys"';
        END $$;
        CREATE TRIGGER lose_key_race BEFORE INSERT ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION lose_key_race();
        """
    )
    try:
        yield
    finally:
        await db.execute("DROP TRIGGER lose_key_race ON idempotency_keys; DROP FUNCTION lose_key_race()")


async def test_no_documented_error_goes_unprovoked(spec):
    """Each documented error example is one the tests above provoke: a new one must be added to them."""
    seen = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "ErrorMessage" not in str(response.get("content", "")):
                    continue
                for example in examples(spec, method, path, int(status)):
                    assert example.name in PROVOKED, (method, path, status, example.name)
                    seen.add(example.name)
    assert seen == set(PROVOKED)  # none listed that is no longer documented
