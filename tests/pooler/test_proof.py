"""The app through a real transaction pooler (pgbouncer 1.18, stricter than Neon's): under uvicorn and
through the Lambda handler, many processes at once, 0 errors, and no prepared statement left on the server
connections.
And the same pooler with the guard off fails, so the guard is what makes the difference.

Migrations ran on the direct URL (tests/conftest.py); only the app's traffic goes through the pooler.
"""

from __future__ import annotations

from collections import Counter

import asyncpg
import pytest

from tests.pooler import pgbouncer as pgb
from tests.pooler.workers import app_environment, ran_concurrently, run_workers, uvicorn_server

pytestmark = pytest.mark.pooler

MIN_REQUESTS = 1000
MIN_PROCESSES = 3
WRITES = {"register", "create", "update", "delete"}
READS = {"get", "list", "tags", "health_db"}


def totals(reports: list[dict]) -> dict:
    steps: Counter[str] = Counter()
    for report in reports:
        steps.update(report["by_step"])
    return {
        "processes": len({report["pid"] for report in reports}),
        "requests": sum(report["requests"] for report in reports),
        "errors": sum(report["error_count"] for report in reports),
        "steps": dict(steps),
        "samples": [error for report in reports for error in report["errors"]][:10],
    }


def run_seconds(reports: list[dict]) -> float:
    return round(max(r["finished"] for r in reports) - min(r["started"] for r in reports), 1)


def assert_mixed(reports: list[dict], summary: dict) -> None:
    """Reads and writes of every kind, by every process (the task routes, not just health checks)."""
    for report in reports:
        assert report["scenario"] == "tasks"
        assert set(report["by_step"]) == WRITES | READS, report["by_step"]
    writes = sum(count for step, count in summary["steps"].items() if step in WRITES)
    assert summary["requests"] / 4 <= writes <= summary["requests"] * 3 / 4, summary["steps"]


async def assert_writes_landed(database_url: str, reports: list[dict]) -> None:
    """What each worker's API said it created and deleted is what the database holds."""
    connection = await asyncpg.connect(database_url)
    try:
        for report in reports:
            held = await connection.fetchval(
                "SELECT count(*) FROM tasks JOIN users ON users.id = tasks.user_id WHERE users.email = $1",
                report["email"],
            )
            assert report["creates"] > 0 and report["deletes"] > 0
            assert held == report["creates"] - report["deletes"], report["email"]
    finally:
        await connection.close()


async def assert_clean_servers(bouncer: pgb.PgBouncer) -> dict[int, list[str]]:
    found = await pgb.prepared_statements_on_servers(bouncer)
    assert found, "pgbouncer holds no server connection: the traffic did not go through it"
    assert len(found) <= bouncer.pool_size
    leftovers = {pid: names for pid, names in found.items() if names}
    assert not leftovers, f"prepared statements left on pooled server connections: {leftovers}"
    return found


def queries_through(bouncer: pgb.PgBouncer) -> int:
    return bouncer.stats().get("total_query_count", 0)


async def assert_proof(name: str, reports, pgbouncer, queries_before: int, database_url: str) -> None:
    """What both proofs must show: enough concurrent, mixed traffic, no error, all of it through pgbouncer,
    every write landed, and no prepared statement left on the pooled server connections."""
    summary = totals(reports)
    print(f"{name} proof:", summary, "seconds:", run_seconds(reports))
    assert summary["errors"] == 0, summary["samples"]
    assert summary["requests"] >= MIN_REQUESTS and summary["processes"] >= MIN_PROCESSES
    assert_mixed(reports, summary)
    assert ran_concurrently(reports)
    # Every request ran at least one statement, and all of them went through pgbouncer.
    assert queries_through(pgbouncer) - queries_before >= summary["requests"]
    await assert_writes_landed(database_url, reports)
    await assert_clean_servers(pgbouncer)


async def test_lambda_handler_through_the_pooler(pgbouncer, database_url, tmp_path):
    env = app_environment(pgbouncer.url(), database_url, pooler_guard=True, pool="null")
    before = queries_through(pgbouncer)
    reports = run_workers(["lambda"], MIN_PROCESSES, -(-MIN_REQUESTS // MIN_PROCESSES), env, tmp_path)
    await assert_proof("lambda", reports, pgbouncer, before, database_url)


async def test_uvicorn_through_the_pooler(pgbouncer, database_url, tmp_path):
    env = app_environment(pgbouncer.url(), database_url, pooler_guard=True, pool="queue")
    before = queries_through(pgbouncer)
    clients = MIN_PROCESSES + 1
    with uvicorn_server(env, tmp_path / "uvicorn.log", workers=2) as server:
        reports = run_workers(["http", server.url], clients, -(-MIN_REQUESTS // clients), env, tmp_path / "load")
    await assert_proof("uvicorn", reports, pgbouncer, before, database_url)


@pytest.mark.parametrize("guard", [False, True], ids=["naive-settings-fail", "guard-on-passes"])
async def test_the_guard_is_what_makes_the_difference(fresh_pgbouncer, database_url, tmp_path, guard):
    """The app's own engine, 3 processes, a pooler configured like the others: only DB_POOLER differs."""
    env = app_environment(fresh_pgbouncer.url(), database_url, pooler_guard=guard, pool="null")
    reports = run_workers(["engine"], MIN_PROCESSES, 60, env, tmp_path)
    summary = totals(reports)
    types = {name for report in reports for name in report["error_types"]}
    found = await pgb.prepared_statements_on_servers(fresh_pgbouncer)
    left = sum(len(names) for names in found.values())
    print("engine run:", {"guard": guard, "error_types": sorted(types), "left": left} | summary)
    if guard:
        assert summary["errors"] == 0, summary["samples"]
        assert left == 0
    else:
        assert summary["errors"] > 0, "the naive settings should break behind a transaction pooler"
        assert types & {"DuplicatePreparedStatementError", "InvalidSQLStatementNameError"}, summary["samples"]
        assert left > 0, "named statements stay behind on the server connections"
