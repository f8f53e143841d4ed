"""The real Lambda Python bootstrap (awslambdaric, what AWS's python3.11 image runs) driving our handlers.

`python -m awslambdaric app.handler.handler` imports the handler once and then loops: GET the next event from
the Runtime API, call the handler, POST the result. The Runtime API here is fake_runtime_api.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from tests.aws_lambda.fake_runtime_api import FakeRuntimeApi
from tests.aws_lambda.support import adapt, response_json
from tests.conftest import ROOT

pytest.importorskip("awslambdaric", reason="awslambdaric is in the dev extras: make install")


@contextmanager
def bootstrap(
    handler: str, api: FakeRuntimeApi, output: IO[str] | None = None, **env: str
) -> Iterator[subprocess.Popen]:
    """The bootstrap serving `api`'s events. Its output is read when it stops; a test that makes it print more
    than a pipe holds (64 KiB) passes a file as `output`, or the bootstrap would block on a write."""
    process = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", handler],
        cwd=ROOT,
        env={
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "task-api-dev-api",
            **env,
        },
        stdout=output or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> str:
    """The bootstrap never exits by itself (it polls for the next event forever): stop it by its pid."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    return process.communicate(timeout=10)[0] or ""


def test_api_handler_under_the_real_bootstrap():
    with FakeRuntimeApi() as api, bootstrap("app.handler.handler", api) as process:
        ids = [
            api.invoke(adapt("powertools__apiGatewayProxyV2Event.json", "GET", "/api/v1/health")),
            api.invoke(adapt("awslambdago__apigw-request.json", "GET", "/api/v1/health/db")),
            api.invoke(adapt("awslambdago__alb-lambda-target-request-headers-only.json", "GET", "/api/v1/health/db")),
            api.invoke(adapt("powertools__apiGatewayProxyV2Event.json", "GET", "/missing")),
        ]
        try:
            api.wait_for(ids, timeout=60)
        except TimeoutError:
            pytest.fail(f"the bootstrap did not answer:\n{stop(process)[-3000:]}")
    assert api.init_errors == []
    assert api.errors == {}
    responses = [api.results[i] for i in ids]
    assert [r["statusCode"] for r in responses] == [200, 200, 200, 404]
    assert response_json(responses[0]) == {"status": "ok"}
    assert response_json(responses[1])["status"] == "ok"
    assert response_json(responses[2])["database_revision"] == response_json(responses[2])["expected_revision"]


def test_invalid_configuration_fails_the_cold_start_with_a_readable_reason():
    """app.config raises SystemExit, which awslambdaric does not catch: the runtime process exits (Lambda
    reports "Runtime exited with error") and the reason, naming the variable but not the secret, is logged."""
    with (
        FakeRuntimeApi() as api,
        bootstrap("app.handler.handler", api, DATABASE_URL="mysql://root:hunter2-secret@db/app") as process,
    ):
        process.wait(timeout=60)
        output = stop(process)
    assert process.returncode != 0
    assert "Invalid configuration: DATABASE_URL must start with postgresql://" in output
    assert "hunter2-secret" not in output + str(api.init_errors)
    assert api.results == {}


def test_migrate_function_under_the_real_bootstrap():
    """The `migrate` function: alembic upgrade head against DATABASE_URL_DIRECT (the test database)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(ROOT / "alembic")).get_current_head()
    with FakeRuntimeApi() as api, bootstrap("app.migrate_handler.handler", api) as process:
        request_id = api.invoke({})
        try:
            api.wait_for([request_id], timeout=60)
        except TimeoutError:
            pytest.fail(f"migrate did not answer:\n{stop(process)[-3000:]}")
    assert api.errors == {}
    assert api.results[request_id] == {"status": "ok", "revision": head}
