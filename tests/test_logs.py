"""Structured logs (app/observability.py): one JSON line per request with its request id, method, route
template, status and duration; the app's other lines are JSON with the same id; nothing of bodies, tokens,
passwords or query values. Through the ASGI app, the Lambda handler, and the real Lambda bootstrap."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.middleware import Middleware

import app.db as db_module
from app.config import Settings, normalize_database_url
from app.db import create_engine
from app.dev.embedded import free_port
from app.observability import JsonFormatter, query_parameter_names, route_template
from tests.aws_lambda.conftest import invoke, lambda_thread  # noqa: F401 - fixtures for the Lambda tests
from tests.aws_lambda.support import FakeContext, adapt, response_header
from tests.support.api import PASSWORD, insert_task, make_account

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


class Lines(logging.Handler):
    """Every record of the app's process, rendered by the app's own formatter and parsed back; not those of
    the tests' HTTP client (httpx logs the URLs it requests)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.formatter = JsonFormatter()
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] not in {"httpx", "httpcore"}:
            self.raw.append(self.format(record))

    @property
    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.all if line["logger"] == "app.requests"]

    def only_request(self) -> dict[str, Any]:
        (line,) = self.requests()
        return line


@pytest.fixture
def logs() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)  # the root conftest's leak_watch has the root logger at DEBUG
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def assert_request_line(line: dict[str, Any], response: httpx.Response, route: str | None, status: int) -> None:
    assert line["method"] == response.request.method
    assert line["route"] == route
    assert line["status"] == status == response.status_code
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(line["request_id"])
    assert line["level"] == ("INFO" if status < 500 else "WARNING")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


async def test_a_200_is_logged_with_the_route_template_not_the_path(client, db, logs):
    account = await make_account(db)
    task_id = await insert_task(db, account.id, "Secret plans for the weekend")
    response = await client.get(f"/api/v1/tasks/{task_id}", headers=account.headers)
    assert response.status_code == 200
    line = logs.only_request()
    assert_request_line(line, response, "/api/v1/tasks/{task_id}", 200)
    assert str(task_id) not in json.dumps(line)
    assert "Secret plans" not in "\n".join(logs.raw)  # the response body is not logged


async def test_a_401_without_a_token(client, logs):
    response = await client.get("/api/v1/tasks")
    assert_request_line(logs.only_request(), response, "/api/v1/tasks", 401)


async def test_a_404_for_an_unknown_path_has_no_route_and_a_404_of_a_route_has_its_template(client, db, logs):
    unknown = await client.get("/api/v1/no-such-thing/123")
    account = await make_account(db)
    missing = await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=account.headers)
    first, second = logs.requests()
    assert_request_line(first, unknown, None, 404)
    assert "no-such-thing" not in json.dumps(first)
    assert_request_line(second, missing, "/api/v1/tasks/{task_id}", 404)


async def test_a_422_logs_neither_the_body_nor_its_values(client, db, logs):
    account = await make_account(db)
    response = await client.post(
        "/api/v1/tasks", json={"title": "Body text that must stay out", "priority": "urgent!!"}, headers=account.headers
    )
    assert_request_line(logs.only_request(), response, "/api/v1/tasks", 422)
    assert "Body text" not in "\n".join(logs.raw) and "urgent!!" not in "\n".join(logs.raw)


