"""`app.dependency_overrides` works on every route, the way a user of FastAPI swaps a dependency in a test: the
current user (`current_token`) and the database connection (`get_connection`).

The routes are discovered from the application itself (`fastapi.routing.iter_route_contexts`, what FastAPI builds
the OpenAPI document from): a route added later is covered without anyone editing this file, or fails with a
message saying which example request to add.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import event

from app import db as app_db
from app.api.deps import current_token
from app.config import settings
from app.db import LazyConnection, create_engine, get_connection
from app.main import app
from app.security import AccessToken
from tests.support.api import make_account

# One request per API route that succeeds for the token's user, so that an answer other than 2xx is the
# override's failure. `{task_id}` is replaced by a task of that user.
EXAMPLES: dict[tuple[str, str], dict] = {
    ("GET", "/api/v1/health"): {},
    ("GET", "/api/v1/health/db"): {},
    ("POST", "/api/v1/auth/register"): {"json": {"email": "override@example.com", "password": "long enough pw"}},
    ("POST", "/api/v1/auth/token"): {"data": {"username": "override@example.com", "password": "long enough pw"}},
    ("GET", "/api/v1/users/me"): {},
    ("PATCH", "/api/v1/users/me"): {"json": {"full_name": "Overridden"}},
    ("GET", "/api/v1/tasks"): {"params": {"tag": "x"}},
    ("POST", "/api/v1/tasks"): {"json": {"title": "Through an override"}},
    ("GET", "/api/v1/tasks/{task_id}"): {},
    ("PATCH", "/api/v1/tasks/{task_id}"): {"json": {"status": "done"}},
    ("GET", "/api/v1/tags"): {},
    ("DELETE", "/api/v1/tasks/{task_id}"): {},
    ("DELETE", "/api/v1/users/me"): {},  # last: it ends the account
}


def api_operations() -> list[tuple[str, str, APIRoute]]:
    """(method, full path, route) of every API route, from the application's own routes."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and (context.path_format or "").startswith("/api/"):
            found.extend((method, context.path_format or "", route) for method in sorted(route.methods))
    return found


def test_every_route_has_an_example_request():
    missing = [f"{method} {path}" for method, path, _ in api_operations() if (method, path) not in EXAMPLES]
    assert not missing, (
        f"add a request that succeeds to EXAMPLES in {__file__} for: {', '.join(missing)} "
        "(its json/params/data; `{task_id}` is filled in with a task of the test's user)"
    )
    stale = set(EXAMPLES) - {(method, path) for method, path, _ in api_operations()}
    assert not stale, f"EXAMPLES names routes the app no longer has: {stale}"


@pytest.fixture
async def recording_engine() -> AsyncIterator[tuple[object, list[str]]]:
    """An engine of the test's own whose statements are recorded, as a user would swap in a test database."""
    engine = create_engine(settings.database, settings.model_copy(update={"DB_POOL": "null"}))
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    yield engine, statements
    await engine.dispose()


async def test_every_route_answers_through_overridden_user_and_connection(client, db, recording_engine):
    engine, statements = recording_engine
    account = await make_account(db)
    task_id = await db.fetchval(
        "INSERT INTO tasks (user_id, title, tags) VALUES ($1, 'Mine', '{x}') RETURNING id", account.id
    )
    app_statements: list[str] = []
    listener = lambda *args: app_statements.append(args[2])  # noqa: E731

    async def test_connection() -> AsyncIterator[LazyConnection]:
        async with LazyConnection(engine) as connection:  # type: ignore[arg-type]
            yield connection

    def test_user() -> AccessToken:
        return AccessToken(account.id, datetime.now(UTC))

    app.dependency_overrides[current_token] = test_user
    app.dependency_overrides[get_connection] = test_connection
    event.listen(app_db.engine.sync_engine, "before_cursor_execute", listener)
    try:
        operations = {(method, path) for method, path, _ in api_operations()}
        for method, path in EXAMPLES:  # in the table's order: the deletes come last
            assert (method, path) in operations
            statements.clear()
            url = path.replace("{task_id}", str(task_id))
            response = await client.request(method, url, **EXAMPLES[(method, path)])  # no Authorization header
            assert response.status_code < 300, (method, path, response.status_code, response.text)
            if not path.startswith("/api/v1/health"):
                assert statements, f"{method} {path} did not use the overriding connection"
    finally:
        app.dependency_overrides.clear()
        event.remove(app_db.engine.sync_engine, "before_cursor_execute", listener)
    # health/db asks the app's engine itself (it reports on the deployment's database, not a request's).
    assert all("alembic_version" in statement for statement in app_statements), app_statements


async def test_the_overridden_user_is_the_one_served(client, db):
    mine, other = await make_account(db), await make_account(db)
    await db.execute("INSERT INTO tasks (user_id, title) VALUES ($1, 'Mine'), ($2, 'Not mine')", mine.id, other.id)
    app.dependency_overrides[current_token] = lambda: AccessToken(mine.id, datetime.now(UTC))
    try:
        listed = await client.get("/api/v1/tasks", headers=other.headers)  # the override wins over the header
        me = await client.get("/api/v1/users/me")
    finally:
        app.dependency_overrides.clear()
    assert [task["title"] for task in listed.json()["items"]] == ["Mine"]
    assert me.json()["id"] == str(mine.id)
    # Without the override the token decides again.
    assert (await client.get("/api/v1/users/me", headers=other.headers)).json()["id"] == str(other.id)
    assert (await client.get("/api/v1/users/me")).status_code == 401
