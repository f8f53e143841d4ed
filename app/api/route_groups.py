"""The router each module declares its routes on, with what every route of the API shares.

Each module's routes are declared with their full path (`/api/v1/tasks/{task_id}`) and the API's shared
dependency and error responses, and app.main puts them on the application's own router as they are. FastAPI
0.165 keeps an *included* router nested: a request is matched against the application's routes, then again
against the included router's, once more per level, each level also building its own scope context. Flat,
a request is matched once, route by route.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.limits import require_declared_media_type
from app.api.problems import DATABASE_ERRORS, R413

API_PREFIX = "/api/v1"


def route_group(path: str, tag: str, *, database: bool = True, bodiless: bool = False) -> APIRouter:
    """Routes under `/api/v1<path>`, tagged `tag`. On every route a body over 1 MB is refused
    (app.api.limits.BodySizeLimit) and one of another media type than the route's requestBody is a 415 (each
    route with a body documents it); `database`: its statement can fail with the database's 503 and 504.

    `bodiless`: for routes that declare no body, on which the media-type check has nothing to check (it passes
    any request to a route without a requestBody), so that FastAPI does not solve it as a dependency."""
    return APIRouter(
        prefix=API_PREFIX + path,
        tags=[tag],
        dependencies=[] if bodiless else [Depends(require_declared_media_type)],
        responses={**R413, **DATABASE_ERRORS} if database else R413,
    )
