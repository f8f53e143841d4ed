"""HTTP errors of the API: how domain outcomes become responses, and how those responses look in OpenAPI.

Every error body is FastAPI's `{"detail": ...}`; every 401 carries `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.limits import BODY_TOO_LARGE, media_type_problem
from app.config import settings
from app.cursor import InvalidCursor
from app.errors import (
    DATABASE_REFUSED_LOGIN,
    DATABASE_UNAVAILABLE,
    OUTCOME_UNKNOWN,
    STATEMENT_CANCELLED,
    STATEMENT_TIMEOUT,
)
from app.queries import AccountGone, TaskNotFound, VersionMismatch

# The messages the API sends, each written once: the handlers and routes send these, and the OpenAPI examples
# below are built from the same names, so the document shows what a client really gets.
NOT_AUTHENTICATED = "Not authenticated: send `Authorization: Bearer <access token>`."
INVALID_TOKEN = "The access token is invalid or expired; log in again."
ACCOUNT_GONE = "This access token no longer works: its account was deleted or its password changed. Log in again."
BAD_CREDENTIALS = "Incorrect email or password."
EMAIL_TAKEN = "An account with this email already exists."
WRONG_CURRENT_PASSWORD = "current_password is incorrect."
PASSWORD_CHANGED_MEANWHILE = "The password was changed meanwhile; try again."
IF_MATCH_HELP = 'If-Match must be "*" or version ETags such as "3" (comma-separated), as sent in the ETag header.'
TASK_NOT_FOUND = "Task not found."
TASK_CHANGED = "The task has changed: its current version is {current}. Fetch it and retry."
BEARER = {"WWW-Authenticate": "Bearer"}


class ErrorMessage(BaseModel):
    # Only documents responses (never validates one): built for the OpenAPI document, not at import.
    model_config = ConfigDict(defer_build=True)

    detail: str


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers=BEARER)


class Problem(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """How a domain outcome (an exception of app/queries) is answered, and how the document shows it.

    `detail` and the header values may name the exception's attributes (`{current}`); `example` gives them
    values for the OpenAPI example.
    """

    status: int
    detail: str
    description: str
    headers: dict[str, str] = {}  # one shared default: only read, never changed
    example: dict[str, Any] = {}  # one shared default: only read, never changed

    def response(self, error: Exception) -> JSONResponse:
        values = vars(error)
        headers = {name: value.format(**values) for name, value in self.headers.items()}
        return JSONResponse(status_code=self.status, content={"detail": self.detail.format(**values)}, headers=headers)

    def responses(self) -> dict[int | str, dict[str, Any]]:
        """This problem's OpenAPI `responses=` entry."""
        return {self.status: _doc(self.description, self.detail.format(**self.example))}


# Each domain outcome a route can end in, answered by one handler (register_problem_handlers).
PROBLEMS: dict[type[Exception], Problem] = {
    AccountGone: Problem(401, ACCOUNT_GONE, "The token's account was deleted or changed password", BEARER),
    TaskNotFound: Problem(404, TASK_NOT_FOUND, "No such task for this user"),
    VersionMismatch: Problem(
        412,
        TASK_CHANGED,
        "If-Match names a stale version; nothing was written",
        headers={"ETag": '"{current}"'},
        example={"current": 4},
    ),
}


# Validation errors echo the offending input back; never for these (responses end up in logs and traces).
SECRET_FIELDS = frozenset({"password", "current_password"})
REDACTED = "[redacted]"


