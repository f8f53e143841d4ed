"""The API's routes as the application itself lists them, and one example request for each.

The tests that must reach every route (outages, token attacks, dependency overrides, the Lambda outage) take their
requests from EXAMPLES, and tests/test_routes.py fails, naming the route and this file, when a route of the app has
no example here. So a new route is covered by all of them once it has its one entry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.routing import APIRoute, iter_route_contexts

from app.main import app


@dataclass(frozen=True)
class Example:
    """A request to one route that succeeds for the token's user (on resources of theirs: `arranged_ids`)."""

    name: str  # how tests refer to it
    status: int  # its answer when the database serves
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    database: bool = True  # whether it needs the database (every route but liveness)

    def options(self, email: str) -> dict[str, Any]:
        """httpx keyword arguments; "{email}" in a value becomes `email` (register, then log in, as that user)."""
        options: dict[str, Any] = {}
        if self.json is not None:
            options["json"] = {key: _filled(value, email) for key, value in self.json.items()}
        if self.params:
            options["params"] = self.params
        if self.form:
            options["data"] = {key: _filled(value, email) for key, value in self.form.items()}
        return options


def _filled(value: Any, email: str) -> Any:
    return value.replace("{email}", email) if isinstance(value, str) else value


# In an order that can run as it stands: the deletes last, the account's own last of all.
EXAMPLES: dict[tuple[str, str], Example] = {
    ("GET", "/api/v1/health"): Example("health", 200, database=False),
    ("GET", "/api/v1/health/db"): Example("health-db", 200),
    ("POST", "/api/v1/auth/register"): Example(
        "register", 201, json={"email": "{email}", "password": "long enough pw"}
    ),
    ("POST", "/api/v1/auth/token"): Example("login", 200, form={"username": "{email}", "password": "long enough pw"}),
    ("GET", "/api/v1/users/me"): Example("me", 200),
    ("PATCH", "/api/v1/users/me"): Example("me-update", 200, json={"full_name": "New Name"}),
    ("GET", "/api/v1/tasks"): Example("tasks-list", 200, params={"tag": "x"}),
    ("POST", "/api/v1/tasks"): Example("tasks-create", 201, json={"title": "Written?", "tags": ["x"]}),
    ("GET", "/api/v1/tasks/{task_id}"): Example("tasks-get", 200),
    ("PATCH", "/api/v1/tasks/{task_id}"): Example("tasks-update", 200, json={"status": "done"}),
    ("GET", "/api/v1/tags"): Example("tags", 200),
    ("DELETE", "/api/v1/tasks/{task_id}"): Example("tasks-delete", 204),
    ("DELETE", "/api/v1/users/me"): Example("me-delete", 204),
}


def api_operations() -> list[tuple[str, str]]:
    """(method, full path template) of every API route, from the application's own routes (what FastAPI builds
    its OpenAPI document from)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path_format or ""
        if isinstance(route, APIRoute) and path.startswith("/api/"):
            found.extend((method, path) for method in sorted(route.methods))
    return found


def missing_examples() -> list[str]:
    return [f"{method} {path}" for method, path in api_operations() if (method, path) not in EXAMPLES]


PATH_PARAMETER = re.compile(r"\{(\w+)\}")
PathIds = Mapping[str, Any] | uuid.UUID | str


def url_of(path: str, ids: PathIds) -> str:
    """`path` with each `{name}` filled from `ids`: a mapping (`arranged_ids`), or one id for all of them (a
    random one, for requests that never reach a row)."""
    return PATH_PARAMETER.sub(lambda match: str(ids[match.group(1)] if isinstance(ids, Mapping) else ids), path)


async def arranged_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """An id for every path parameter of EXAMPLES, each of a resource the caller owns: `{x_id}` in
    `.../xs/{x_id}` is the `id` that the collection's own POST example (`POST .../xs`) answers with. So a new
    resource's routes get a real resource to act on with no more than their EXAMPLES entries."""
    ids: dict[str, str] = {}
    for _, path in EXAMPLES:
        for match in PATH_PARAMETER.finditer(path):
            name, collection = match.group(1), path[: match.start()].rstrip("/")
            if name in ids:
                continue
            example = EXAMPLES.get(("POST", collection))
            assert example is not None, f"{{{name}}} in {path}: add a POST {collection} example that creates one"
            response = await client.post(collection, headers=headers, **example.options("unused@example.com"))
            assert response.status_code == example.status, (collection, response.text)
            ids[name] = response.json()["id"]
    return ids


Request = Callable[[], Awaitable[httpx.Response]]


def example_requests(
    client: httpx.AsyncClient, headers: dict[str, str], ids: PathIds, *, database_only: bool = False
) -> dict[str, Request]:
    """Every example, by name, as a request to send (with `headers`, on the resources `ids`), in EXAMPLES'
    order."""
    email = f"example-{uuid.uuid4().hex[:8]}@example.com"

    def request(method: str, path: str, example: Example) -> Request:
        return lambda: client.request(method, url_of(path, ids), headers=headers, **example.options(email))

    return {
        example.name: request(method, path, example)
        for (method, path), example in EXAMPLES.items()
        if example.database or not database_only
    }
