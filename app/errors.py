"""Exception handlers: the database being unreachable is a 503 with a clear reason, never a 500 or a hang."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from app.observability import FIELDS

logger = logging.getLogger("app.errors")

DATABASE_UNAVAILABLE = "The database is unavailable right now; retry in a few seconds."
RETRY_AFTER_SECONDS = "2"

# Raised while connecting, or when the server goes away mid-request. None of their messages reach clients:
# they can name hosts and users.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    sa_exc.InterfaceError,
    sa_exc.OperationalError,
)


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        status_code=503, content={"detail": DATABASE_UNAVAILABLE}, headers={"Retry-After": RETRY_AFTER_SECONDS}
    )


def is_database_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    original = getattr(error, "orig", None)
    cause = getattr(original, "__cause__", None) if original is not None else None
    return any(isinstance(e, UNAVAILABLE_ERRORS) for e in (error, original, cause) if e is not None)


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    if not is_database_unavailable(error):
        raise error
    # Log the type only: messages of connection errors can carry host names and user names. The method and
    # route are on the request's own line (app/observability.py), which has the same request_id.
    logger.warning("database unavailable: %s", type(error).__name__, extra={FIELDS: {"error": type(error).__name__}})
    return database_unavailable_response()


def register_error_handlers(app: FastAPI) -> None:
    for error_type in (*UNAVAILABLE_ERRORS, sa_exc.DBAPIError):
        app.add_exception_handler(error_type, _unavailable)
