"""Mixed load through a transaction pooler: the run tests/pooler/test_load.py asserts on, with its figures printed.

    python bench/load.py [--requests 10000] [--concurrency 50] [--pools queue,null]

For each pool setting (queue: uvicorn as docker compose runs it; null: Lambda's NullPool), starts one uvicorn
process serving app.main:app with DB_POOLER=true behind a real pgbouncer in transaction mode (4 server
connections), and sends the mixed load of tests/pooler/mixed_load.py from this process (50 virtual users:
register, one login, then creates, gets, If-Match patches and deletes, filtered and paginated lists, tags,
users/me, health/db). Prints requests, errors by type, throughput, latency percentiles, the server's RSS (start,
half-way, end, peak) and the pgbouncer connections used.

Uses its own database `load` on the bench server (.data/bench-pg, emptied at each run) or BENCH_DATABASE_URL.
Needs pgbouncer (Debian/Ubuntu: apt-get install pgbouncer). Exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_database_url, migrate, table  # noqa: E402


async def empty_tables(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE users, tasks CASCADE")
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pools", default="queue,null", help="comma-separated DB_POOL values to run")
    args = parser.parse_args()

    from tests.pooler import pgbouncer as pgb
    from tests.pooler.load_run import run_mixed_load
    from tests.pooler.workers import app_environment

    if pgb.find_binary() is None:
        raise SystemExit(pgb.MISSING)
    url = bench_database_url("load")
    migrate(url)
    bouncer = pgb.start(url, auth_type="md5")  # md5 like the test's pooler: SCRAM would cost ~20 ms per login
    print(f"pgbouncer: {pgb.version(pgb.find_binary())}, transaction mode, {bouncer.pool_size} server connections")
    runs = []
    try:
        for pool in args.pools.split(","):
            asyncio.run(empty_tables(url))
            env = app_environment(bouncer.url(), url, pooler_guard=True, pool=pool, fast_hashing=False)
            with tempfile.TemporaryDirectory(prefix="bench-load-") as workdir:
                run = asyncio.run(
                    run_mixed_load(env, bouncer, url, Path(workdir), total=args.requests, concurrency=args.concurrency)
                )
            runs.append(run)
            for sample in run.report.error_samples:
                print(f"  error (DB_POOL={pool}): {sample}")
    finally:
        bouncer.stop()

    figures = [run.figures() for run in runs]
    steps = figures[0]["steps"]
    for figure in figures:
        del figure["steps"], figure["pool"]  # the steps are printed once below, the pool is in the header
    print(f"\n{args.requests} mixed requests at concurrency {args.concurrency}, uvicorn (1 process) -> pgbouncer\n")
    print(
        table(["figure", *(f"DB_POOL={run.pool}" for run in runs)], [[k, *(f[k] for f in figures)] for k in figures[0]])
    )
    print(f"\nrequests per step (first run): {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