@pytest.fixture
def dead_database(monkeypatch) -> None:
    """The app's engine pointed at a port nobody listens on (as tests/test_database_unavailable.py does)."""
    dead = create_engine(normalize_database_url(f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app"))
    monkeypatch.setattr(db_module, "engine", dead)


async def test_a_503_and_the_outage_warning_share_the_request_id(client, db, logs, dead_database):
    account = await make_account(db)
    response = await client.get("/api/v1/tasks", headers=account.headers)
    assert response.status_code == 503
    line = logs.only_request()
    assert_request_line(line, response, "/api/v1/tasks", 503)
    (warning,) = [entry for entry in logs.all if entry["logger"] == "app.errors"]
    assert warning["level"] == "WARNING"
    assert warning["request_id"] == line["request_id"]
    assert warning["error"] == "ConnectionRefusedError"  # the type only, not the message (it names the host)
    assert "s3cret-pw" not in "\n".join(logs.raw) and "127.0.0.1" not in "\n".join(logs.raw)


@pytest.fixture
def app_with_a_failing_route():
    """The real app (middleware stack, handlers) plus a route that fails with a message full of data."""
    from app.main import create_app

    probe = create_app()

    @probe.get("/probe/boom/{item_id}")
    async def boom(item_id: str) -> None:
        raise RuntimeError(f"INSERT ... parameters: ('someone@example.com', 'hunter2-{item_id}')")

    return probe


async def test_an_unhandled_exception_is_one_500_line_with_its_type_and_frames_but_not_its_message(
    app_with_a_failing_route, logs
):
    transport = httpx.ASGITransport(app=app_with_a_failing_route)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/probe/boom/42")
    assert response.status_code == 500
    line = logs.only_request()
    assert line["status"] == 500 and line["level"] == "ERROR"
    assert line["route"] == "/probe/boom/{item_id}"
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["error"] == "RuntimeError"
    assert any("in boom" in frame for frame in line["stack"])
    everything = "\n".join(logs.raw)
    assert "hunter2" not in everything and "someone@example.com" not in everything
    # Logged once: not again by a server or Mangum (the middleware does not re-raise after the 500 is sent).
    assert [entry["logger"] for entry in logs.all if entry["level"] == "ERROR"] == ["app.requests"]


class RefuseEverything:
    """A middleware that answers 413 without calling the app (as a body-size limit of our own would)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too large"})


@pytest.mark.parametrize("limit", ["the app's 1 MB body limit", "a user middleware"])
async def test_responses_of_inner_layers_are_logged_too(logs, limit):
    from app.main import create_app

    probe = create_app()
    if limit == "a user middleware":
        # Inside ours, where create_app adds its own: `add_middleware` puts a middleware outermost, so one added
        # after create_app() answers before the log line exists (the order Starlette documents).
        probe.user_middleware.append(Middleware(RefuseEverything))
    transport = httpx.ASGITransport(app=probe)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post(
            "/api/v1/auth/register", content=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    line = logs.only_request()
    assert (line["status"], line["request_id"]) == (413, response.headers["X-Request-ID"])
    # Both answer before any routing (app.api.limits reads the body before a route runs), so no route is named.
    assert line["route"] is None


async def test_no_password_token_or_email_in_any_line(client, logs):
    email = f"log-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    token = registered.json()["access_token"]
    login = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200
    wrong = await client.post("/api/v1/auth/token", data={"username": email, "password": "not the password"})
    assert wrong.status_code == 401
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert [(line["route"], line["status"]) for line in logs.requests()] == [
        ("/api/v1/auth/register", 201),
        ("/api/v1/auth/token", 200),
        ("/api/v1/auth/token", 401),
        ("/api/v1/users/me", 200),
    ]
    everything = "\n".join(logs.raw)
    for secret in (PASSWORD, "not the password", token, login.json()["access_token"], email, "$argon2"):
        assert secret not in everything


async def test_query_parameters_are_logged_by_name_only(client, db, logs):
    account = await make_account(db)
    response = await client.get(
        "/api/v1/tasks", params={"q": "hunter2-in-a-query", "status": "todo"}, headers=account.headers
    )
    assert response.status_code == 200
    line = logs.only_request()
    assert line["query_params"] == ["q", "status"]
    assert "hunter2" not in "\n".join(logs.raw)


def test_query_parameter_names_are_bounded_and_decoded():
    assert query_parameter_names(b"a=1&a=2&b%20c=3&=4&d") == ["a", "b c", "d"]
    assert len(query_parameter_names(b"&".join(b"p%d=1" % i for i in range(100)))) == 20
    assert query_parameter_names(b"x" * 500 + b"=1") == ["x" * 64]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req-42.abc:DEF_9", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ('quote"s', False),
        ("-starts-with-dash", False),
        ("caf\u00e9", False),
        ("{}", False),
    ],
)
async def test_an_incoming_request_id_is_kept_only_if_sane(client, logs, incoming, kept):
    response = await client.get("/api/v1/health", headers={"X-Request-ID": incoming.encode("latin-1")})
    line = logs.only_request()
    assert line["request_id"] == response.headers["X-Request-ID"]
    if kept:
        assert line["request_id"] == incoming
    else:
        assert GENERATED_ID.fullmatch(line["request_id"])


async def test_each_request_gets_its_own_id_and_none_is_left_behind(client, logs):
    first = await client.get("/api/v1/health")
    second = await client.get("/api/v1/health")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    logging.getLogger("app.test").warning("outside any request")
    assert logs.all[-1]["request_id"] is None


async def test_route_template_is_the_full_declared_template_and_never_a_path_with_ids(client, logs):
    """Routes of included routers carry their path without the prefix in scope["route"]: the full one is logged.
    A route FastAPI adds itself (/docs) is named too; an unknown path, which matched no route, is not."""
    for path in ("/docs", "/api/v1/tasks/3c5a0a7e-35c3-4a2b-9b0e-1a2b3c4d5e6f", "/api/v1/nothing/1"):
        await client.get(path)
    assert [line["route"] for line in logs.requests()] == ["/docs", "/api/v1/tasks/{task_id}", None]
    assert route_template({"path": "/x/1", "path_params": {"id": "1"}}) is None  # no route matched


def test_log_level_setting():
    assert Settings(_env_file=None, LOG_LEVEL=" debug ").LOG_LEVEL == "DEBUG"
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        Settings(_env_file=None, LOG_LEVEL="verbose")


# Through the Lambda handler: the request id is Lambda's own, so our line sits with START/END/REPORT.


@pytest.mark.parametrize(
    "payload",
    [
        "powertools__apiGatewayProxyV2Event.json",
        "awslambdago__apigw-request.json",
        "awslambdago__alb-lambda-target-request-headers-only.json",
    ],
)
async def test_through_the_lambda_handler_the_request_id_is_aws_request_id(invoke, db, logs, payload):  # noqa: F811
    account = await make_account(db)
    task_id = await insert_task(db, account.id, "A task")
    event = adapt(payload, "GET", f"/api/v1/tasks/{task_id}", headers={**account.headers, "X-Request-ID": "mine"})
    response = await invoke(event)
    assert response["statusCode"] == 200
    line = logs.only_request()
    assert line["request_id"] == FakeContext.aws_request_id
    assert response_header(response, "X-Request-ID") == FakeContext.aws_request_id
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/v1/tasks/{task_id}", 200)
    assert account.token not in "\n".join(logs.raw)
    assert not [entry for entry in logs.all if entry["logger"].startswith("mangum")]  # its access line is quiet


# Under the real Lambda bootstrap (awslambdaric): the runtime's own root handler prints our JSON, once.


@pytest.mark.parametrize("runtime_env", [{}, {"AWS_LAMBDA_LOG_LEVEL": "INFO"}], ids=["text-handler", "framed"])
def test_under_the_real_bootstrap_each_request_is_one_json_line_with_the_invocation_id(runtime_env):
    from tests.aws_lambda.fake_runtime_api import FakeRuntimeApi
    from tests.aws_lambda.test_bootstrap import bootstrap, stop

    with FakeRuntimeApi() as api, bootstrap("app.handler.handler", api, **runtime_env) as process:
        ids = [
            api.invoke(adapt("powertools__apiGatewayProxyV2Event.json", "GET", "/api/v1/health")),
            api.invoke(adapt("awslambdago__apigw-request.json", "GET", "/api/v1/tasks")),
        ]
        try:
            api.wait_for(ids, timeout=60)
        finally:
            output = stop(process)
    assert [api.results[i]["statusCode"] for i in ids] == [200, 401]
    request_lines = [line for line in output.splitlines() if '"app.requests"' in line]
    assert len(request_lines) == 2, output[-3000:]  # one per request: not printed twice, nothing dropped
    parsed = [json.loads(line) for line in request_lines]  # each a whole JSON object on its own line
    assert [(p["request_id"], p["route"], p["status"]) for p in parsed] == [
        (ids[0], "/api/v1/health", 200),
        (ids[1], "/api/v1/tasks", 401),
    ]
    assert "GET /api/v1/health 200" not in output.replace(request_lines[0], "")  # no plain-text twin


def test_quiet_loggers_stay_quiet_even_when_the_root_logger_is_at_debug():
    """mangum's and uvicorn's access lines (raw paths, query strings) and SQLAlchemy's statement, parameter and
    row logging (password hashes) stay off whatever LOG_LEVEL says; DB_ECHO is the opt-in for SQL."""
    import app.main  # noqa: F401 - configures logging
    from app.observability import QUIET_LOGGERS

    assert logging.getLogger().isEnabledFor(logging.DEBUG)  # leak_watch's setting, as with LOG_LEVEL=DEBUG
    for name in (*QUIET_LOGGERS, "sqlalchemy.engine.Engine", "mangum.http"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_a_plain_process_gets_one_json_handler_on_stderr():
    """With nothing configured (as under uvicorn, which configures only its own loggers), importing the app
    adds one handler; importing it again (a reload) does not add a second."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import importlib, logging, app.main; importlib.reload(app.main); "
        "logging.getLogger('app.example').warning('hello %s', 'there')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["level"], entry["message"]) == ("app.example", "WARNING", "hello there")
    assert entry["request_id"] is None
