"""`app.dependency_overrides` works on every route, the way a user of FastAPI swaps a dependency in a test: the
current user (`current_token`) and the database connection (`get_connection`).

Every route is sent its example request (tests/support/routes.py, which tests/test_routes.py keeps complete).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db as app_db
from app.api.deps import current_token
from app.config import settings
from app.db import LazyConnection, create_engine, get_connection
from app.main import app
from app.security import AccessToken
from tests.support.api import make_account
from tests.support.routes import EXAMPLES, arranged_ids, example_requests


@pytest.fixture
async def recording_engine() -> AsyncIterator[tuple[AsyncEngine, list[str]]]:
    """An engine of the test's own whose statements are recorded, as a user would swap in a test database."""
    engine = create_engine(settings.database, settings.model_copy(update={"DB_POOL": "null"}))
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    yield engine, statements
    await engine.dispose()


async def test_every_route_answers_through_overridden_user_and_connection(client, db, recording_engine):
    engine, statements = recording_engine
    account = await make_account(db)
    app_statements: list[str] = []
    listener = lambda *args: app_statements.append(args[2])  # noqa: E731

    async def test_connection() -> AsyncIterator[LazyConnection]:
        async with LazyConnection(engine) as connection:
            yield connection

    def test_user() -> AccessToken:
        return AccessToken(account.id, datetime.now(UTC))

    app.dependency_overrides[current_token] = test_user
    app.dependency_overrides[get_connection] = test_connection
    event.listen(app_db.engine.sync_engine, "before_cursor_execute", listener)
    try:
        ids = await arranged_ids(client, {})  # as the overridden user, on the overriding connection
        for (method, path), request in zip(EXAMPLES, example_requests(client, {}, ids).values(), strict=True):
            statements.clear()
            response = await request()  # no Authorization header: the overridden user is the caller
            assert response.status_code == EXAMPLES[(method, path)].status, (method, path, response.text)
            if not path.startswith("/api/v1/health"):
                assert statements, f"{method} {path} did not use the overriding connection"
    finally:
        app.dependency_overrides.clear()
        event.remove(app_db.engine.sync_engine, "before_cursor_execute", listener)
    # Only health/db asks the app's engine itself (it reports on the deployment's database, not a request's).
    assert app_statements and all("alembic_version" in statement for statement in app_statements), app_statements


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
