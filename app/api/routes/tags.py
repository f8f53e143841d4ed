"""The current user's tags with their counts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ConnectionDep, CurrentToken
from app.api.problems import TOKEN_ERRORS, documented
from app.models.task import TagCount
from app.queries import tasks as task_queries

router = APIRouter(prefix="/tags", tags=["tasks"])


@router.get(
    "",
    summary="My tags, most used first",
    operation_id="tags_list",
    response_model=list[TagCount],
    responses=documented(*TOKEN_ERRORS),
)
async def list_tags(token: CurrentToken, connection: ConnectionDep) -> Any:
    """Returns every tag on the caller's tasks with how many tasks carry it (ties in alphabetical order)."""
    return await task_queries.tag_counts(connection, token)
