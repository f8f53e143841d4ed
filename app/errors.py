"""Exception handlers for the database's failures: a clear 503 or 504, never a 500 or a hang.

- no connection (down, unreachable, starting, full): 503 + Retry-After;
- the database refuses our credentials or database name for good: 503 too (the service is unavailable until
  an operator fixes its configuration; nothing the client did), with a longer Retry-After and an ERROR log;
- the connection was lost after the statement was sent: 503, and for writes a detail saying the change may
  have been saved (the statement is never retried: it may have written);
- a statement ran too long (DB_COMMAND_TIMEOUT, or the server's statement_timeout): 504, the statement cancelled.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from app.db_faults import DatabaseUnavailable, ServerCertificateUntrusted, StatementTimeout
from app.observability import FIELDS, exception_chain

logger = logging.getLogger("app.errors")

DATABASE_UNAVAILABLE = "The database is unavailable right now; retry in a few seconds."
RETRY_AFTER_SECONDS = "2"
DATABASE_REFUSED_LOGIN = (
    "The service cannot log in to its database (a configuration problem on the server side); retry later."
)
MISCONFIGURED_RETRY_AFTER_SECONDS = "30"
DATABASE_TLS_UNTRUSTED = (
    "TLS certificate not trusted: the service will not talk to a database server it cannot verify (a "
    "configuration problem on the server side); retry later."
)
OUTCOME_UNKNOWN = (
    "The connection to the database was lost while the request was running; the change may or may not have "
    "been saved, so check before repeating it."
)
STATEMENT_TIMEOUT = "The database took longer than {seconds:g} s to answer; the statement was cancelled. Retry later."
STATEMENT_CANCELLED = "The database cancelled the statement because it ran too long; retry later."

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Raised when the server goes away mid-request. None of their messages reach clients: they can name hosts
# and users.
DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError among them
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    sa_exc.InterfaceError,
)


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and what that was raised from (`__cause__`)."""
    return list(exception_chain(error, "orig", "__cause__"))


class DatabaseFailure(NamedTuple):
    status: int
    detail: str
    retry_after: str
    needs_operator: bool = False  # retrying cannot fix it (a refused login): logged as ERROR, not WARNING

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=self.status, content={"detail": self.detail}, headers={"Retry-After": self.retry_after}
        )


def database_failure(method: str, error: BaseException) -> DatabaseFailure | None:
    """How to answer a database failure, or None if `error` is not one (a bug: it stays a 500)."""
    chain = _chain(error)
    for item in chain:
        if isinstance(item, ServerCertificateUntrusted):
            return DatabaseFailure(503, DATABASE_TLS_UNTRUSTED, MISCONFIGURED_RETRY_AFTER_SECONDS, True)
        if isinstance(item, DatabaseUnavailable):
            if item.lasting:
                return DatabaseFailure(503, DATABASE_REFUSED_LOGIN, MISCONFIGURED_RETRY_AFTER_SECONDS, True)
            return DatabaseFailure(503, DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS)
        if isinstance(item, StatementTimeout):
            seconds = item.seconds
            detail = STATEMENT_TIMEOUT.format(seconds=seconds) if seconds is not None else STATEMENT_CANCELLED
            return DatabaseFailure(504, detail, RETRY_AFTER_SECONDS)
        # 57014 (the server's statement_timeout), or asyncpg's command_timeout outside LazyConnection.
        if isinstance(item, asyncpg.QueryCanceledError | TimeoutError):
            return DatabaseFailure(504, STATEMENT_CANCELLED, RETRY_AFTER_SECONDS)
    invalidated = isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
    if invalidated or any(isinstance(item, DISCONNECT_ERRORS) for item in chain):
        # Any connection failure came from the connector as DatabaseUnavailable, so this one happened once the
        # statement may already have been sent.
        detail = DATABASE_UNAVAILABLE if method in SAFE_METHODS else OUTCOME_UNKNOWN
        return DatabaseFailure(503, detail, RETRY_AFTER_SECONDS)
    return None


def _described(chain: list[BaseException]) -> str:
    """The chain's types and SQLSTATEs, for the log: never messages, which can carry host and user names."""
    described = []
    for item in chain:
        if isinstance(item, ServerCertificateUntrusted):  # host and OpenSSL's reason only: safe, and needed
            described.append(f"{type(item).__name__} ({item})")
            continue
        sqlstate = getattr(item, "sqlstate", None)
        described.append(f"{type(item).__name__} {sqlstate}" if sqlstate else type(item).__name__)
    return ", ".join(described)


async def _database_failed(request: Request, error: Exception) -> JSONResponse:
    failure = database_failure(request.method, error)
    if failure is None:
        raise error
    # A refused login needs an operator; the rest heals by itself (or is the client's query's size). Types and
    # SQLSTATEs only (`_described`): messages can carry host and user names. The method and route are on the
    # request's own line (app/observability.py), which has the same request_id.
    chain = _chain(error)
    described = _described(chain)
    fields = {"error": type(chain[-1]).__name__, "error_chain": described, "status": failure.status}
    logger.log(
        logging.ERROR if failure.needs_operator else logging.WARNING,
        "database failure -> %d: %s",
        failure.status,
        described,
        extra={FIELDS: fields},
    )
    return failure.response()


def register_error_handlers(app: FastAPI) -> None:
    for error_type in (
        DatabaseUnavailable,
        StatementTimeout,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        sa_exc.DBAPIError,
    ):
        app.add_exception_handler(error_type, _database_failed)
