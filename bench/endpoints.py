"""The requests the round-trip and cold-start benchmarks make, and how to set each one up.

`statements` is how many SQL statements the endpoint's work needs at least; its floor on a fresh connection is
TCP 1 + SSLRequest 1 + SCRAM 3 + (prepare 1 + execute 1) per statement, the connection closed without waiting.
Set-up work (creating the task a PATCH changes, the user a DELETE removes) runs on a separate connection that
does not go through the proxy, so it is never counted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench._common import BENCH_USER_ID, bench_token, http_api_event

CONNECT_FLOOR = 5  # TCP connect 1 + SSLRequest 1 + SCRAM-SHA-256 3 (no TLS locally)


def floor(statements: int) -> int:
    return CONNECT_FLOOR + 2 * statements


Prepare = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class Endpoint:
    name: str
    method: str
    path: str  # may contain {task_id}
    statements: int = 1
    query: dict[str, Any] | None = None
    body: Callable[[dict[str, Any]], Any] | None = None
    form: bool = False
    auth: bool = True
    prepare: Prepare | None = None
    handler: str = "app"  # "app" (ours) or "naive" (bench/naive)
    route: str = ""  # the route path to look for in the app (defaults to path)
    expect: tuple[int, ...] = field(default=(200, 201, 204))

    @property
    def floor(self) -> int:
        return floor(self.statements)

    def event(self, ctx: dict[str, Any]) -> dict[str, Any]:
        token = ctx.get("token") or bench_token()
        body = self.body(ctx) if self.body else None
        return http_api_event(
            self.method,
            self.path.format(**ctx),
            self.query,
            body,
            token=token if self.auth else None,
            form=self.form,
        )


async def _connect(url: str):
    import asyncpg

    return await asyncpg.connect(url)


async def new_task(url: str) -> dict[str, Any]:
    connection = await _connect(url)
    try:
        task_id = await connection.fetchval(
            "INSERT INTO tasks (user_id, title, tags) VALUES ($1, 'to change', ARRAY['x']) RETURNING id",
            BENCH_USER_ID,
        )
    finally:
        await connection.close()
    return {"task_id": task_id}


async def any_task(url: str) -> dict[str, Any]:
    connection = await _connect(url)
    try:
        task_id = await connection.fetchval(
            "SELECT id FROM tasks WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1", BENCH_USER_ID
        )
    finally:
        await connection.close()
    return {"task_id": task_id}


async def new_user(url: str) -> dict[str, Any]:
    from app.security import hash_password

    connection = await _connect(url)
    user_id = uuid.uuid4()
    try:
        await connection.execute(
            "INSERT INTO users (id, email, hashed_password) VALUES ($1, $2, $3)",
            user_id,
            f"gone-{user_id.hex[:12]}@example.com",
            _cached_hash(hash_password),
        )
    finally:
        await connection.close()
    return {"token": bench_token(user_id)}


_HASH: list[str] = []


def _cached_hash(hash_password) -> str:
    if not _HASH:
        _HASH.append(hash_password("benchpassword"))
    return _HASH[0]


def _unique_email(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        "email": f"new-{uuid.uuid4().hex[:12]}@example.com",
        "password": "a long enough password",
        "full_name": "New User",
    }


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET /tasks?tag=x", "GET", "/api/v1/tasks", query={"tag": "x"}),
    Endpoint("GET /tasks?tag=x (naive)", "GET", "/api/v1/tasks", query={"tag": "x"}, handler="naive"),
    Endpoint("GET /tasks?status&priority", "GET", "/api/v1/tasks", query={"status": "todo", "priority": "high"}),
    Endpoint("GET /tasks/{id}", "GET", "/api/v1/tasks/{task_id}", prepare=any_task, route="/api/v1/tasks/{task_id}"),
    Endpoint("POST /tasks", "POST", "/api/v1/tasks", body=lambda c: {"title": "Bench task", "tags": ["x"]}),
    Endpoint(
        "PATCH /tasks/{id}",
        "PATCH",
        "/api/v1/tasks/{task_id}",
        body=lambda c: {"status": "done"},
        prepare=new_task,
        route="/api/v1/tasks/{task_id}",
    ),
    Endpoint(
        "DELETE /tasks/{id}",
        "DELETE",
        "/api/v1/tasks/{task_id}",
        prepare=new_task,
        route="/api/v1/tasks/{task_id}",
    ),
    Endpoint("GET /tags", "GET", "/api/v1/tags"),
    Endpoint("GET /users/me", "GET", "/api/v1/users/me"),
    Endpoint("PATCH /users/me", "PATCH", "/api/v1/users/me", body=lambda c: {"full_name": "Bench"}),
    Endpoint("DELETE /users/me", "DELETE", "/api/v1/users/me", prepare=new_user),
    Endpoint("POST /auth/register", "POST", "/api/v1/auth/register", body=_unique_email, auth=False),
    Endpoint(
        "POST /auth/token",
        "POST",
        "/api/v1/auth/token",
        auth=False,
        form=True,
        body=lambda c: {"username": "bench-user@example.com", "password": "benchpassword"},
    ),
    Endpoint("GET /health/db", "GET", "/api/v1/health/db", auth=False),
]


def by_name(name: str) -> Endpoint:
    for endpoint in ENDPOINTS:
        if endpoint.name == name:
            return endpoint
    raise KeyError(name)


def available(endpoint: Endpoint) -> bool:
    """Whether the app serves this route and method (issue branches land at different times)."""
    if endpoint.handler == "naive":
        return True
    from app.main import app

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    wanted = shape(endpoint.route or endpoint.path)
    for path, operations in app.openapi()["paths"].items():
        if shape(path) == wanted and endpoint.method.lower() in operations:
            return True
    return False
