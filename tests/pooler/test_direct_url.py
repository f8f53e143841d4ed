"""Migrations and the seed go to the direct URL even when DATABASE_URL is the pooler (as on Neon)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.pooler.workers import app_environment

pytestmark = pytest.mark.pooler


def traffic(bouncer) -> tuple[int, int]:
    stats = bouncer.stats()
    return stats.get("total_query_count", 0), stats.get("total_xact_count", 0)


def run_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def test_migrations_and_seed_bypass_the_pooler(pgbouncer, database_url, db):
    env = app_environment(pgbouncer.url(), database_url, pooler_guard=True)
    before = traffic(pgbouncer)

    migrate = run_script("scripts/alembic_cli.py", "upgrade", "head", env=env)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    seed = run_script("scripts/seed_dev.py", env=env)
    assert seed.returncode == 0, seed.stderr[-2000:]

    assert await db.fetchval("SELECT count(*) FROM tasks") > 0  # the seed really wrote
    assert traffic(pgbouncer) == before, "migrations or the seed went through the pooler"
    # And the same pooler does carry the app's traffic: the counter above is not stuck.
    probe = run_script(
        "-c",
        "import asyncio; from app.db import engine; from sqlalchemy import text\n"
        "async def main():\n"
        "    async with engine.connect() as c: await c.execute(text('SELECT 1'))\n"
        "asyncio.run(main())",
        env=env,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert traffic(pgbouncer)[0] > before[0]
