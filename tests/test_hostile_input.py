"""Hostile input, case by case: each gets a clear 4xx that names the problem, and nothing is written.

Oversized bodies (with, without and with a lying Content-Length, and through the Lambda handler), deeply nested
JSON, NUL characters, invalid UTF-8 and lone surrogates in every kind of input, SQL metacharacters, enormous
numbers and wrong content types. The fuzz run over the whole OpenAPI is tests/test_fuzz_openapi.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.api.limits import MAX_BODY_BYTES
from app.main import app
from app.models.fields import NOT_A_NUMBER_MESSAGE, NUL_MESSAGE, SURROGATE_MESSAGE
from tests.aws_lambda.conftest import invoke, lambda_thread  # noqa: F401 - fixtures: the real Lambda handler
from tests.aws_lambda.support import EVENT_FILES, adapt, response_json
from tests.support.api import PASSWORD, create_task, make_account

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
TOO_LARGE = "larger than 1,048,576 bytes"
BIG = json.dumps({"title": "big", "description": "x" * MAX_BODY_BYTES})


STATE = """
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM tasks) AS tasks,
       (SELECT md5(coalesce(string_agg(u::text, ',' ORDER BY u.id), '')) FROM users u) AS users_digest,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM tasks t) AS tasks_digest
"""


async def table_state(db) -> dict[str, Any]:
    """The row counts of users and tasks and a digest of every row: any insert, update or delete changes it."""
    return dict(await db.fetchrow(STATE))


@pytest.fixture
async def arranged(client, db):
    """An account with one task, and the state of the tables before the hostile request."""
    account = await make_account(db)
    task = await create_task(client, account, title="Keep me", tags=["keep"])
    return account, task, await table_state(db)


def details(response: httpx.Response) -> str:
    """The whole `detail` as text: a string (most errors) or the messages of a 422's list."""
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(error["msg"] for error in detail)


