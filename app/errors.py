"""How the API answers an error (`Problem`), and the database's failures as Problems: a clear 503 or 504, never
a 500 or a hang.

- no connection (down, unreachable, starting, full): 503 + Retry-After;
- the database refuses our credentials or database name for good, or its TLS certificate cannot be verified:
  503 too (the service is unavailable until an operator fixes its configuration; nothing the client did), with
  a longer Retry-After and an ERROR log;
- the connection was lost after the statement was sent: 503, and for writes a detail saying the change may
  have been saved and that a retry with the same Idempotency-Key is safe (a write without a key is never
  retried by the server: it may have written);
- a statement ran too long (DB_COMMAND_TIMEOUT, or the server's statement_timeout): 504, the statement cancelled.

Only the database layer's own errors (app.db_faults.DATABASE_ERRORS, raised by app/db.py) are answered this way:
any other exception, an OSError of a route's own or a constraint the route did not expect, stays a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.config import settings
from app.db_faults import (
    DATABASE_ERRORS,
    ConnectionLost,
    DatabaseUnavailable,
    ServerCertificateUntrusted,
    StatementTimeout,
)
from app.observability import FIELDS, exception_chain

logger = logging.getLogger("app.errors")

NOTHING: Mapping[str, Any] = MappingProxyType({})  # the shared empty default, read-only


class Problem(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """One way a request can fail: the response the API sends, and how the OpenAPI document shows it.

    The body is FastAPI's `{"detail": ...}`. `detail` and the header values are templates that may name values
    (a domain exception's attributes, such as `{current}`); `example` gives them values for the document, so
    the documented example is the real message with sample values.
    """

    name: str  # the example's key in the document
    status: int
    detail: str
    description: str
    headers: Mapping[str, str] = NOTHING
    example: Mapping[str, Any] = NOTHING

    def detail_for(self, **values: Any) -> str:
        return self.detail.format(**values)

    def headers_for(self, **values: Any) -> dict[str, str]:
        return {name: value.format(**values) for name, value in self.headers.items()}

    def response(self, **values: Any) -> JSONResponse:
        content = {"detail": self.detail_for(**values)}
        return JSONResponse(status_code=self.status, content=content, headers=self.headers_for(**values))


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
    "been saved. Retry with the same Idempotency-Key header and it is applied exactly once (without a key, "
    "check before repeating it)."
)
STATEMENT_TIMEOUT = "The database took longer than {seconds:g} s to answer; the statement was cancelled. Retry later."
STATEMENT_CANCELLED = "The database cancelled the statement because it ran too long; retry later."

SOON = {"Retry-After": RETRY_AFTER_SECONDS}
LATER = {"Retry-After": MISCONFIGURED_RETRY_AFTER_SECONDS}

UNAVAILABLE = Problem(
    "database_unavailable",
    503,
    DATABASE_UNAVAILABLE,
    "The database is unreachable, starting or full (or, for a read, its connection was lost); retry shortly",
    SOON,
)
REFUSED_LOGIN = Problem(
    "database_refused_login",
    503,
    DATABASE_REFUSED_LOGIN,
    "The database refuses the service's credentials or database name: an operator must fix the configuration",
    LATER,
)
TLS_UNTRUSTED = Problem(
    "database_tls_untrusted",
    503,
    DATABASE_TLS_UNTRUSTED,
    "The database server's TLS certificate cannot be verified: an operator must fix the configuration",
    LATER,
)
WRITE_LOST = Problem(
    "database_connection_lost",
    503,
    OUTCOME_UNKNOWN,
    "The connection was lost once a write had been sent: the change may or may not have been saved",
    SOON,
)
TIMED_OUT = Problem(
    "statement_timeout",
    504,
    STATEMENT_TIMEOUT,
    "A statement ran past DB_COMMAND_TIMEOUT and was cancelled",
    SOON,
    example={"seconds": settings.DB_COMMAND_TIMEOUT},
)
CANCELLED = Problem(
    "statement_cancelled",
    504,
    STATEMENT_CANCELLED,
    "The database cancelled a statement that ran past its statement_timeout",
    SOON,
)
# Every answer `database_failure` can give: each database-backed route documents them all.
DATABASE_FAILURES = (UNAVAILABLE, REFUSED_LOGIN, TLS_UNTRUSTED, WRITE_LOST, TIMED_OUT, CANCELLED)


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and what that was raised from (`__cause__`)."""
    return list(exception_chain(error, "orig", "__cause__"))


class DatabaseFailure(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """How a database failure is answered: its Problem, with the values of its template."""

    problem: Problem
    needs_operator: bool = False  # retrying cannot fix it (a refused login): logged as ERROR, not WARNING
    values: Mapping[str, Any] = NOTHING

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def detail(self) -> str:
        return self.problem.detail_for(**self.values)

    @property
    def retry_after(self) -> str:
        return self.problem.headers_for(**self.values)["Retry-After"]

    def response(self) -> JSONResponse:
        return self.problem.response(**self.values)


def database_failure(error: Exception) -> DatabaseFailure:
    """How to answer one of the database layer's own errors (app.db_faults.DATABASE_ERRORS)."""
    if isinstance(error, ServerCertificateUntrusted):
        return DatabaseFailure(TLS_UNTRUSTED, needs_operator=True)
    if isinstance(error, DatabaseUnavailable):
        return DatabaseFailure(REFUSED_LOGIN, needs_operator=True) if error.lasting else DatabaseFailure(UNAVAILABLE)
    if isinstance(error, StatementTimeout):
        if error.seconds is None:
            return DatabaseFailure(CANCELLED)
        return DatabaseFailure(TIMED_OUT, values={"seconds": error.seconds})
    assert isinstance(error, ConnectionLost), f"not a database layer error: {type(error).__name__}"
    return DatabaseFailure(WRITE_LOST if error.wrote else UNAVAILABLE)


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
    failure = database_failure(error)
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
    for error_type in DATABASE_ERRORS:
        app.add_exception_handler(error_type, _database_failed)
