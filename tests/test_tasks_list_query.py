"""GET /tasks reads its query string itself (app/api/routes/tasks.py: list_query): it must read every query
string exactly as FastAPI's `Annotated[TaskListQuery, Query()]` does, the model it builds and its 422 errors."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Query

from app.api.routes.tasks import list_query
from app.main import app as task_api
from app.models.task import TaskListQuery

QUERY_STRINGS = [
    "",
    "tag=x&limit=20",
    "tag=x&tag=y&any_tag=a&any_tag=b&status=todo&status=done&priority=high",
    "limit=5&limit=7",  # a single-valued field given twice: the last one
    "limit=0",
    "limit=101",
    "limit=abc",
    "limit=",
    "status=nope&priority=&tag=",
    "sort=-due_date",
    "sort=sideways",
    "overdue=true",
    "overdue=maybe",
    "due_before=2026-01-01T00:00:00Z&due_after=2025-01-01T00:00:00%2B02:00",
    "due_before=2026-01-01T00:00:00",  # no offset
    "due_before=yesterday",
    "q=%20%20&cursor=",
    "q=" + "a" * 201,
    "q=bad%00byte",
    "cursor=" + "c" * 2049,
    "&".join(f"tag=t{i}" for i in range(21)),
    "unknown=1",
    "unknown=1&unknown=2&other=3&tag=x",
    "Tag=x&LIMIT=3",
    "tag=%E2%9C%93&q=%F0%9F%98%80",
    "tag=x&limit=20&limit=abc&unknown=&status=todo&status=bad",
]


def reference_app() -> FastAPI:
    """FastAPI's own reading of the model, next to ours, both answering the model they got."""
    app = FastAPI()

    @app.get("/declared")
    async def declared(query: Annotated[TaskListQuery, Query()]) -> dict:
        return query.model_dump(mode="json")

    @app.get("/ours")
    async def ours(query: Annotated[TaskListQuery, Depends(list_query)]) -> dict:
        return query.model_dump(mode="json")

    return app


@pytest.mark.parametrize("query_string", QUERY_STRINGS)
async def test_the_same_model_and_the_same_errors_as_fastapi(query_string):
    transport = httpx.ASGITransport(app=reference_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        declared = await http.get(f"/declared?{query_string}")
        ours = await http.get(f"/ours?{query_string}")
    assert (ours.status_code, ours.json()) == (declared.status_code, declared.json())


def test_the_documented_route_is_the_declarative_one_registered_after_the_one_that_answers():
    """The OpenAPI document comes from FastAPI's declaration; requests go to the route registered first."""
    runtime, documented = [
        route for route in task_api.routes if getattr(route, "path", "") == "/api/v1/tasks" and "GET" in route.methods
    ]
    assert (runtime.name, runtime.include_in_schema) == ("list_tasks", False)
    assert (documented.name, documented.include_in_schema) == ("list_tasks_documented", True)
    spec = task_api.openapi()["paths"]["/api/v1/tasks"]["get"]
    assert [parameter["name"] for parameter in spec["parameters"]] == list(TaskListQuery.model_fields)
