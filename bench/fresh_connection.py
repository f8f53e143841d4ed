"""Where a DB_POOL=null invocation's database milliseconds go: CPU per fresh connection, piece by piece.

    python bench/fresh_connection.py [--repeats 200] [--rounds 5]

The list request's database work (`app.queries.tasks.list_tasks` on a LazyConnection, no FastAPI, no Mangum),
against what asyncpg alone needs for the same work, all on one event loop, in rounds that alternate the rows (the
median of the rounds is printed, as the machine's load drifts):
- asyncpg connect + close, and connect + terminate (what the app's dialect does at close);
- asyncpg connect, prepare and fetch the app's own list statement, terminate: the least a connection per
  invocation can cost for this request;
- the app's LazyConnection opened, `SELECT 1`, closed (SQLAlchemy's pool and connection wrappers);
- the app's list query on DB_POOL=null (a fresh connection) and on DB_POOL=single (the kept one).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_database_url, bench_token, ensure_bench_user, migrate, table  # noqa: E402
from bench.warm import app_statement  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    url = bench_database_url()
    migrate(url)
    asyncio.run(ensure_bench_user(url))

    import asyncpg
    from sqlalchemy import text

    import app.db
    from app.config import normalize_database_url, settings
    from app.models.task import TaskListQuery
    from app.queries import tasks as task_queries
    from app.security import read_access_token

    target = normalize_database_url(url)
    sql, parameters = app_statement(url)
    token = read_access_token(bench_token())
    query = TaskListQuery(tag=["x"], limit=20)
    engines = {
        mode: app.db.create_engine(target, settings.model_copy(update={"DB_POOL": mode})) for mode in ("null", "single")
    }

    async def connect_close() -> None:
        connection = await asyncpg.connect(url)
        await connection.close()

    async def connect_terminate() -> None:
        (await app.db.connect_to(target)).terminate()

    async def asyncpg_statement() -> None:
        connection = await app.db.connect_to(target)
        await (await connection.prepare(sql)).fetch(*parameters)
        connection.terminate()

    async def lazy_connection_only() -> None:
        connection = app.db.LazyConnection(engines["null"])
        try:
            await connection.execute(text("SELECT 1"))
        finally:
            await connection.close()

    def app_query(mode: str):
        async def run() -> None:
            connection = app.db.LazyConnection(engines[mode])
            try:
                await task_queries.list_tasks(connection, token, query)
            finally:
                await connection.close()

        return run

    rows = {
        "asyncpg connect + close (the warm bench's connect floor)": connect_close,
        "asyncpg connect + terminate": connect_terminate,
        "asyncpg connect + prepare + fetch the list statement + terminate": asyncpg_statement,
        "app: LazyConnection open, SELECT 1, close (DB_POOL=null)": lazy_connection_only,
        "app: list query, DB_POOL=null (fresh connection)": app_query("null"),
        "app: list query, DB_POOL=single (kept connection)": app_query("single"),
    }

    async def measure() -> dict[str, list[float]]:
        figures: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, work in rows.items():
                for _ in range(10):
                    await work()
                started = time.thread_time()
                for _ in range(args.repeats):
                    await work()
                figures[name].append((time.thread_time() - started) / args.repeats * 1000)
        for engine in engines.values():
            await engine.dispose()
        return figures

    figures = asyncio.run(measure())
    floor = statistics.median(next(iter(figures.values())))
    print(f"\nCPU ms per piece, median of {args.rounds} rounds of {args.repeats}\n")
    print(
        table(
            ("what", "CPU ms", "x connect + close", "rounds"),
            [
                (name, statistics.median(v), statistics.median(v) / floor, " ".join(f"{x:.2f}" for x in v))
                for name, v in figures.items()
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
