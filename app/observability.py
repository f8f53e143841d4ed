"""Structured logs: one JSON line per request, and every other log line as JSON with the same request id.

- `RequestLogMiddleware`, a pure ASGI middleware around the app's routes and other middleware (the last one
  app/main.py adds), writes one line per request to the `app.requests` logger: request id, method, route
  template, status, duration, the names (never the values) of the query parameters, and for an unhandled
  exception its type, stack frames and the constraint it broke, if any; it answers that exception with a plain
  500 itself. It sets `X-Request-ID` on every response.
- The request id is Lambda's `aws_request_id` (Mangum puts the context in `scope["aws.context"]`), else a sane
  incoming `X-Request-ID`, else a new one. It lives in a contextvar, so `app.errors` and library log lines
  emitted during the request carry it too.
- `JsonFormatter` renders exceptions as types and frames only: exception messages are data (SQL parameters,
  e-mail addresses, host names), frames are code.
- Every line of a request also carries `service` and Powertools' invocation fields (`cold_start`,
  `function_request_id`, `xray_trace_id`, `correlation_id`: app/invocation.py), and the request line its
  database time (`db_ms`, connecting included; app/metrics.py). Under Lambda (or with EMF_METRICS=on) the
  request line is also a CloudWatch Embedded Metric Format record (app/metrics.py): one per invocation,
  whatever LOG_LEVEL says, because it carries the metrics.

Stdlib only (app.metrics adds SQLAlchemy's event API): this is imported on every cold start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from itertools import islice
from typing import Any
from urllib.parse import unquote_plus

from app.invocation import invocation_fields
from app.metrics import DatabaseTime, EmfWriter, database_time_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The request's invocation fields (app/invocation.py), added to each of its lines by JsonFormatter.
invocation_fields_var: ContextVar[dict[str, Any] | None] = ContextVar("invocation_fields", default=None)
request_logger = logging.getLogger("app.requests")

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is echoed into logs and a response header: short, and no characters that could end a header,
# a log line or a JSON string. Anything else is replaced, not rejected (the request itself is fine).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_QUERY_PARAMS_LOGGED = 20
MAX_QUERY_PARAM_NAME = 64

INTERNAL_ERROR = b'{"detail":"Internal Server Error"}'
INTERNAL_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(INTERNAL_ERROR)).encode())],
}
INTERNAL_ERROR_BODY: Message = {"type": "http.response.body", "body": INTERNAL_ERROR}

# The attribute of a LogRecord (`extra={"fields": {...}}`) whose keys become top-level JSON fields.
FIELDS = "fields"


def request_id_for(scope: Scope) -> str:
    """Lambda's request id (it ties our line to Lambda's START/END/REPORT lines), else a sane incoming
    X-Request-ID (it ties ours to the caller's), else a new one."""
    context = scope.get("aws.context")
    aws_request_id = getattr(context, "aws_request_id", None)
    if aws_request_id:
        return str(aws_request_id)
    for name, value in scope.get("headers") or ():
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # as unique as a uuid4, a few times cheaper to make


def route_template(scope: Scope) -> str | None:
    """The matched route as declared (`/api/v1/tasks/{task_id}`), never the raw path with ids; None if nothing
    matched (a 404 for an unknown path).

    FastAPI puts a matched API route in scope["route"], with its path as declared in its router (without the
    prefixes it was included under); a plain route (/docs) leaves only its endpoint in the scope. Either way the
    full template is looked up among the application's routes (`fastapi.routing.iter_route_contexts`, what
    FastAPI's OpenAPI document is built from).
    """
    matched, app = scope.get("route") or scope.get("endpoint"), scope.get("app")
    if matched is None or app is None:
        return None
    return _templates(app).get(id(matched))


# Keyed by id: Starlette's routes define __eq__ and are unhashable; the app keeps them (and so their ids) alive.
_route_templates: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _templates(app: Any) -> dict[int, str]:
    """id(route) (and plain routes' endpoint) -> its full path template, for every route of `app`, built once."""
    known = _route_templates.get(app)
    if known is None:
        from fastapi.routing import iter_route_contexts  # loaded with FastAPI already; here to keep this stdlib

        known = {}
        for context in iter_route_contexts(getattr(app, "routes", ())):
            template = context.path_format or ""
            known.setdefault(id(context.original_route), template)
            endpoint = getattr(context.original_route, "endpoint", None)
            if endpoint is not None:
                known.setdefault(id(endpoint), template)
        _route_templates[app] = known
    return known


def query_parameter_names(query_string: bytes) -> list[str]:
    """Which parameters a request used (`["status", "tag"]`), never their values: a value may be a secret."""
    names: list[str] = []
    for pair in query_string.split(b"&")[: MAX_QUERY_PARAMS_LOGGED * 2]:
        name = unquote_plus(pair.partition(b"=")[0].decode("latin-1"))[:MAX_QUERY_PARAM_NAME]
        if name and name not in names:
            names.append(name)
        if len(names) == MAX_QUERY_PARAMS_LOGGED:
            break
    return names


class RequestLogMiddleware:
    """One log line per HTTP request, whatever answered it (a route, an exception handler, a body-size limit,
    ServerErrorMiddleware's 500). Pure ASGI: no per-request task or body buffering, as BaseHTTPMiddleware has."""

    def __init__(
        self, app: ASGIApp, *, service: str | None = None, namespace: str | None = None, emf: str | None = None
    ) -> None:
        from app.config import settings  # loaded long before the first request; not at this module's import

        self.app = app
        self.service = service or settings.SERVICE_NAME
        self.emf_mode = emf or settings.EMF_METRICS  # auto: for Lambda invocations (Mangum's scope) only
        self.emf = EmfWriter(namespace or settings.METRICS_NAMESPACE, self.service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_for(scope)
        token = request_id_var.set(request_id)
        invocation = invocation_fields(scope, self.service)
        invocation_token = invocation_fields_var.set(invocation)
        database = DatabaseTime()
        database_token = database_time_var.set(database)
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status: int | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        error: Exception | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            # A bug (nothing answered it): this line logs it, types and frames only, and the client gets a plain
            # 500. It is not raised on: the server's traceback (uvicorn's, Mangum's) would carry its message.
            error = exc
            if status is None:
                await send_with_request_id(INTERNAL_ERROR_START)
                await send_with_request_id(INTERNAL_ERROR_BODY)
        finally:
            self._log(scope, status, started, error, invocation, database)
            database_time_var.reset(database_token)
            invocation_fields_var.reset(invocation_token)
            request_id_var.reset(token)

    def _log(
        self,
        scope: Scope,
        status: int | None,
        started: float,
        error: Exception | None,
        invocation: dict[str, Any],
        database: DatabaseTime,
    ) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        level = logging.ERROR if error is not None else logging.WARNING if (status or 500) >= 500 else logging.INFO
        emf = self.emf_mode == "on" or (self.emf_mode == "auto" and scope.get("aws.context") is not None)
        # With metrics in it the line is written whatever the level (request_logger.handle below does not check
        # it); a disabled logger (the SnapStart warm-up's) still writes nothing.
        if not emf and not request_logger.isEnabledFor(level):
            return
        route = route_template(scope)
        method = scope.get("method")
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "db_ms": database.ms,
            "db_connect_ms": database.connect_ms,
            "db_statements": database.statements,
        }
        query = scope.get("query_string")
        if query:
            fields["query_params"] = query_parameter_names(query)
        if error is not None:
            # Described here, not passed as exc_info: the record then holds no exception message for any
            # handler (a host's, pytest's) to print.
            fields.update(describe_exception(error))
        if emf:
            # No status: nobody answered, and the server answers 500.
            cold, restored = invocation["cold_start"], invocation.get("snapstart_restore", False)
            fields.update(self.emf.fields(route=route, status=status or 500, cold_start=cold, restored=restored))
        # makeRecord + handle is logger.log without its walk up the stack to find the caller (always this line).
        record = request_logger.makeRecord(
            request_logger.name,
            level,
            __file__,
            0,
            "%s %s %s",
            (method, route or "(no route)", status),
            None,
            extra={FIELDS: fields},
        )
        request_logger.handle(record)


def _exception_type(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def exception_chain(error: BaseException, *links: str) -> Iterator[BaseException]:
    """`error`, then at each step the first of its `links` attributes that is set, until none is (or a loop).

    With `"__cause__", "__context__"`: what it was raised from, else what was being handled when it was raised.
    With `"orig", "__cause__"`: also the driver error a SQLAlchemy exception wraps (app/errors.py).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = next((link for name in links if (link := getattr(current, name, None)) is not None), None)


def describe_exception(error: BaseException) -> dict[str, Any]:
    """An exception as types and frames: enough to find the bug, nothing of the data it was handling."""
    causes = [_exception_type(link) for link in islice(exception_chain(error, "__cause__", "__context__"), 1, 6)]
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(error.__traceback__)]
    described: dict[str, Any] = {"error": _exception_type(error), "stack": frames}
    if causes:
        described["caused_by"] = causes
    # A constraint the route did not expect (an IntegrityError): its name says which rule the data broke. asyncpg
    # reports it apart from the message, which holds the offending values.
    for link in exception_chain(error, "orig", "__cause__", "__context__"):
        constraint = getattr(link, "constraint_name", None)
        if isinstance(constraint, str):
            described["constraint"] = constraint
            break
    return described


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request_id, the record's `fields`.

    `line_end` is for handlers that write the formatted text as it is (the Lambda runtime's), where the
    formatter, not the handler, ends the line.
    """

    def __init__(self, line_end: str = "") -> None:
        super().__init__()
        self.line_end = line_end

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{moment}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # Outside our middleware (e.g. during a Lambda invocation but before the app runs), the Lambda
            # runtime's filter still knows the invocation's id.
            "request_id": request_id_var.get() or getattr(record, "aws_request_id", None) or None,
        }
        invocation = invocation_fields_var.get()
        if invocation is not None:
            entry.update(invocation)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            entry.update(describe_exception(record.exc_info[1]))
        return json.dumps(entry, default=str) + self.line_end


# Loggers whose lines at INFO/DEBUG we do not want, whatever LOG_LEVEL says:
# - mangum.http logs "GET /raw/path 200" per request: a duplicate of ours, with ids in the path;
# - uvicorn.access logs the same with the full query string, which may carry secrets;
# - sqlalchemy.engine at INFO logs statements and parameters, at DEBUG result rows (password hashes). SQL
#   logging is opt-in through DB_ECHO, which sets its own logger level;
# - alembic.runtime.plugins logs seven "setup plugin" lines when /health/db first loads the migration scripts.
QUIET_LOGGERS = ("mangum", "uvicorn.access", "sqlalchemy.engine", "alembic.runtime.plugins")
_LAMBDA_RUNTIME_HANDLERS = {"LambdaLoggerHandler", "LambdaLoggerHandlerWithFrameType"}


def configure_logging(level: str) -> None:
    """JSON lines on stderr, or through the Lambda runtime's own handler; never a second handler.

    - On Lambda, the runtime (awslambdaric) has put a handler on the root logger that writes each formatted
      record as is, in plain text: it gets our formatter instead (no second handler, so nothing prints twice).
    - With no handler on the root logger (uvicorn configures only its own loggers), we add one on stderr.
    - Any other handler (pytest, an application embedding this one) is the host's choice and is left alone.
    """
    root = logging.getLogger()
    lambda_handlers = [h for h in root.handlers if type(h).__name__ in _LAMBDA_RUNTIME_HANDLERS]
    for handler in lambda_handlers:
        handler.setFormatter(JsonFormatter(line_end="\n"))
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
