"""What a Neon wake-up costs a request: time to a connection when the first N attempts are refused "not yet".

    python bench/wakeup.py [--failures 0,1,2,3,4,5,6] [--repeat 9] [--budget 5]

The app's own connection setup (app.db.open_connection: exponential backoff with jitter inside DB_CONNECT_TIMEOUT)
connects through tests/support/fake_postgres.py's FakeEndpoint, which answers the first N attempts with Neon's
"Couldn't connect to compute node" (SQLSTATE XX000, as its proxy sends it) and then pipes to a real
PostgreSQL. Also: how long a database that never wakes takes to become a 503 (DatabaseUnavailable).

Prints a table (p50 and max over the repeats); exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("ENVIRONMENT", "local")

from bench._common import bench_database_url, p50, table  # noqa: E402


async def time_to_connection(url: str, failures: int, budget: float) -> tuple[float, int, bool]:
    from app.config import normalize_database_url, settings
    from app.db import create_engine, open_connection
    from app.db_faults import DatabaseUnavailable
    from tests.support.fake_postgres import FORWARD, PgError, endpoint_for, url_through

    refusal = PgError("XX000", "Couldn't connect to compute node")
    endpoint = endpoint_for(url, script=[refusal] * failures, default=refusal if failures < 0 else FORWARD)
    target = normalize_database_url(url_through(url, endpoint))
    engine = create_engine(target, settings.model_copy(update={"DB_CONNECT_TIMEOUT": budget, "DB_POOL": "null"}))
    try:
        started = time.perf_counter()
        try:
            connection = await open_connection(engine)
        except DatabaseUnavailable:
            return time.perf_counter() - started, len(endpoint.logins()), False
        elapsed = time.perf_counter() - started
        await connection.close()
        return elapsed, len(endpoint.logins()), True
    finally:
        await engine.dispose()
        endpoint.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failures", default="0,1,2,3,4,5,6", help="refused attempts before the compute answers")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--budget", type=float, default=5.0, help="DB_CONNECT_TIMEOUT (the default is 5 s)")
    args = parser.parse_args(argv)
    url = bench_database_url()
    rows = []
    for failures in [int(n) for n in args.failures.split(",")] + [-1]:
        repeat = args.repeat if failures >= 0 else min(args.repeat, 3)  # each of those takes the whole budget
        runs = [asyncio.run(time_to_connection(url, failures, args.budget)) for _ in range(repeat)]
        seconds = [run[0] * 1000 for run in runs]
        rows.append(
            [
                "never wakes" if failures < 0 else str(failures),
                "503" if not runs[0][2] else "connected",
                f"{p50(seconds):.0f}",
                f"{max(seconds):.0f}",
                str(max(run[1] for run in runs)),
            ]
        )
    print(f"DB_CONNECT_TIMEOUT = {args.budget:g} s, {args.repeat} runs each (3 for never wakes)")
    print(table(["refused attempts", "outcome", "p50 ms", "max ms", "attempts (max)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