async def raw_request(
    method: str, path: str, *, query: bytes = b"", headers: list[tuple[bytes, bytes]] = (), body: bytes = b""
) -> tuple[int, Any]:
    """A request straight to the ASGI app, with bytes no HTTP client library would send but a server may pass."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(content) if content else None


# ---------------------------------------------------------------- bodies over 1 MB -> 413


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/tasks"), ("POST", "/api/v1/auth/register"), ("PATCH", "/api/v1/users/me")],
)
async def test_a_body_over_1_mb_is_a_413_and_nothing_is_written(client, db, arranged, method, path):
    account, _, before = arranged
    response = await client.request(method, path, content=BIG, headers={**JSON, **account.headers})
    assert response.status_code == 413, response.text
    assert TOO_LARGE in response.json()["detail"]
    assert await table_state(db) == before


async def test_a_route_that_never_reads_its_body_is_not_run_for_a_413(client, db, arranged):
    """Refused before routing: a DELETE that ignores its body must not delete, then be answered 413."""
    account, task, before = arranged
    response = await client.request(
        "DELETE", f"/api/v1/tasks/{task['id']}", content=BIG, headers={**JSON, **account.headers}
    )
    assert response.status_code == 413
    assert await table_state(db) == before


async def test_a_chunked_body_without_content_length_is_counted(client, db, arranged):
    account, _, before = arranged

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MB in all, no Content-Length

    request = client.build_request("POST", "/api/v1/tasks", content=chunks(), headers={**JSON, **account.headers})
    assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert response.status_code == 413
    assert TOO_LARGE in response.json()["detail"]
    assert await table_state(db) == before


@pytest.mark.parametrize("content_length", [b"20", b"0", b"abc", b"-1", b"1048576"])
async def test_a_lying_content_length_does_not_get_a_big_body_through(db, arranged, content_length):
    account, _, before = arranged
    headers = [(b"content-type", b"application/json"), (b"content-length", content_length)]
    headers.append((b"authorization", account.headers["Authorization"].encode()))
    status, body = await raw_request("POST", "/api/v1/tasks", headers=headers, body=BIG.encode())
    assert status == 413 and TOO_LARGE in body["detail"]
    assert await table_state(db) == before


async def test_a_body_of_exactly_1_mb_is_let_through_to_validation(client, arranged):
    account, _, _ = arranged
    body = json.dumps({"title": "t", "description": ""})
    body = body[:-2] + "x" * (MAX_BODY_BYTES - len(body)) + '"}'
    assert len(body.encode()) == MAX_BODY_BYTES
    response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422  # too long a description: read and validated, not refused for its size
    assert "description" in response.text


@pytest.mark.parametrize("name", EVENT_FILES)
async def test_a_body_over_1_mb_through_the_lambda_handler_is_a_413(invoke, db, arranged, name):  # noqa: F811
    account, _, before = arranged
    event = adapt(name, "POST", "/api/v1/tasks", headers=account.headers, body=BIG, keep_stage=False)
    response = await invoke(event)
    assert response["statusCode"] == 413, response
    assert TOO_LARGE in response_json(response)["detail"]
    assert await table_state(db) == before


async def test_a_base64_body_over_1_mb_through_a_function_url_is_a_413(invoke, db, arranged):  # noqa: F811
    """Counted after Mangum decodes it: 1.5 MB of base64 is the 1.1 MB body it carries."""
    account, _, before = arranged
    name = "awslambdago-lambdaurl__function-url-domain-only-request-with-base64-encoded-body.json"
    event = adapt(name, "POST", "/api/v1/tasks", headers=account.headers, body=BIG, base64_body=True)
    response = await invoke(event)
    assert response["statusCode"] == 413, response
    assert TOO_LARGE in response_json(response)["detail"]
    assert await table_state(db) == before


# ---------------------------------------------------------------- deeply nested JSON

DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP,
        "[" * DEEP + "]" * DEEP,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        '{"title": ' + "[" * DEEP + "]" * DEEP + "}",
    ],
    ids=["unclosed-arrays", "arrays", "objects", "inside-a-field"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/tasks"), ("POST", "/api/v1/auth/register")])
async def test_deeply_nested_json_is_a_422(client, db, arranged, method, path, body):
    account, _, before = arranged
    response = await client.request(method, path, content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text
    assert "The body cannot be read: its JSON is nested too deeply" in details(response)
    assert await table_state(db) == before


async def test_json_nested_up_to_and_past_the_parser_limit_is_always_a_422(client, db, arranged):
    """Below the parser's limit the body parses and validation refuses it, echoing the nested input back: that
    echo must not recurse into a 500 either. Swept across the limit, which depends on the stack in use."""
    account, _, before = arranged
    for depth in range(50, 1201, 50):
        body = '{"title": "t", "tags": ' + "[" * depth + "]" * depth + "}"
        response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
        assert response.status_code == 422, (depth, response.text)
        if depth == 100:
            assert response.json()["detail"][0]["loc"][:2] == ["body", "tags"]  # parsed, then validated
    assert await table_state(db) == before


# ---------------------------------------------------------------- wide bodies: a 422 stays small

WIDE = {
    "extra-keys": '{"title": "t", ' + ",".join(f'"k{i}": 1' for i in range(60_000)) + "}",
    "many-bad-tags": '{"title": "t", "tags": [' + ",".join(["1"] * 300_000) + "]}",
    "long-title": json.dumps({"title": "x" * 900_000}),
    "long-list-as-title": '{"title": [' + ",".join(["1"] * 300_000) + "]}",
}


@pytest.mark.parametrize("body", WIDE.values(), ids=WIDE.keys())
async def test_a_body_failing_in_many_places_gets_a_small_422(client, db, arranged, body):
    """Under 1 MB, yet unbounded its 422 would echo it many times over: 7 MB for 60,000 extra keys, more than a
    Lambda response may carry. At most 20 errors are listed, and no input over ~1,000 characters is echoed."""
    account, _, before = arranged
    response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text[:500]
    assert len(response.content) < 10_000
    errors = response.json()["detail"]
    assert 1 <= len(errors) <= 21
    assert all(len(json.dumps(error.get("input", ""))) < 1100 for error in errors)
    assert await table_state(db) == before


async def test_the_errors_left_out_are_counted(client, arranged):
    account, _, _ = arranged
    response = await client.post("/api/v1/tasks", content=WIDE["extra-keys"], headers={**JSON, **account.headers})
    errors = response.json()["detail"]
    assert len(errors) == 21 and errors[0]["type"] == "extra_forbidden"
    assert errors[-1] == {"type": "too_many_errors", "loc": ["body"], "msg": "... and 59980 more errors like these"}


# ---------------------------------------------------------------- NUL, invalid UTF-8, lone surrogates

NUL = "\u0000"
SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("method", "path", "fields", "message"),
    [
        ("POST", "/api/v1/tasks", {"title": f"a{NUL}b"}, NUL_MESSAGE),
        ("POST", "/api/v1/tasks", {"title": "t", "description": NUL}, NUL_MESSAGE),
        ("POST", "/api/v1/tasks", {"title": "t", "tags": [f"x{NUL}"]}, NUL_MESSAGE),
        ("POST", "/api/v1/tasks", {"title": SURROGATE}, SURROGATE_MESSAGE),
        ("POST", "/api/v1/tasks", {"title": "t", "description": f"ok {SURROGATE}"}, SURROGATE_MESSAGE),
        ("POST", "/api/v1/tasks", {"title": "t", "tags": [SURROGATE]}, SURROGATE_MESSAGE),
        ("POST", "/api/v1/auth/register", {"email": "n@example.com", "password": f"{PASSWORD}{NUL}"}, NUL_MESSAGE),
        ("POST", "/api/v1/auth/register", {"email": f"n{NUL}@example.com", "password": PASSWORD}, NUL_MESSAGE),
        (
            "POST",
            "/api/v1/auth/register",
            {"email": f"{SURROGATE}@example.com", "password": PASSWORD},
            SURROGATE_MESSAGE,
        ),
        (
            "POST",
            "/api/v1/auth/register",
            {"email": "n@example.com", "password": PASSWORD, "full_name": SURROGATE},
            SURROGATE_MESSAGE,
        ),
        ("PATCH", "/api/v1/users/me", {"full_name": f"A{NUL}"}, NUL_MESSAGE),
        ("PATCH", "/api/v1/users/me", {"password": "new passphrase", "current_password": NUL}, NUL_MESSAGE),
        (
            "PATCH",
            "/api/v1/users/me",
            {"password": f"new passphrase{SURROGATE}", "current_password": PASSWORD},
            SURROGATE_MESSAGE,
        ),
    ],
)
async def test_nul_and_lone_surrogates_in_json_strings_are_a_422(client, db, arranged, method, path, fields, message):
    account, _, before = arranged
    # ensure_ascii: the body carries the JSON escapes \u0000 and \ud800, which is valid JSON.
    body = json.dumps(fields)
    response = await client.request(method, path, content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text
    assert message in details(response)
    assert await table_state(db) == before
    assert (await client.get("/api/v1/users/me", headers=account.headers)).json()["full_name"] is None


async def test_the_patch_of_a_task_with_nul_changes_nothing(client, db, arranged):
    account, task, _ = arranged
    for fields in ({"title": NUL}, {"tags": ["ok", NUL]}, {"description": SURROGATE}):
        url = f"/api/v1/tasks/{task['id']}"
        response = await client.patch(url, content=json.dumps(fields), headers={**JSON, **account.headers})
        assert response.status_code == 422, response.text
    row = await db.fetchrow("SELECT title, tags, version FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert dict(row) == {"title": "Keep me", "tags": ["keep"], "version": 1}


@pytest.mark.parametrize(
    "body",
    [b'{"title": "caf\xe9"}', b'{"title": "\xff\xfe"}', b'{"title": "\xed\xa0\x80"}', b'\xef\xbb\xbf{"title": 1'],
    ids=["latin-1", "invalid-bytes", "utf-8-encoded-surrogate", "bom-and-broken"],
)
async def test_invalid_utf8_in_a_json_body_is_a_422_that_says_so(client, db, arranged, body):
    account, _, before = arranged
    response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text
    text = details(response)
    # (JSON's parser reads UTF-8-encoded surrogates as surrogates: the text rule refuses them.)
    assert "not valid UTF-8" in text or "JSON decode error" in text or SURROGATE_MESSAGE in text, text
    assert await table_state(db) == before


@pytest.mark.parametrize("field", ["username", "password"])
async def test_nul_in_the_login_form_is_a_422(client, db, arranged, field):
    account, _, _ = arranged
    credentials = {"username": account.email, "password": PASSWORD, field: f"x{NUL}"}
    response = await client.post("/api/v1/auth/token", data=credentials)
    assert response.status_code == 422, response.text
    assert NUL_MESSAGE in details(response)


async def test_invalid_utf8_in_the_login_form_is_refused(client, arranged):
    account, _, _ = arranged
    body = f"username={account.email}&password=".encode() + b"\xff\xfe"
    response = await client.post("/api/v1/auth/token", content=body, headers=FORM)
    # Decoded with replacement characters, the password is simply wrong: no 500, no token.
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (b"q=%00", "q"),
        (b"q=a\x00b", "q"),
        (b"tag=%00", "tag"),
        (b"any_tag=ok&any_tag=%00", "any_tag"),
        (b"cursor=%00", "cursor"),
        (b"cursor=abc.%00", "cursor"),
        (b"status=%00", "status"),
        (b"sort=%00", "sort"),
        (b"due_before=%00", "due_before"),
        (b"limit=%00", "limit"),
    ],
)
async def test_nul_in_the_query_string_is_a_422_naming_the_parameter(db, arranged, query, field):
    account, _, before = arranged
    headers = [(b"authorization", account.headers["Authorization"].encode())]
    status, body = await raw_request("GET", "/api/v1/tasks", query=query, headers=headers)
    assert status == 422, body
    assert field in {part for error in body["detail"] for part in error["loc"]}
    assert await table_state(db) == before


@pytest.mark.parametrize("query", [b"q=%ff%fe", b"q=\xff", b"q=%ED%A0%80", b"tag=%C3", b"any_tag=\xe9t\xe9"])
async def test_invalid_utf8_in_the_query_string_is_read_as_replacement_characters(db, arranged, query):
    """Decoded with U+FFFD (as every ASGI server does): a search for that character, which matches nothing."""
    account, _, _ = arranged
    headers = [(b"authorization", account.headers["Authorization"].encode())]
    status, body = await raw_request("GET", "/api/v1/tasks", query=query, headers=headers)
    assert status == 200, body
    assert body["items"] == []


@pytest.mark.parametrize("task_id", ["%00", "a%00b", "%ff", "%ED%A0%80", "12345", "1e309", "-1"])
async def test_a_task_id_that_is_not_a_uuid_is_a_422(client, db, arranged, task_id):
    account, _, before = arranged
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        response = await client.request(method, f"/api/v1/tasks/{task_id}", headers=account.headers, **kwargs)
        assert response.status_code == 422, (method, response.text)
        assert "task_id" in response.text
    assert await table_state(db) == before


@pytest.mark.parametrize(
    "if_match", [b"\x00", b'"1\x00"', b'"\xff"', b'"\xc3\xa9"', b'"99999999999999999999"', b'"1e309"', b'"-1"', b"W/"]
)
async def test_a_hostile_if_match_is_a_400_and_nothing_changes(db, arranged, if_match):
    account, task, before = arranged
    headers = [
        (b"authorization", account.headers["Authorization"].encode()),
        (b"content-type", b"application/json"),
        (b"if-match", if_match),
    ]
    for method, body in (("PATCH", b'{"title": "changed"}'), ("DELETE", b"")):
        status, answer = await raw_request(method, f"/api/v1/tasks/{task['id']}", headers=headers, body=body)
        assert status == 400, (method, answer)
        assert "If-Match" in answer["detail"]
    assert await table_state(db) == before
    assert await db.fetchval("SELECT title FROM tasks WHERE id = $1", uuid.UUID(task["id"])) == "Keep me"


@pytest.mark.parametrize("authorization", [b"Bearer \x00", b"Bearer \xff\xfe", b"\x00", b"Bearer " + b"a" * 8000])
async def test_a_hostile_authorization_header_is_a_401(db, arranged, authorization):
    _, _, before = arranged
    headers = [(b"authorization", authorization), (b"content-type", b"application/json")]
    status, body = await raw_request("POST", "/api/v1/tasks", headers=headers, body=b'{"title": "x"}')
    assert status == 401, body
    assert "log in again" in body["detail"] or "Not authenticated" in body["detail"]
    assert await table_state(db) == before


# ---------------------------------------------------------------- SQL metacharacters, treated literally

METACHARACTERS = ["'; DROP TABLE tasks; --", "100%", "a_b", "back\\slash", 'say "hi"', "it's", "%", "_", "\\", "%_\\'"]


async def test_sql_metacharacters_in_q_match_only_literally(client, db):
    account = await make_account(db)
    for title in [*METACHARACTERS, "plain", "100 percent", "axb", "backslash"]:
        await create_task(client, account, title=title)
    total = await db.fetchval("SELECT count(*) FROM tasks")
    for text in METACHARACTERS:
        response = await client.get("/api/v1/tasks", params={"q": text, "limit": 100}, headers=account.headers)
        assert response.status_code == 200, response.text
        titles = {item["title"] for item in response.json()["items"]}
        assert titles == {title for title in METACHARACTERS if text.lower() in title.lower()}, text
    assert await db.fetchval("SELECT count(*) FROM tasks") == total  # the table is still there, every row too


async def test_sql_metacharacters_in_tags_are_stored_and_filtered_literally(client, db):
    account = await make_account(db)
    tags = [text.lower() for text in METACHARACTERS]
    for tag in tags:
        await create_task(client, account, title=f"tagged {tag}", tags=[tag])
    await create_task(client, account, title="untagged")
    for tag in tags:
        for parameter in ("tag", "any_tag"):
            response = await client.get("/api/v1/tasks", params={parameter: tag}, headers=account.headers)
            assert response.status_code == 200, response.text
            assert [item["title"] for item in response.json()["items"]] == [f"tagged {tag}"]
    counts_by_tag = {
        row["tag"]: row["count"] for row in (await client.get("/api/v1/tags", headers=account.headers)).json()
    }
    assert counts_by_tag == dict.fromkeys(tags, 1)
    assert await db.fetchval("SELECT count(*) FROM tasks") == len(tags) + 1


@pytest.mark.parametrize("cursor", [*METACHARACTERS, "x.y", "'.'", "e30.AAAAAAAAAAAAAAAAAAAAAA", "." * 2048])
async def test_sql_metacharacters_in_a_cursor_are_a_422(client, db, arranged, cursor):
    account, _, before = arranged
    response = await client.get("/api/v1/tasks", params={"cursor": cursor}, headers=account.headers)
    assert response.status_code == 422, response.text
    assert "cursor" in details(response)
    assert await table_state(db) == before


# ---------------------------------------------------------------- enormous numbers

HUGE_INT = "1" + "0" * 5000


@pytest.mark.parametrize("limit", [str(10**400), "1e309", "inf", "nan", "-1", "0", "101", "1.5", HUGE_INT])
async def test_an_enormous_or_odd_limit_is_a_422(client, arranged, limit):
    account, _, _ = arranged
    response = await client.get("/api/v1/tasks", params={"limit": limit}, headers=account.headers)
    assert response.status_code == 422, response.text
    assert "limit" in response.text


@pytest.mark.parametrize(
    "body",
    [
        '{"title": ' + HUGE_INT + "}",
        '{"title": "t", "priority": ' + HUGE_INT + "}",
        '{"title": "t", "priority": 1e309}',
        '{"title": "t", "priority": 3}',
        '{"title": "t", "priority": NaN}',
        '{"title": "t", "status": Infinity}',
        '{"title": "t", "due_date": 1e309}',
        '{"title": "t", "due_date": ' + str(10**20) + "}",
        '{"title": "t", "due_date": "99999-01-01T00:00:00Z"}',
        '{"title": "t", "tags": [' + HUGE_INT + "]}",
        '{"title": 1e309}',
        '{"title": "t", "version": 99999999999999999999}',
        '{"title": "t", "id": 12345}',
    ],
)
async def test_enormous_numbers_in_a_body_are_a_422(client, db, arranged, body):
    account, _, before = arranged
    response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text
    assert await table_state(db) == before


async def test_a_json_integer_over_4300_digits_is_named_in_the_error(client, arranged):
    account, _, _ = arranged
    response = await client.post(
        "/api/v1/tasks", content='{"title": ' + HUGE_INT + "}", headers={**JSON, **account.headers}
    )
    assert response.status_code == 422
    assert "more than 4300 digits" in details(response)


@pytest.mark.parametrize(
    "due_date", ["0", "1700000000", "1700000000000", "1e309", "-1", "true", str(10**20), '"0.5"', '"1700000000"']
)
async def test_a_due_date_given_as_a_number_is_a_422_not_unix_time(client, db, arranged, due_date):
    account, task, before = arranged
    body = '{"title": "t", "due_date": ' + due_date + "}"
    response = await client.post("/api/v1/tasks", content=body, headers={**JSON, **account.headers})
    assert response.status_code == 422, response.text
    assert NOT_A_NUMBER_MESSAGE in details(response) or "valid datetime" in details(response)
    patch = await client.patch(f"/api/v1/tasks/{task['id']}", content=body, headers={**JSON, **account.headers})
    assert patch.status_code == 422, patch.text
    assert await table_state(db) == before


@pytest.mark.parametrize("parameter", ["due_before", "due_after"])
@pytest.mark.parametrize("value", ["0", "0.5", "1700000000", "-1e3", " 12 "])
async def test_a_due_filter_given_as_a_number_is_a_422(client, arranged, parameter, value):
    account, _, _ = arranged
    response = await client.get("/api/v1/tasks", params={parameter: value}, headers=account.headers)
    assert response.status_code == 422, response.text
    assert NOT_A_NUMBER_MESSAGE in details(response)


# ---------------------------------------------------------------- wrong content types -> 415
# 415, not 422: the body may be fine, only its declared type is not the one the operation takes (RFC 9110,
# 15.5.16), and the detail names the type to send. A body that does have the right type but fails to parse or
# validate stays a 422. Every operation with a body documents both.

TASK_JSON = json.dumps({"title": "typed"})


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", TASK_JSON),
        ("application/x-www-form-urlencoded", "title=typed"),
        (
            "multipart/form-data; boundary=xyz",
            '--xyz\r\nContent-Disposition: form-data; name="title"\r\n\r\nt\r\n--xyz--\r\n',
        ),
        ("application/xml", "<title>typed</title>"),
        ("text/json", TASK_JSON),
        ("application/jsonx", TASK_JSON),
        (None, TASK_JSON),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/tasks"), ("PATCH", "/api/v1/users/me")])
async def test_a_json_operation_refuses_other_media_types_with_415(
    client, db, arranged, method, path, content_type, body
):
    account, _, before = arranged
    headers = {**account.headers, **({"content-type": content_type} if content_type else {})}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "takes a body of type application/json" in response.json()["detail"]
    assert await table_state(db) == before


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"username": "a@example.com", "password": PASSWORD})),
        ("text/plain", f"username=a@example.com&password={PASSWORD}"),
        ("multipart/form-data; boundary=xyz", "--xyz\r\nbroken"),
        (
            "multipart/form-data; boundary=xyz",
            '--xyz\r\nContent-Disposition: form-data; name="username"\r\n\r\nu\r\n--xyz--\r\n',
        ),
        (None, f"username=a@example.com&password={PASSWORD}"),
    ],
)
async def test_the_login_form_refuses_other_media_types_with_415(client, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/v1/auth/token", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/x-www-form-urlencoded" in response.json()["detail"]


async def test_registration_as_a_form_is_a_415_and_creates_no_account(client, db):
    response = await client.post("/api/v1/auth/register", data={"email": "form@example.com", "password": PASSWORD})
    assert response.status_code == 415
    assert (await table_state(db))["users"] == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
)
async def test_json_with_parameters_or_a_json_suffix_is_accepted(client, db, arranged, content_type):
    account, task, _ = arranged
    headers = {**account.headers, "content-type": content_type}
    response = await client.patch(f"/api/v1/tasks/{task['id']}", content='{"title": "renamed"}', headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "renamed"


async def test_an_empty_body_without_content_type_is_a_422_for_the_missing_body(client, db, arranged):
    account, _, before = arranged
    response = await client.post("/api/v1/tasks", headers=account.headers)
    assert response.status_code == 422
    assert "Field required" in details(response)
    assert await table_state(db) == before
