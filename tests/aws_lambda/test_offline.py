"""`make offline` (scripts/offline.py -> `osls offline start`): real HTTP through serverless-offline's HTTP
API emulation into app.handler.handler, against the test database. Started once per module, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from app.dev.embedded import free_port
from tests.aws_lambda.node_tools import OFFLINE_AWS_ENV, require_osls
from tests.conftest import ROOT

# osls writes .serverless/ and the requirements cache in the checkout: one osls at a time (same xdist worker).
pytestmark = [pytest.mark.offline, pytest.mark.xdist_group("osls")]

READY_TIMEOUT = 120


@pytest.fixture(scope="module")
def offline(database_url) -> Iterator[str]:
    require_osls()
    port, lambda_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **OFFLINE_AWS_ENV,
        "DATABASE_URL": database_url,
        "DATABASE_URL_DIRECT": database_url,
        "OFFLINE_HTTP_PORT": str(port),
        "OFFLINE_LAMBDA_PORT": str(lambda_port),
    }
    process = subprocess.Popen(
        [sys.executable, "scripts/offline.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"osls offline exited early:\n{process.communicate()[0][-3000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGTERM)
            pytest.fail(f"osls offline not ready in {READY_TIMEOUT} s:\n{process.communicate()[0][-3000:]}")
        time.sleep(0.5)
    children = psutil.Process(process.pid).children(recursive=True)
    yield base
    os.kill(process.pid, signal.SIGTERM)  # scripts/offline.py exec'd osls: this pid is the emulator
    process.communicate(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running after stopping osls offline: {alive}"


def test_liveness_over_http(offline):
    response = httpx.get(f"{offline}/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_over_http(offline):
    response = httpx.get(f"{offline}/api/v1/health/db")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database_revision"] == body["expected_revision"]


def test_unknown_route_and_openapi(offline):
    assert httpx.get(f"{offline}/api/v1/nope").status_code == 404
    spec = httpx.get(f"{offline}/openapi.json").json()
    assert "/api/v1/health" in spec["paths"]


def test_core_flow_over_http(offline):
    """Register, log in with the OAuth2 form, create tasks, list them with query strings, over real HTTP."""
    with httpx.Client(base_url=offline, timeout=30) as http:
        email = "offline-flow@example.com"
        password = "correct horse battery staple"
        registered = http.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        login = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for title, tags in (("Buy milk & eggs", ["home", "errand"]), ("Write report", ["work"])):
            created = http.post("/api/v1/tasks", json={"title": title, "tags": tags}, headers=auth)
            assert created.status_code == 201, created.text
        listed = http.get("/api/v1/tasks", params={"any_tag": ["errand", "none"], "q": "milk & eggs"}, headers=auth)
        assert listed.status_code == 200, listed.text
        assert [task["title"] for task in listed.json()["items"]] == ["Buy milk & eggs"]
        assert http.get("/api/v1/users/me", headers=auth).json()["email"] == email
