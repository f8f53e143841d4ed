"""Task CRUD and listing. Each route is one SQL statement (see app/queries/tasks.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.api.deps import ConnectionDep, CurrentToken, IfMatch
from app.api.idempotency import IdempotencyKeyDep, claim_for
from app.api.problems import R415, TOKEN_ERRORS, MalformedIdempotencyKey, MalformedIfMatch, documented
from app.models.task import TaskCreate, TaskListQuery, TaskPage, TaskRead, TaskUpdate
from app.queries import IdempotencyKeyInFlight, IdempotencyKeyReused, TaskNotFound, VersionMismatch
from app.queries import tasks as task_queries
from app.queries.idempotency import Replay

router = APIRouter(prefix="/tasks", tags=["tasks"])

TaskId = Annotated[uuid.UUID, Path(description="The task's id (a UUID).")]


# What a keyed write (Idempotency-Key) can be answered besides its own errors.
KEY_ERRORS = (MalformedIdempotencyKey, IdempotencyKeyInFlight, IdempotencyKeyReused)


def _etag(response: Response, task: Any) -> Any:
    """The task's version as the response's ETag; returns the task."""
    response.headers["ETag"] = f'"{task.version}"'
    return task


def _written(response: Response, outcome: Any) -> Any:
    """The written task, or for a replayed Idempotency-Key the first answer's task and status, marked as such."""
    if isinstance(outcome, Replay):
        response.status_code = outcome.status_code
        response.headers["Idempotent-Replayed"] = "true"
        return _etag(response, TaskRead.model_validate(outcome.row))
    return _etag(response, outcome)


@router.get(
    "",
    summary="List my tasks (filtered, sorted, paginated)",
    operation_id="tasks_list",
    response_model=TaskPage,
    responses=documented(*TOKEN_ERRORS),
)
async def list_tasks(token: CurrentToken, query: Annotated[TaskListQuery, Query()], connection: ConnectionDep) -> Any:
    """Returns one page of the caller's tasks; follow `next_cursor` until it is null for the rest."""
    items, next_cursor = await task_queries.list_tasks(connection, token, query)
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "",
    summary="Create a task",
    operation_id="tasks_create",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS, *KEY_ERRORS) | R415,
)
async def create_task(
    body: TaskCreate,
    token: CurrentToken,
    key: IdempotencyKeyDep,
    connection: ConnectionDep,
    request: Request,
    response: Response,
) -> Any:
    """Creates a task; the response carries its `Location` and `ETag`. With an `Idempotency-Key`, a retry is
    answered as the first request was, and never creates a second task."""
    claim = claim_for(key, request, body)
    task = _written(response, await task_queries.create_task(connection, token, body, claim))
    response.headers["Location"] = str(request.app.url_path_for("get_task", task_id=str(task.id)))
    return task


@router.get(
    "/{task_id}",
    summary="Get a task",
    operation_id="tasks_get",
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS, TaskNotFound),
)
async def get_task(task_id: TaskId, token: CurrentToken, connection: ConnectionDep, response: Response) -> Any:
    """Returns one of the caller's tasks, with its version as the `ETag`."""
    return _etag(response, await task_queries.get_task(connection, token, task_id))


@router.patch(
    "/{task_id}",
    summary="Update a task (partial)",
    operation_id="tasks_update",
    response_model=TaskRead,
    responses=documented(*TOKEN_ERRORS, *KEY_ERRORS, MalformedIfMatch, TaskNotFound, VersionMismatch) | R415,
)
async def update_task(
    task_id: TaskId,
    body: TaskUpdate,
    token: CurrentToken,
    expected: IfMatch,
    key: IdempotencyKeyDep,
    connection: ConnectionDep,
    request: Request,
    response: Response,
) -> Any:
    """Changes the fields present in the body; with `If-Match: "<version>"` only at that version. With an
    `Idempotency-Key`, a retry is answered as the first request was (never a 412 because of the first)."""
    changes = body.model_dump(exclude_unset=True)
    claim = claim_for(key, request, body, task_id=task_id, if_match=expected)
    return _written(response, await task_queries.update_task(connection, token, task_id, changes, expected, claim))


@router.delete(
    "/{task_id}",
    summary="Delete a task",
    operation_id="tasks_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=documented(*TOKEN_ERRORS, MalformedIfMatch, TaskNotFound, VersionMismatch),
)
async def delete_task(task_id: TaskId, token: CurrentToken, expected: IfMatch, connection: ConnectionDep) -> None:
    """Deletes one of the caller's tasks; with `If-Match`, only at that version."""
    await task_queries.delete_task(connection, token, task_id, expected)
