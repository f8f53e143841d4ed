"""Task CRUD and listing. Each route is one SQL statement (see app/queries/tasks.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_origin

from fastapi import Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.routing import Route

from app.api.deps import ConnectionDep, CurrentToken, IfMatch, current_token, oauth2_scheme
from app.api.documents import json_response
from app.api.problems import R415, TOKEN_ERRORS, MalformedIfMatch, documented
from app.api.route_groups import API_PREFIX, route_group
from app.db import LazyConnection, request_connection
from app.models.task import TaskCreate, TaskListQuery, TaskPage, TaskRead, TaskUpdate
from app.queries import TaskNotFound, VersionMismatch
from app.queries import tasks as task_queries
from app.security import AccessToken

router = route_group("/tasks", "tasks")

TaskId = Annotated[uuid.UUID, Path(description="The task's id (a UUID).")]


def _with_etag(task: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A task document (shaped as TaskRead) with its version as the ETag."""
    return json_response(task, status_code, {**(headers or {}), "ETag": f'"{task["version"]}"'})


# The list's query string is read by `list_query` below rather than by FastAPI's parameter-model extraction,
# which inspects every field's annotation again on each request: ~45 us of a warm request's ~1 ms, for a model
# that pydantic validates in ~2 us. The route FastAPI documents is the declarative one (`list_tasks_documented`,
# same path and method, registered after this one, so never reached): the OpenAPI document is FastAPI's own.
# tests/test_tasks_list_query.py checks that both read every query string the same way, errors included.
FIELDS = tuple(TaskListQuery.model_fields)
REPEATABLE = frozenset(
    name for name, field in TaskListQuery.model_fields.items() if get_origin(field.annotation) is list
)


async def list_query(request: Request) -> TaskListQuery:
    """TaskListQuery from the query string, exactly as FastAPI reads `Annotated[TaskListQuery, Query()]`: a
    repeatable field takes every value, any other field the last one, an unknown name all of its values (one
    unwrapped), which the model refuses (extra="forbid"); errors are located under "query".

    Async although it never awaits: FastAPI runs a plain function dependency in a worker thread."""
    received = request.query_params
    values: dict[str, Any] = {}
    for name in received.keys():  # noqa: SIM118 - a multidict's keys() gives each name once
        if name in REPEATABLE:
            values[name] = received.getlist(name)
        elif name in FIELDS:
            values[name] = received[name]
        else:
            given = received.getlist(name)
            values[name] = given[0] if len(given) == 1 else given
    try:
        return TaskListQuery.model_validate(values, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("query", *item["loc"])} for item in error.errors(include_url=False)]
        ) from None


async def _page(token: AccessToken, query: TaskListQuery, connection: LazyConnection) -> Response:
    items, next_cursor = await task_queries.list_tasks(connection, token, query)
    return json_response({"items": items, "next_cursor": next_cursor})


async def list_tasks(request: Request) -> Response:
    """The documented route's dependencies, called here in the order FastAPI would solve them (the token's 401
    before the query's 422), and its connection closed when the page is built: FastAPI's solving of four
    dependencies, one with an exit (a context manager, a cancel scope, an exit stack), was an eighth of a warm
    list request's instructions."""
    token = await current_token(request, await oauth2_scheme(request))
    query = await list_query(request)
    async with request_connection() as connection:
        return await _page(token, query, connection)


# The route that answers GET /api/v1/tasks (a warm invocation's most frequent request), matched before `router`'s
# routes (app/api/router.py). A plain Starlette route: `list_tasks` takes the request and needs nothing of
# FastAPI's request handling (its dependency solving and exit stack, another ~10 % of a warm list request);
# errors reach the application's exception handlers as from any route. Starlette adds HEAD to a GET route: taken
# out, as no route of the API answers HEAD (405, as before).
listing = Route(f"{API_PREFIX}/tasks", list_tasks, methods=["GET"], name="list_tasks", include_in_schema=False)
listing.methods = {"GET"}


@router.get(
    "",
    summary="List my tasks (filtered, sorted, paginated)",
    operation_id="tasks_list",
    response_model=TaskPage,
    responses=documented(*TOKEN_ERRORS),
)
async def list_tasks_documented(
    token: CurrentToken, query: Annotated[TaskListQuery, Query()], connection: ConnectionDep
) -> Response:
    """Returns one page of the caller's tasks; follow `next_cursor` until it is null for the rest."""
    return await _page(token, query, connection)


@router.post(
    "",
    summary="Create a task",
    operation_id="tasks_create",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS) | R415,
)
async def create_task(body: TaskCreate, token: CurrentToken, connection: ConnectionDep, request: Request) -> Response:
    """Creates a task; the response carries its `Location` and `ETag`."""
    task = await task_queries.create_task(connection, token, body)
    location = str(request.app.url_path_for("get_task", task_id=str(task["id"])))
    return _with_etag(task, status.HTTP_201_CREATED, {"Location": location})


@router.get(
    "/{task_id}",
    summary="Get a task",
    operation_id="tasks_get",
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS, TaskNotFound),
)
async def get_task(task_id: TaskId, token: CurrentToken, connection: ConnectionDep) -> Response:
    """Returns one of the caller's tasks, with its version as the `ETag`."""
    return _with_etag(await task_queries.get_task(connection, token, task_id))


@router.patch(
    "/{task_id}",
    summary="Update a task (partial)",
    operation_id="tasks_update",
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS, MalformedIfMatch, TaskNotFound, VersionMismatch) | R415,
)
async def update_task(
    task_id: TaskId,
    body: TaskUpdate,
    token: CurrentToken,
    expected: IfMatch,
    connection: ConnectionDep,
) -> Response:
    """Changes the fields present in the body; with `If-Match: "<version>"` only at that version."""
    changes = body.model_dump(exclude_unset=True)
    return _with_etag(await task_queries.update_task(connection, token, task_id, changes, expected))


@router.delete(
    "/{task_id}",
    summary="Delete a task",
    operation_id="tasks_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=documented(*TOKEN_ERRORS, MalformedIfMatch, TaskNotFound, VersionMismatch),
)
async def delete_task(task_id: TaskId, token: CurrentToken, expected: IfMatch, connection: ConnectionDep) -> Response:
    """Deletes one of the caller's tasks; with `If-Match`, only at that version."""
    await task_queries.delete_task(connection, token, task_id, expected)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
