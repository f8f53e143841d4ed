"""Lambda SnapStart: what runs once before the snapshot, and what each restored sandbox must redo.

With SnapStart, Lambda runs init (the import of app.handler) once per published version, snapshots the
process, and starts every new sandbox from that snapshot. So:

- `before_snapshot` does the work a first request would otherwise pay in every sandbox: the app's middleware
  stack and routes, every lazily imported module on the request path (a real invocation of the handler that
  needs no database), SQLAlchemy's compilation of the statements the routes run, the argon2 hasher, the
  settings and the OpenAPI document. It leaves no connection open: a connection in the snapshot would be
  shared, and stale, in every sandbox restored from it.
- `after_restore` regenerates what must differ between sandboxes but was fixed in the snapshot: the `random`
  module's state (the connect backoff's jitter) and OpenSSL's random generator (TLS handshakes). Everything
  else unique is drawn from the kernel when it is needed (uuid4, secrets, request ids, argon2 salts), and
  no clock reading survives from init (the rate limiter's deadlines are made per request).
  `hash()`'s seed (PYTHONHASHSEED) is fixed at interpreter start and cannot be changed afterwards: every sandbox
  of a version shares it.

The hooks are registered with `snapshot_restore_py`, which the Lambda runtime provides (3.12 and later).
Elsewhere (3.11, tests, uvicorn) this module imports without it and only `run_before_snapshot` /
`run_after_restore` call the hooks (tests/aws_lambda/test_snapstart.py drives them across fork()).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("app.snapstart")

_before: list[Callable[[], None]] = []
_after: list[Callable[[], None]] = []


def before_snapshot(hook: Callable[[], None]) -> Callable[[], None]:
    _before.append(hook)
    return hook


def after_restore(hook: Callable[[], None]) -> Callable[[], None]:
    _after.append(hook)
    return hook


def run_before_snapshot() -> None:
    for hook in _before:
        hook()


def run_after_restore() -> None:
    for hook in _after:
        hook()


def register_with_lambda() -> bool:
    """Hand the hooks to the Lambda runtime, when this process runs on one with SnapStart."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(run_before_snapshot)
    register_after_restore(run_after_restore)
    return True


# A request that reaches the app's middleware, routing, validation, auth and error handlers without a database:
# an HTTP API 2.0 event like the ones API Gateway sends.
def _warm_up_event(method: str, target: str, headers: dict[str, str], body: str) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "body": body,
        "headers": {"host": "snapshot.invalid", "x-request-id": "snapshot-warm-up", **headers},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "snapshot",
            "domainName": "snapshot.invalid",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": ""},
            "requestId": "snapshot-warm-up",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }


def warm_request_path() -> None:
    """Real invocations of the handler that stop before the database: each route's dependencies (the
    request's connection object is made, it connects at its first statement), validation and error paths."""
    import uuid

    from app.handler import handler
    from app.security import create_access_token

    bearer = {"authorization": f"Bearer {create_access_token(uuid.UUID(int=0))}"}
    json_body = {**bearer, "content-type": "application/json"}
    requests: list[tuple[str, str, dict[str, str], str]] = [
        ("GET", "/api/v1/health", {}, ""),  # middleware stack, routing, response serialisation
        ("GET", "/api/v1/tasks", {}, ""),  # no token: the auth dependency's 401
        ("GET", "/api/v1/tasks", {"authorization": "Bearer not-a-token"}, ""),  # JWT decoding, its 401
        ("GET", "/api/v1/tasks?limit=0", bearer, ""),  # dependencies entered, then the query's 422
        ("POST", "/api/v1/tasks", json_body, '{"title": ""}'),  # the body's 422
        ("GET", "/api/v1/no-such-route", {}, ""),  # the 404 path
    ]
    no_context: Any = None  # Lambda's context object; the app reads only its request id
    # The request log of the warm-up is not the service's traffic.
    request_log = logging.getLogger("app.requests")
    request_log.disabled = True
    try:
        for method, target, headers, body in requests:
            event = _warm_up_event(method, target, headers, body)
            status = handler(event, no_context)["statusCode"]
            if status >= 500:
                logger.warning("snapshot warm-up %s %s answered %s", method, target, status)
    finally:
        request_log.disabled = False


class _Compiled(Exception):
    """Raised by _CompileOnly instead of executing: the statement was built and compiled, nothing was sent."""


class _CompileOnly:
    """Stands where a route's LazyConnection stands: compiles the statement for the real engine's dialect."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        statement.compile(dialect=self.dialect)
        raise _Compiled


def compile_statements() -> None:
    """Build and compile the statements of the read routes (the app's own query functions, a made-up user):
    SQLAlchemy creates its compilers, type processors and per-construct caches on first use, which would
    otherwise be the first request's CPU in every sandbox."""
    import uuid
    from datetime import UTC, datetime

    from app.db import engine
    from app.models.task import TaskListQuery
    from app.queries import tasks, users
    from app.security import AccessToken

    connection: Any = _CompileOnly(engine.dialect)
    token = AccessToken(uuid.UUID(int=0), datetime(2026, 1, 1, tzinfo=UTC))
    shapes = (
        tasks.list_tasks(connection, token, TaskListQuery()),
        tasks.list_tasks(connection, token, TaskListQuery(tag=["home"], status=["todo"], sort="due_date")),
        tasks.get_task(connection, token, uuid.UUID(int=0)),
        tasks.tag_counts(connection, token),
        users.read_user(connection, token),
    )
    loop = asyncio.get_event_loop()
    for shape in shapes:
        try:
            loop.run_until_complete(shape)
        except _Compiled:
            continue
        except Exception:  # a warm-up that no longer fits the code must not stop the snapshot
            logger.warning("snapshot warm-up: a statement could not be compiled", exc_info=True)


def prepare_password_hashing() -> None:
    """The argon2 hasher, its cffi bindings and one verify of the dummy hash (its first call loads them)."""
    from app.security import DUMMY_HASH, _hasher

    _hasher().verify("snapshot warm-up", DUMMY_HASH)


def validate_settings() -> None:
    """Settings checked, and the TLS context for the database built: loading the system trust store costs tens
    of milliseconds, which every sandbox's first connection would otherwise pay. The context holds trust
    anchors only, no keys or session state, so sharing it across sandboxes shares nothing unique."""
    from app.config import settings

    _ = settings.database.connect_args, settings.secret_key


def build_openapi() -> None:
    """The OpenAPI document, cached on the app, and with it the validators of the models that only document
    responses (built on first use, not at import: app/models/task.py)."""
    from app.main import app

    app.openapi()


def close_connections() -> None:
    """No connection may be in the snapshot. The engine opens the next one lazily, after restore."""
    from app import db

    asyncio.get_event_loop().run_until_complete(db.engine.dispose())


@before_snapshot
def prepare() -> None:
    validate_settings()
    warm_request_path()
    compile_statements()
    prepare_password_hashing()
    build_openapi()
    close_connections()
    logger.info("before snapshot: app warmed, %d modules loaded, no connection held", len(sys.modules))


@after_restore
def reseed() -> None:
    # The module-level Random was seeded from os.urandom at import: every sandbox would draw the same jitter.
    random.seed()
    # OpenSSL's generator reseeds itself on fork(), not on a snapshot restore (same pid): mix in fresh entropy.
    ssl = sys.modules.get("ssl")
    if ssl is not None:
        ssl.RAND_add(os.urandom(32), 32.0)
    # DB_POOL=single names its prepared statements with a per-process random prefix drawn at import.
    from app.db import renew_statement_names

    renew_statement_names()
