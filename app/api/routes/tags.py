"""The current user's tags with their counts."""

from __future__ import annotations

from fastapi import Response

from app.api.deps import ConnectionDep, CurrentToken
from app.api.documents import json_response
from app.api.problems import TOKEN_ERRORS, documented
from app.api.route_groups import route_group
from app.models.task import TagCount
from app.queries import tasks as task_queries

router = route_group("/tags", "tasks", bodiless=True)


@router.get(
    "",
    summary="My tags, most used first",
    operation_id="tags_list",
    response_model=list[TagCount],
    responses=documented(*TOKEN_ERRORS),
)
async def list_tags(token: CurrentToken, connection: ConnectionDep) -> Response:
    """Returns every tag on the caller's tasks with how many tasks carry it (ties in alphabetical order)."""
    return json_response(await task_queries.tag_counts(connection, token))
