"""The Node side of the tests (osls and its plugins): present, or a clear skip locally, or a failure in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import missing

ROOT = Path(__file__).resolve().parents[2]
OSLS = ROOT / "node_modules" / ".bin" / "osls"

# Packaging and `osls offline` must never reach AWS: fake credentials make the SDK fail fast if anything
# tries, and TASK_API_SETTINGS_FROM=local keeps serverless.yml from reading SSM.
OFFLINE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_REGION": "us-east-1",
    "TASK_API_SETTINGS_FROM": "local",
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
}


def node_package_problem(installed: Path) -> str | None:
    """What keeps a file of the Node packages (`installed`) from running, and the command that fixes it."""
    if shutil.which("node") is None:
        return "node is not installed: install Node 20+ with npm (Debian: `apt-get install nodejs npm`)"
    if not installed.exists():
        return "node_modules is missing: run `npm ci` (`make test` does when npm is installed)"
    return None


def require_osls() -> Path:
    """The osls binary; skips when Node or `npm ci` is missing, except under CI, where that is a failure."""
    problem = node_package_problem(OSLS)
    if problem:
        missing(f"{problem}; the osls packaging and emulation tests need it", ci=".ci/run must install them")
    return OSLS


def osls_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    # The test session's database settings must not leak into packaged templates.
    for key in ("DATABASE_URL", "DATABASE_URL_DIRECT", "SECRET_KEY", "ENVIRONMENT", "ALLOWED_ORIGINS"):
        env.pop(key, None)
    if "LAMBDA_PYTHON" not in env:
        python = lambda_python(extra.get("TASK_API_LAMBDA_PYTHON", env.get("TASK_API_LAMBDA_PYTHON")))
        if python:
            env["LAMBDA_PYTHON"] = python
    return {**env, **OFFLINE_AWS_ENV, **extra}


def lambda_python(switch: str | None) -> str | None:
    """An interpreter of the Lambda runtime's Python version (it compiles the zip's bytecode), if there is one.

    The one running the tests when it is that version, else python3.13 from scripts/python313.sh when it needs
    no building (CI builds it before the tests; locally `scripts/python313.sh` does, once).
    """
    wanted = (3, 11) if switch == "py311" else (3, 13)
    if sys.version_info[:2] == wanted:
        return sys.executable
    if wanted == (3, 11):
        return shutil.which("python3.11")
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "python313.sh"), "--no-build"], capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else None


def require_lambda_python(switch: str | None = None) -> str:
    """lambda_python(), or a skip (a failure under CI) saying how to get it."""
    python = os.environ.get("LAMBDA_PYTHON") or lambda_python(switch)
    if python:
        return python
    missing(
        "no Python 3.13 to compile the zip's bytecode with: run scripts/python313.sh (or set PYTHON313)",
        ci=".ci/run must build it",
    )


def run_osls(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_osls()), *args],
        cwd=ROOT,
        env=osls_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
