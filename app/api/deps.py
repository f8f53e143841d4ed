"""`Annotated` dependency aliases used by the routes.

Declare `CurrentToken` before `ConnectionDep` in a route: FastAPI resolves dependencies in
order, so a bad token is answered with 401 before any database connection is opened.
"""

import re
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import OAuth2PasswordBearer

from app.api.problems import MalformedIfMatch, MissingToken
from app.db import LazyConnection, get_connection
from app.security import AccessToken, read_access_token

# One statement per request (reads, INSERT/UPDATE/DELETE ... RETURNING): autocommit, no BEGIN/COMMIT.
ConnectionDep = Annotated[LazyConnection, Depends(get_connection)]

# auto_error=False: we answer a missing token ourselves (MissingToken), with the same shape as an invalid one.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def current_token(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> AccessToken:
    """The verified access token (its user id and issue time), without touching the database.

    Whether that user still exists and has not changed password since is checked inside the statement that does
    the request's work (app/queries/users.py: `authorised`).
    """
    # Two Authorization headers are ambiguous (a proxy in front may have checked the other one): refuse both.
    if not token or len(request.headers.getlist("authorization")) > 1:
        raise MissingToken
    return read_access_token(token)  # InvalidToken if it is not one of ours, or has expired


CurrentToken = Annotated[AccessToken, Depends(current_token)]

_ETAG = re.compile(r'\s*"(\d{1,9})"\s*')


async def if_match(
    header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='Only act if the task\'s version is one of these ETags (e.g. `"3"`); otherwise 412.',
            examples=['"3"'],
        ),
    ] = None,
) -> list[int] | None:
    """The versions If-Match accepts, or None when any version will do (no header, or `*`)."""
    if header is None or header.strip() == "*":
        return None
    versions = []
    for part in header.split(","):
        match = _ETAG.fullmatch(part)
        if match is None:
            raise MalformedIfMatch
        versions.append(int(match.group(1)))
    return versions


IfMatch = Annotated[list[int] | None, Depends(if_match)]
