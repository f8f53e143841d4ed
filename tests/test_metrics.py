"""The CloudWatch side of the request line (app/metrics.py, app/invocation.py) in-process: when the EMF record
is written, what the invocation fields hold, SnapStart restores, and the settings. The full picture under
the real Lambda bootstrap, with every real payload, is tests/aws_lambda/test_observability.py."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.middleware import Middleware

from app import invocation, snapstart
from app.config import Settings
from app.observability import RequestLogMiddleware
from tests.aws_lambda.conftest import invoke, lambda_thread  # noqa: F401 - fixtures for the Lambda tests
from tests.aws_lambda.support import adapt
from tests.support.api import insert_task, make_account
from tests.support.emf import emf_problems
from tests.test_logs import logs  # noqa: F401 - the app's lines, parsed

TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
V2 = "powertools__apiGatewayProxyV2Event.json"


def app_with_emf(mode: str):
    from app.main import create_app

    probe = create_app()
    probe.user_middleware = [
        Middleware(RequestLogMiddleware, emf=mode) if entry.cls is RequestLogMiddleware else entry
        for entry in probe.user_middleware
    ]
    return probe


async def get(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        return await http.get(path, **kwargs)


async def test_outside_lambda_no_metrics_by_default_but_the_invocation_fields(client, db, logs):  # noqa: F811
    """Under uvicorn (no Lambda context in the scope) EMF_METRICS=auto writes no `_aws`: CloudWatch is not
    reading that output, and the line stays short."""
    account = await make_account(db)
    response = await client.get("/api/v1/tasks", headers=account.headers)
    assert response.status_code == 200
    line = logs.only_request()
    assert "_aws" not in line and "ColdStart" not in line
    assert line["service"] == "task-api" and isinstance(line["cold_start"], bool)
    assert line["db_statements"] == 1 and line["db_ms"] >= line["db_connect_ms"] > 0


async def test_emf_on_writes_the_record_outside_lambda_too(db, logs):  # noqa: F811
    account = await make_account(db)
    task_id = await insert_task(db, account.id, "A task")
    response = await get(app_with_emf("on"), f"/api/v1/tasks/{task_id}", headers=account.headers)
    assert response.status_code == 200
    line = logs.only_request()
    assert emf_problems(line) == []
    assert (line["route"], line["responses_2xx"], line["responses_5xx"]) == ("/api/v1/tasks/{task_id}", 1, 0)
    assert line["db_ms"] > 0


async def test_emf_off_writes_none_under_lambda(invoke, logs):  # noqa: F811
    from mangum import Mangum

    response = await invoke(adapt(V2, "GET", "/api/v1/health"), Mangum(app_with_emf("off"), lifespan="off"))
    assert response["statusCode"] == 200
    assert "_aws" not in logs.only_request()


async def test_under_lambda_the_record_is_written_whatever_the_log_level(invoke, logs, monkeypatch):  # noqa: F811
    """The line carries the metrics: LOG_LEVEL=WARNING must not turn them off (a 200 is an INFO line)."""
    monkeypatch.setattr(logging.getLogger("app.requests"), "level", logging.WARNING)
    response = await invoke(adapt(V2, "GET", "/api/v1/health"))
    assert response["statusCode"] == 200
    line = logs.only_request()
    assert emf_problems(line) == [] and line["responses_2xx"] == 1


async def test_the_trace_id_is_read_for_each_invocation(invoke, logs, monkeypatch):  # noqa: F811
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    await invoke(adapt(V2, "GET", "/api/v1/health"))
    monkeypatch.delenv("_X_AMZN_TRACE_ID")  # the runtime removes it when an invocation has none
    await invoke(adapt(V2, "GET", "/api/v1/health"))
    first, second = logs.requests()
    assert first["xray_trace_id"] == "1-67891233-abcdef012345678912345678"
    assert "xray_trace_id" not in second


async def test_a_snapstart_restore_makes_the_next_invocation_a_cold_start_again(invoke, logs):  # noqa: F811
    await invoke(adapt(V2, "GET", "/api/v1/health"))  # whatever ran before in this process, now warm
    snapstart.run_after_restore()  # what the runtime calls in each sandbox restored from the snapshot
    await invoke(adapt(V2, "GET", "/api/v1/health"))
    await invoke(adapt(V2, "GET", "/api/v1/health"))
    warm, restored, after = logs.requests()
    assert (warm["cold_start"], warm["ColdStart"], warm["SnapStartRestore"]) == (False, 0, 0)
    assert (restored["cold_start"], restored["ColdStart"], restored["SnapStartRestore"]) == (True, 1, 1)
    assert restored["snapstart_restore"] is True
    assert (after["cold_start"], after["ColdStart"], after["SnapStartRestore"]) == (False, 0, 0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-request-id": "caller-42"}, "caller-42"),
        ({"x-request-id": "bad id\r\ninjected"}, None),
        ({"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793"}, "1-5759e988-bd862e3fe1be46a994272793"),
        ({"x-amzn-trace-id": "Root=not-a-trace"}, None),
    ],
)
def test_correlation_id_is_the_gateways_else_a_sane_header_else_none(headers, expected):
    scope = {"headers": [(name.encode(), value.encode()) for name, value in headers.items()]}
    assert invocation.correlation_id(scope) == expected
    gateway = {**scope, "aws.event": {"requestContext": {"requestId": "JKJaXmPLvHcESHA="}}}
    assert invocation.correlation_id(gateway) == "JKJaXmPLvHcESHA="


def test_metrics_settings():
    assert Settings(_env_file=None).EMF_METRICS == "auto"
    assert Settings(_env_file=None, METRICS_NAMESPACE="Acme/Tasks").METRICS_NAMESPACE == "Acme/Tasks"
    with pytest.raises(ValidationError, match="AWS/"):
        Settings(_env_file=None, METRICS_NAMESPACE="AWS/Lambda")
    with pytest.raises(ValidationError, match="EMF_METRICS"):
        Settings(_env_file=None, EMF_METRICS="yes")
    with pytest.raises(ValidationError, match="SERVICE_NAME"):
        Settings(_env_file=None, SERVICE_NAME="has spaces")
