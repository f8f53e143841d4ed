"""HTTP errors of the API: how domain outcomes become responses, and how those responses look in OpenAPI.

Each domain outcome is an exception with one `Problem` (app/errors.py): its status, message, headers and
description. One handler answers all of them, and routes take their `responses=` from `documented(...)` of the
same Problems, so a documented example is the real message with sample values. Every error body is FastAPI's
`{"detail": ...}`; every 401 carries `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.limits import BODY_TOO_LARGE, WRONG_MEDIA_TYPE, media_type_problem
from app.cursor import InvalidCursor
from app.errors import DATABASE_FAILURES, Problem
from app.queries import (
    AccountGone,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    PasswordChangedConcurrently,
    RateLimited,
    TaskNotFound,
    VersionMismatch,
)
from app.security import InvalidToken

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
IDEMPOTENCY_KEY_HELP = (
    "Idempotency-Key must be 1 to 255 printable ASCII characters, sent once, as a quoted string such as "
    '"8e03978e-40d5-43e8-bc93-6894a57f9324" (or unquoted, without spaces or quotes).'
)
KEY_REUSED = (
    "This Idempotency-Key was already used for a different request (another body, task or If-Match); nothing "
    "was written. Use a new key for a new request."
)
KEY_IN_FLIGHT = "A request with this Idempotency-Key is still being processed; retry in {retry_after} seconds."
TOO_MANY_ATTEMPTS = "Too many login or registration attempts from this address; retry in {retry_after} seconds."
BEARER = {"WWW-Authenticate": "Bearer"}


class ErrorMessage(BaseModel):
    # Only documents responses (never validates one): built for the OpenAPI document, not at import.
    model_config = ConfigDict(defer_build=True)

    detail: str


# Outcomes the API layer decides itself (the rest come from app/queries and app/security).
class MissingToken(Exception):
    """No `Authorization: Bearer` header, or more than one (ambiguous: a proxy in front may have checked the
    other one)."""


class MalformedIfMatch(Exception):
    """If-Match is neither `*` nor a list of version ETags."""


class MalformedIdempotencyKey(Exception):
    """Idempotency-Key is not 1-255 printable ASCII characters (quoted or not), or was sent more than once."""


class BadCredentials(Exception):
    """No active account has this email, or the password is not its password (which one is not said)."""


class EmailTaken(Exception):
    """An account with this email (ignoring case) exists already."""


class WrongCurrentPassword(Exception):
    """A password change named a current password that is not the account's."""


# Each domain outcome a route can end in, answered by one handler (register_problem_handlers).
PROBLEMS: dict[type[Exception], Problem] = {
    MissingToken: Problem(
        "missing_token", 401, NOT_AUTHENTICATED, "No `Authorization: Bearer` header, or more than one", BEARER
    ),
    InvalidToken: Problem(
        "invalid_token", 401, INVALID_TOKEN, "The token is malformed, expired or not signed by this service", BEARER
    ),
    AccountGone: Problem(
        "account_gone", 401, ACCOUNT_GONE, "The token's account was deleted or changed password since", BEARER
    ),
    BadCredentials: Problem("bad_credentials", 401, BAD_CREDENTIALS, "Wrong email or password", BEARER),
    MalformedIfMatch: Problem("malformed_if_match", 400, IF_MATCH_HELP, "Malformed If-Match header"),
    MalformedIdempotencyKey: Problem(
        "malformed_idempotency_key", 400, IDEMPOTENCY_KEY_HELP, "Malformed Idempotency-Key header"
    ),
    WrongCurrentPassword: Problem("wrong_current_password", 400, WRONG_CURRENT_PASSWORD, "Wrong current password"),
    TaskNotFound: Problem("task_not_found", 404, TASK_NOT_FOUND, "No such task for this user"),
    EmailTaken: Problem("email_taken", 409, EMAIL_TAKEN, "Email already registered"),
    PasswordChangedConcurrently: Problem(
        "password_changed_meanwhile", 409, PASSWORD_CHANGED_MEANWHILE, "Password changed by a concurrent request"
    ),
    IdempotencyKeyInFlight: Problem(
        "idempotency_key_in_flight",
        409,
        KEY_IN_FLIGHT,
        "A request with this Idempotency-Key is still in flight; nothing was written",
        headers={"Retry-After": "{retry_after}"},
        example={"retry_after": 1},
    ),
    VersionMismatch: Problem(
        "version_mismatch",
        412,
        TASK_CHANGED,
        "If-Match names a stale version; nothing was written",
        headers={"ETag": '"{current}"'},
        example={"current": 4},
    ),
    IdempotencyKeyReused: Problem(
        "idempotency_key_reused", 422, KEY_REUSED, "The Idempotency-Key was used for another request"
    ),
    RateLimited: Problem(
        "rate_limited",
        429,
        TOO_MANY_ATTEMPTS,
        "Too many attempts from this client in the current window; nothing was done",
        headers={"Retry-After": "{retry_after}"},
        example={"retry_after": 42},
    ),
}


