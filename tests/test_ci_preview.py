"""scripts/ci_preview.sh, the preview workflow's steps, run here as the workflow runs them, on an embedded
PostgreSQL of its own instead of a Neon branch: migrate, smoke through the Lambda handler, a (short) suite."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT, TEMPLATE_URL_VARIABLE

# What this test session set for itself, which the script's own processes must not inherit.
SESSION_ONLY = {"DATABASE_URL", "DATABASE_URL_DIRECT", "TEST_DATABASE_URL", "ENVIRONMENT", "SECRET_KEY"}
SESSION_ONLY |= {TEMPLATE_URL_VARIABLE, "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}


def test_the_preview_steps_run_and_write_their_summary(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SESSION_ONLY and not key.startswith(("PYTEST_", "DB_", "PREVIEW_"))
    }
    summary = tmp_path / "summary.md"
    env |= {
        "PREVIEW_SUMMARY": str(summary),
        "PREVIEW_PYTEST_ARGS": "tests/test_health.py -q",
        "TEST_WORKERS": "0",
    }
    result = subprocess.run(
        ["bash", "scripts/ci_preview.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    text = summary.read_text()
    assert "embedded PostgreSQL" in text
    assert text.count("✅") == 3 and "❌" not in text, text
    assert "No new upgrade operations detected" in output  # alembic check after the upgrade
    assert "pool: DB_POOL=auto and DB_POOLER=true" in output  # the smoke took the pooler path, as on Lambda
    assert "ok   the list holds the two tasks: 2" in output
    assert "ok   ... answered as the first, Idempotent-Replayed: 1" in output  # a keyed create, replayed
    assert " passed" in text and " failed" not in text
