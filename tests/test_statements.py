"""Each endpoint does its work in one SQL statement (the round-trip budget of tests/test_roundtrips.py depends on it).

Counted with SQLAlchemy's `before_cursor_execute` event on the app's real engine, around real requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from app import db as app_db
from tests.support.api import PASSWORD, create_task, make_account
from tests.support.routes import EXAMPLES, arranged_ids, example_requests

TASKS = "/api/v1/tasks"


@contextmanager
def counting() -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(app_db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(app_db.engine.sync_engine, "before_cursor_execute", record)


async def test_every_endpoint_is_one_statement(client, db):
    account = await make_account(db, "ada@example.com")
    task = await create_task(client, account, tags=["x"])
    path = f"{TASKS}/{task['id']}"
    calls = [
        (
            "POST",
            "/api/v1/auth/register",
            {"json": {"email": "bob@example.com", "password": "long enough"}},
            201,
        ),
        ("POST", "/api/v1/auth/token", {"data": {"username": "ada@example.com", "password": PASSWORD}}, 200),
        ("GET", "/api/v1/users/me", {}, 200),
        ("PATCH", "/api/v1/users/me", {"json": {"full_name": "Ada"}}, 200),
        ("GET", TASKS, {"params": {"tag": "x"}}, 200),
        (
            "GET",
            TASKS,
            {"params": {"status": "todo", "priority": ["medium", "high"], "sort": "-due_date"}},
            200,
        ),
        ("POST", TASKS, {"json": {"title": "Another"}}, 201),
        ("GET", path, {}, 200),
        ("PATCH", path, {"json": {"status": "done"}, "headers": {"If-Match": '"1"'}}, 200),
        ("PATCH", path, {"json": {"title": "Stale"}, "headers": {"If-Match": '"1"'}}, 412),
        ("GET", "/api/v1/tags", {}, 200),
        ("DELETE", path, {"headers": {"If-Match": '"2"'}}, 204),
        ("DELETE", "/api/v1/users/me", {}, 204),
        ("GET", "/api/v1/users/me", {}, 401),
    ]
    for method, url, options, expected_status in calls:
        headers = {**account.headers, **options.pop("headers", {})}
        with counting() as statements:
            response = await client.request(method, url, headers=headers, **options)
        assert response.status_code == expected_status, (method, url, response.text)
        assert len(statements) == 1, (method, url, statements)


async def test_a_rejected_token_or_bad_if_match_runs_no_statement(client, db):
    account = await make_account(db)
    task = await create_task(client, account)
    with counting() as statements:
        assert (await client.get(TASKS, headers={"Authorization": "Bearer nope"})).status_code == 401
        bad_if_match = {**account.headers, "If-Match": "v1"}
        assert (await client.delete(f"{TASKS}/{task['id']}", headers=bad_if_match)).status_code == 400
    assert statements == []


async def test_every_example_request_is_one_statement(client, db):
    """Each route's example (tests/support/routes.py), a new route's included, does its work in one statement."""
    account = await make_account(db)
    ids = await arranged_ids(client, account.headers)
    expected = {example.name: example.status for example in EXAMPLES.values()}
    for name, request in example_requests(client, account.headers, ids, database_only=True).items():
        with counting() as statements:
            response = await request()
        assert response.status_code == expected[name], (name, response.text)
        assert len(statements) == 1, (name, statements)