def problem_of(error: Exception) -> Problem:
    """The Problem of a domain exception (or of the nearest class it derives from)."""
    return next(PROBLEMS[kind] for kind in type(error).__mro__ if kind in PROBLEMS)


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
        # The exception's attributes fill the message and header templates (`{current}`, `{retry_after}`).
        return problem_of(error).response(**vars(error))

    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(InvalidCursor, invalid_cursor)
    for error_type in PROBLEMS:
        app.add_exception_handler(error_type, domain_problem)


# How each header a Problem may send is documented.
HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "The scheme to authenticate with: Bearer", "schema": {"type": "string"}},
    "ETag": {"description": "The task's current version", "schema": {"type": "string"}},
}


VALIDATION_ERROR = {"$ref": "#/components/schemas/HTTPValidationError"}  # FastAPI's own 422 body


def _header_value(name: str, value: str) -> Any:
    return int(value) if HEADERS[name]["schema"]["type"] == "integer" else value


def _response_doc(problems: list[Problem], by_reference: bool = False) -> dict[str, Any]:
    """One status's documented response: every Problem's body and headers as a named example (the Problem's
    name names both, so a body's example and its headers' go together). `by_reference`: see `documented`.

    A 422 also keeps FastAPI's validation error: FastAPI documents that one only on routes that declare no 422
    of their own, so the response says it is either."""
    descriptions = [problem.description for problem in problems]
    examples: dict[str, Any] = {}
    headers: dict[str, dict[str, Any]] = {}
    for problem in problems:
        value = {"detail": problem.detail_for(**problem.example)}
        examples[problem.name] = {"summary": problem.description, "value": value}
        for name, header in problem.headers_for(**problem.example).items():
            documented_header = headers.setdefault(name, {**HEADERS[name], "examples": {}})
            documented_header["examples"][problem.name] = {"value": _header_value(name, header)}
    doc: dict[str, Any] = {
        "model": ErrorMessage,
        "description": descriptions[0] if len(descriptions) == 1 else "\n".join(f"- {d}" for d in descriptions),
        "content": {"application/json": {"examples": examples}},
    }
    if by_reference or problems[0].status == 422:
        # What FastAPI writes for the model (after the examples), without the model itself.
        del doc["model"]
        doc["content"]["application/json"]["schema"] = {"$ref": f"#/components/schemas/{ErrorMessage.__name__}"}
    if problems[0].status == 422:
        doc["description"] = "Validation Error, or:\n" + doc["description"]
        schema = doc["content"]["application/json"]["schema"]
        doc["content"]["application/json"]["schema"] = {"anyOf": [VALIDATION_ERROR, schema]}
    if headers:
        doc["headers"] = headers
    return doc


def documented(*errors: type[Exception] | Problem, by_reference: bool = False) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses=` entry of these errors (domain exceptions, or Problems), grouped by status, each
    built from the Problem the server answers with. Name all of a route's errors in one call: joined with `|`,
    a second entry with the same status would replace the first.

    `by_reference`, for the responses many routes declare (DATABASE_ERRORS, R413, R415, and a status whose
    errors are all TOKEN_ERRORS): ErrorMessage's schema written by reference, as FastAPI writes it for the model. For
    each route's response with a `model`, FastAPI builds a pydantic TypeAdapter when the route is declared (at
    import; ~0.35 M instructions each), used only for the OpenAPI document, which is the same either way. The
    schema is in the document through the other errors (tests/test_openapi.py checks that every reference
    resolves)."""
    by_status: dict[int, list[Problem]] = {}
    for error in errors:
        problem = error if isinstance(error, Problem) else PROBLEMS[error]
        by_status.setdefault(problem.status, []).append(problem)
    return {
        code: _response_doc(problems, by_reference or all(problem in TOKEN_PROBLEMS for problem in problems))
        for code, problems in sorted(by_status.items())
    }


# What a request with a bearer token can be answered 401 for.
TOKEN_ERRORS = (MissingToken, InvalidToken, AccountGone)
TOKEN_PROBLEMS = [PROBLEMS[error] for error in TOKEN_ERRORS]
# Every route that runs a statement: app/errors.py decides which of these (503s and 504s) a failure is.
DATABASE_ERRORS = documented(*DATABASE_FAILURES, by_reference=True)
# Sent by app.api.limits.BodySizeLimit before any route runs, so documented here rather than raised.
BODY_TOO_LARGE_PROBLEM = Problem(
    "body_too_large", 413, BODY_TOO_LARGE, "The request body is over 1 MB; nothing was read or written"
)
R413 = documented(BODY_TOO_LARGE_PROBLEM, by_reference=True)
# Sent by app.api.limits (through `http_problem` too) with the operation's media type and the request's
# Content-Type in its message.
UNSUPPORTED_MEDIA_TYPE = Problem(
    "unsupported_media_type",
    415,
    WRONG_MEDIA_TYPE,
    "The body is not of the media type this operation takes (see requestBody)",
    example={"declared": "application/json", "what": "Content-Type 'text/plain'"},
)
R415 = documented(UNSUPPORTED_MEDIA_TYPE, by_reference=True)
