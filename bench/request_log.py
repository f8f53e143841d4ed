"""What the request-log middleware (app/observability.py) costs per request, in-process.

    python bench/request_log.py [--requests 2000] [--rounds 5]

Calls the app's ASGI stack directly (no HTTP client, no server, no database: `GET /api/v1/health` and a
`/api/v1/tasks/{task_id}` 401) with and without RequestLogMiddleware, alternating rounds, and prints the
microseconds per request of each (best round, the figure least disturbed by other processes on a shared
machine, and the median) and the difference. With the middleware, every line is formatted as JSON and written
to /dev/null, so formatting and the write are in the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DATABASE_URL", "postgresql://bench:bench@127.0.0.1:9/bench")  # never connected to

from fastapi import FastAPI  # noqa: E402

from app.main import app  # noqa: E402
from app.observability import JsonFormatter, RequestLogMiddleware  # noqa: E402

PATHS = ["/api/v1/health", "/api/v1/tasks/123e4567-e89b-12d3-a456-426614174000"]


def scope_for(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 1),
    }


async def run_round(stack, requests: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    started = time.perf_counter()
    for index in range(requests):
        await stack(scope_for(PATHS[index % len(PATHS)]), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    root = logging.getLogger()
    root.handlers[:] = []
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    sink.setFormatter(JsonFormatter())
    root.addHandler(sink)
    root.setLevel(logging.INFO)

    bare = FastAPI.build_middleware_stack(app)  # the stack FastAPI builds, without our outer layer
    logged = RequestLogMiddleware(bare)
    await run_round(logged, 200)  # warm both (route compilation, first imports)
    await run_round(bare, 200)
    timings: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.rounds):
        timings["without"].append(await run_round(bare, args.requests))
        timings["with"].append(await run_round(logged, args.requests))
    print(f"{args.requests} requests x {args.rounds} rounds, us/request (paths: {', '.join(PATHS)})")
    print(f"  {'':24}{'best':>8}{'median':>8}")
    for name, key in (("without the middleware", "without"), ("with the middleware", "with")):
        print(f"  {name:24}{min(timings[key]):8.1f}{statistics.median(timings[key]):8.1f}")
    best = min(timings["with"]) - min(timings["without"])
    median = statistics.median(timings["with"]) - statistics.median(timings["without"])
    print(f"  {'overhead':24}{best:8.1f}{median:8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
