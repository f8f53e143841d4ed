"""The development seed is idempotent and covers what the docs promise; bulk generation is exact."""

import subprocess
import sys

from tests.conftest import ROOT


def run_seed(database_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "seed_dev.py"), *args],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "ENVIRONMENT": "test"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def snapshot(db):
    return await db.fetch(
        "SELECT u.email, t.id, t.title, t.status, t.priority, t.tags, t.version, t.completed_at IS NOT NULL AS done "
        "FROM users u LEFT JOIN tasks t ON t.user_id = u.id ORDER BY u.email, t.id"
    )


async def test_seed_twice_gives_the_same_rows(db, database_url):
    run_seed(database_url)
    first = await snapshot(db)
    run_seed(database_url)
    assert await snapshot(db) == first
    tasks = await db.fetch(
        "SELECT t.* FROM tasks t JOIN users u ON u.id = t.user_id WHERE u.email = 'test@example.com'"
    )
    assert len(tasks) >= 5
    assert {t["priority"] for t in tasks} == {"low", "medium", "high", "urgent"}
    assert any(t["status"] == "done" for t in tasks)
    assert any(
        t["due_date"] is not None and t["status"] != "done" and t["due_date"].timestamp() < __import__("time").time()
        for t in tasks
    )
    assert len({tag for t in tasks for tag in t["tags"]}) >= 3


async def test_bulk_seed_is_exact_and_rerunnable(db, database_url):
    run_seed(database_url, "--users", "3", "--tasks", "500")
    run_seed(database_url, "--users", "3", "--tasks", "500")
    counts = await db.fetch(
        "SELECT u.email, count(t.id) AS n FROM users u JOIN tasks t ON t.user_id = u.id "
        "WHERE u.email LIKE 'bench-%' GROUP BY u.email"
    )
    assert sorted(r["n"] for r in counts) == [500, 500, 500]
    assert await db.fetchval("SELECT count(DISTINCT status) FROM tasks") == 3
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE tags @> ARRAY['x']") > 0