def _redact(error: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(str(part) for part in error.get("loc", ()))
    # loc == ("body",): the whole body was the wrong type, and it may hold a password.
    if "input" in error and (SECRET_FIELDS.intersection(loc) or loc == ("body",)):
        return {**error, "input": REDACTED}
    return error


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an echoed input may hold a lone surrogate, which UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


# A 1 MB body can fail validation in 100,000 places, each echoing its input: unbounded, that 422 runs to tens
# of MB (and seconds of CPU), past the 6 MB a Lambda response may carry (API Gateway would answer 502).
MAX_ERRORS = 20
MAX_ECHO = 1000  # roughly, in characters of the echoed input


def _larger_than(value: Any, budget: int) -> bool:
    """Whether `value` (parsed JSON, any depth) holds more than about `budget` characters; stops early."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            budget -= len(item)
        elif isinstance(item, dict):
            budget -= len(item) + 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            budget -= len(item) + 1
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return True
    return False


def _bounded(error: dict[str, Any]) -> dict[str, Any]:
    if "input" in error and _larger_than(error["input"], MAX_ECHO):
        return {**error, "input": f"[not echoed: over {MAX_ECHO} characters]"}
    return error


async def validation_failed(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 shape, with secrets removed from the echoed input, and bounded in size."""
    assert isinstance(error, RequestValidationError)
    found = error.errors()
    errors = [_bounded(_redact(dict(item))) for item in found[:MAX_ERRORS]]
    if len(found) > MAX_ERRORS:
        more = len(found) - MAX_ERRORS
        where = list(found[MAX_ERRORS]["loc"][:1])  # "body" or "query"
        errors.append({"type": "too_many_errors", "loc": where, "msg": f"... and {more} more errors like these"})
    return AsciiJSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


# FastAPI's 400 when reading the body raised anything but a JSON syntax error; the cause says what it was.
FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _unreadable_body(cause: BaseException) -> str:
    if isinstance(cause, RecursionError):
        return "its JSON is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"it is not valid UTF-8 (byte {cause.start}), and JSON must be"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"a number in it has more than {sys.get_int_max_str_digits()} digits"
    return "it is not well-formed for its Content-Type"


async def http_problem(request: Request, error: Exception) -> Response:
    """FastAPI's handler, except for a body that could not be parsed: a 422 that says why, instead of a vague 400.

    Its shape is that of every other 422, like FastAPI's own for a JSON syntax error; a body of the wrong media
    type (which can fail to parse too, e.g. broken multipart) is the 415 it would get had it parsed.
    """
    assert isinstance(error, StarletteHTTPException)
    cause = error.__cause__
    if error.status_code != 400 or error.detail != FASTAPI_BODY_ERROR or cause is None:
        return await http_exception_handler(request, error)
    problem = media_type_problem(request)
    if problem is not None:
        return JSONResponse(status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, content={"detail": problem})
    invalid = {"type": "json_invalid", "loc": ("body",), "msg": f"The body cannot be read: {_unreadable_body(cause)}"}
    return await validation_failed(request, RequestValidationError([{**invalid, "input": {}}]))


def register_problem_handlers(app: FastAPI) -> None:
    async def invalid_cursor(request: Request, error: Exception) -> JSONResponse:
        # A bad cursor reads like any other validation error, naming the `cursor` query parameter.
        cursor = request.query_params.get("cursor")
        problem = {"type": "value_error", "loc": ("query", "cursor"), "msg": f"Value error, cursor {error}"}
        return await validation_failed(request, RequestValidationError([{**problem, "input": cursor}]))

    async def domain_problem(request: Request, error: Exception) -> JSONResponse:
        return PROBLEMS[type(error)].response(error)

    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(InvalidCursor, invalid_cursor)
    for error_type in PROBLEMS:
        app.add_exception_handler(error_type, domain_problem)


def _doc(description: str, *examples: str) -> dict[str, Any]:
    """A documented error: its description and the body (or bodies) it is sent with."""
    content: dict[str, Any]
    if len(examples) == 1:
        content = {"example": {"detail": examples[0]}}
    else:
        content = {"examples": {f"example {n}": {"value": {"detail": text}} for n, text in enumerate(examples, 1)}}
    return {"model": ErrorMessage, "description": description, "content": {"application/json": content}}


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}

# OpenAPI `responses=` entries, combined per route with `|`.
R400_IF_MATCH: dict[int | str, dict[str, Any]] = {400: _doc("Malformed If-Match header", IF_MATCH_HELP)}
R400_PASSWORD: dict[int | str, dict[str, Any]] = {400: _doc("Wrong current password", WRONG_CURRENT_PASSWORD)}
R401: dict[int | str, dict[str, Any]] = {
    401: {
        **_doc(
            "Missing, invalid or expired token, or its account was deleted or changed password since",
            NOT_AUTHENTICATED,
            INVALID_TOKEN,
            ACCOUNT_GONE,
        ),
        "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    }
}
R401_LOGIN: dict[int | str, dict[str, Any]] = {401: _doc("Wrong email or password", BAD_CREDENTIALS)}
R404 = PROBLEMS[TaskNotFound].responses()
R409_EMAIL: dict[int | str, dict[str, Any]] = {409: _doc("Email already registered", EMAIL_TAKEN)}
R409_PASSWORD: dict[int | str, dict[str, Any]] = {
    409: _doc("Password changed by a concurrent request", PASSWORD_CHANGED_MEANWHILE)
}
R503: dict[int | str, dict[str, Any]] = {
    503: {
        **_doc(
            "The database is unreachable (retry shortly); for a write whose connection was lost, the change may or "
            "may not have been saved; or the service cannot log in to its database",
            DATABASE_UNAVAILABLE,
            OUTCOME_UNKNOWN,
            DATABASE_REFUSED_LOGIN,
        ),
        "headers": RETRY_AFTER,
    }
}
R504: dict[int | str, dict[str, Any]] = {
    504: {
        **_doc(
            "A statement ran past DB_COMMAND_TIMEOUT (or the role's statement_timeout) and was cancelled",
            STATEMENT_TIMEOUT.format(seconds=settings.DB_COMMAND_TIMEOUT),
            STATEMENT_CANCELLED,
        ),
        "headers": RETRY_AFTER,
    }
}
R413: dict[int | str, dict[str, Any]] = {
    413: _doc("The request body is over 1 MB; nothing was read or written", BODY_TOO_LARGE)
}
R415: dict[int | str, dict[str, Any]] = {
    415: _doc(
        "The body is not of the media type this operation takes (see requestBody)",
        "This operation takes a body of type application/json; the request has Content-Type 'text/plain'.",
    )
}
R412 = PROBLEMS[VersionMismatch].responses()
