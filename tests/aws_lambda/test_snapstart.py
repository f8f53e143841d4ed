"""SnapStart with real processes: the before-snapshot hooks, then two fork()ed "restored sandboxes" invoked with
real API Gateway payloads against the real database (tests/aws_lambda/snapstart_sandboxes.py runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aws_lambda.support import adapt, response_json

ROOT = Path(__file__).resolve().parents[2]
V2 = "powertools__apiGatewayProxyV2Event.json"


BLOCKED_IMPORT = """
import sys
sys.modules["snapshot_restore_py"] = None  # as on Python 3.11 or outside Lambda, where it does not exist
import app.handler
from app import snapstart
print(snapstart.register_with_lambda())
"""


def test_hooks_module_imports_without_the_lambda_runtime_library():
    """`snapshot_restore_py` ships with Lambda's runtime (and awslambdaric): without it nothing is registered."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_importing_the_handler_registers_the_hooks_with_the_runtime_library():
    import snapshot_restore_py

    from app import snapstart
    from app.handler import handler  # noqa: F401 - registers

    assert (snapstart.run_before_snapshot, (), {}) in snapshot_restore_py.get_before_snapshot()
    assert (snapstart.run_after_restore, (), {}) in snapshot_restore_py.get_after_restore()


@pytest.fixture
async def token(invoke) -> str:
    body = json.dumps({"email": "snapstart@example.com", "password": "correct horse battery"})
    response = await invoke(adapt(V2, "POST", "/api/v1/auth/register", body=body, keep_stage=False))
    assert response["statusCode"] == 201, response
    return response_json(response)["access_token"]


def run_sandboxes(token: str, pool: str, *args: str) -> dict:
    env = {**os.environ, "SNAPSTART_TEST_TOKEN": token, "DB_POOL": pool, "LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.aws_lambda.snapstart_sandboxes", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    for sandbox in run["sandboxes"]:
        assert "error" not in sandbox, sandbox
    return run


@pytest.mark.parametrize("pool", ["null", "queue", "single"])
async def test_restored_sandboxes_share_no_connection_and_no_unique_value(token, pool):
    run = run_sandboxes(token, pool)
    snapshot, (first, second) = run["snapshot"], run["sandboxes"]
    # single: the kept connection is closed before the snapshot, and its statement names are renewed after it.
    assert (pool == "single") == ("prepared statement name" in first["unique"])

    # Init opened a connection (DB_POOL=queue kept it); none is left in the snapshot.
    assert snapshot["init_status"] == 200
    assert len(snapshot["init_server_pids"]) == 1
    assert snapshot["connections_held_at_snapshot"] == 0, snapshot["pool_status_at_snapshot"]

    # Each sandbox served real requests over connections of its own.
    for sandbox in (first, second):
        assert sandbox["first_status"] == 200
        assert sandbox["created_status"] == 201
        assert sandbox["server_pids"], sandbox
    assert first["pid"] != second["pid"]
    assert not set(first["server_pids"]) & set(second["server_pids"])
    assert not set(snapshot["init_server_pids"]) & (set(first["server_pids"]) | set(second["server_pids"]))

    for name, value in first["unique"].items():
        assert value is not None, name
        assert value != second["unique"][name], f"{name} is the same in both sandboxes: {value}"


async def test_the_first_invocation_after_restore_imports_nothing_and_builds_nothing(token):
    run = run_sandboxes(token, "null")
    assert run["snapshot"]["middleware_stack_built"]
    assert run["snapshot"]["openapi_built"]  # and with it the models that only document responses
    for sandbox in run["sandboxes"]:
        assert sandbox["first_status"] == 200
        assert sandbox["first_imports"] == [], " ".join(sandbox["first_imports"])
        assert sandbox["first_modules_added"] == 0
        assert sandbox["first_app_builds"] == 0


async def test_without_the_after_restore_hooks_the_sandboxes_would_share_their_random_state(token):
    """The control: the same run without the hooks. It shows what the after-restore hook is for, and that the
    comparison above can fail."""
    run = run_sandboxes(token, "null", "--no-restore-hooks")
    first, second = run["sandboxes"]
    assert first["unique"]["random.random"] == second["unique"]["random.random"]
    assert first["unique"]["backoff jitter"] == second["unique"]["backoff jitter"]
