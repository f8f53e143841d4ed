"""Helpers for the outage, wake-up and statement-timeout tests: the app pointed at another database URL (a new
engine, as a new process would build), every database-backed endpoint as a request, and roles with limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import normalize_database_url, settings
from app.security import create_access_token
from tests.support.routes import EXAMPLES, PathIds, Request, example_requests

ROLE_PASSWORD = "role-pw-7f3a"  # a role of the test's own, on the test server only
# The application_name of engines built here: the session's pgbouncer keeps idle server connections that other
# tests' clients named after the default, and those must not count as this engine's.
APPLICATION_NAME = "task-api-outage-test"


def use_engine(monkeypatch, url: str, *, pooler: bool = False, **changes: Any) -> AsyncEngine:
    """Replace the app's engine by a new one for `url`, built from a copy of the settings."""
    import app.db

    cfg = settings.model_copy(update={"DB_APPLICATION_NAME": APPLICATION_NAME, **changes})
    engine = app.db.create_engine(normalize_database_url(url, force_pooler=pooler), cfg)
    monkeypatch.setattr(app.db, "engine", engine)
    return engine


def every_endpoint(client: httpx.AsyncClient, headers: dict[str, str], ids: PathIds) -> dict[str, Request]:
    """Every route that needs the database, with a valid request each (tests/support/routes.py; the token need
    not name a real user: the database is asked about it)."""
    return example_requests(client, headers, ids, database_only=True)


# What every_endpoint's requests answer once the database serves again (send me-delete last: it ends the account).
SERVING_STATUSES = {example.name: example.status for example in EXAMPLES.values() if example.database}


def stranger_headers() -> dict[str, str]:
    """A well-formed token for a user id the database has never seen."""
    return {"Authorization": f"Bearer {create_access_token(uuid.uuid4())}"}


def detail_of(response: httpx.Response) -> str:
    body = response.json()
    return body.get("detail") or body.get("reason") or ""


@asynccontextmanager
async def temporary_role(
    db: asyncpg.Connection, database_url: str, clause: str = "", *, statement_timeout: str | None = None
) -> AsyncIterator[str]:
    """A login role with `clause` (e.g. `CONNECTION LIMIT 1`), allowed to use the app's tables; yields its URL.

    `statement_timeout` becomes the role's setting (`ALTER ROLE ... SET`), which the server applies when a
    session starts, so it works behind a transaction pooler, where startup parameters do not.
    """
    name = f"limited_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{ROLE_PASSWORD}' {clause}")
    if statement_timeout is not None:
        await db.execute(f"ALTER ROLE {name} SET statement_timeout = '{statement_timeout}'")
    await db.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
    await db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
    try:
        yield make_url(database_url).set(username=name, password=ROLE_PASSWORD).render_as_string(hide_password=False)
    finally:
        await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await db.execute(f"DROP OWNED BY {name}")
        await db.execute(f"DROP ROLE {name}")


@asynccontextmanager
async def row_locked(database_url: str, task_id: str) -> AsyncIterator[asyncpg.Connection]:
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
        yield holder
    finally:
        await holder.close()  # ends the transaction: the lock goes


async def timed_patch(
    client: httpx.AsyncClient, account: Any, task: dict[str, Any], title: str = "Blocked"
) -> tuple[httpx.Response, float]:
    """PATCH the task's title (blocked, when a test holds its row lock); the response and the seconds it took."""
    started = time.monotonic()
    response = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": title}, headers=account.headers)
    return response, time.monotonic() - started


async def waiting_updates(db: asyncpg.Connection, application_name: str | None = None) -> int:
    """Statements of the app still running on the server (an UPDATE of tasks waiting for the row lock)."""
    count = -1
    for _ in range(40):  # the cancel is asynchronous: give the server a moment to act on it
        count = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'UPDATE tasks%' "
            "AND pid <> pg_backend_pid() AND datname = current_database() "
            "AND ($1::text IS NULL OR application_name = $1)",
            application_name,
        )
        if count == 0:
            break
        await asyncio.sleep(0.05)
    return count


async def app_sessions(db: asyncpg.Connection, *, settle: bool = False) -> list[dict]:
    """The server sessions of engines built by `use_engine` (pid, state). With `settle`, wait (2 s at most) for
    them to go: a closed connection's backend needs a moment to leave pg_stat_activity, a leaked one never does."""
    rows: list = []
    for _ in range(40):
        rows = await db.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        if not rows or not settle:
            break
        await asyncio.sleep(0.05)
    return [dict(row) for row in rows]
