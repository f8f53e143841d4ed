"""CPU per request on every endpoint, in-process through the Lambda handler, and where the list request's goes.

    python bench/cpu.py [--requests 200] [--rounds 5] [--pool queue] [--profile-requests 300]

Each endpoint is invoked through `app.handler.handler` (Mangum) with API Gateway HTTP API 2.0 events, the way
Lambda invokes it, in a worker process of its own. With `--pool queue` (the default) the connection is kept
between invocations, so the figures are the CPU of our code and the libraries it calls, not of a connection
setup (bench/roundtrips.py and the warm-invocation bench measure that). CPU is the process's CPU time
(`time.process_time`) over `--requests` invocations, the median of `--rounds` rounds; anything an invocation
needs set up first (a task to change, a user to delete) is made before the timed loop, on another connection.

Login and register run with argon2 replaced by a stand-in that returns at once: their hash is deliberately
slow, costs the same whatever the code around it does, and bench/login_timing.py measures it.

Then the list request is profiled with cProfile counting CPU time, and each function's own time is put in
the layer its module belongs to (a C function's, such as a socket send, and a generic stdlib helper's, such as
typing.get_origin, in its caller's layer). The shares
are scaled to the unprofiled CPU per request, since the profiler's own overhead inflates the totals.

Exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import PYTHON, ROOT, bench_database_url, ensure_bench_user, migrate, p50, run, table  # noqa: E402

LIST = "GET /tasks?tag=x"
SKIPPED = {"GET /tasks?tag=x (naive)"}
# Layers, by where a function's code lives; the first match wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("Mangum (event to ASGI and back)", ("/mangum/",)),
    ("FastAPI and Starlette (routing, dependencies, parameters)", ("/fastapi/", "/starlette/", "/anyio/")),
    ("JSON serialization", ("to_json", "/json/")),
    ("pydantic (validation)", ("/pydantic/", "/pydantic_core/", "validate_python", "SchemaValidator")),
    ("SQLAlchemy: statement build, compile, cache key", ("/sqlalchemy/sql/",)),
    ("SQLAlchemy: execution, pool, rows", ("/sqlalchemy/", "/greenlet/", "greenlet")),
    ("asyncpg (driver, protocol, codecs)", ("/asyncpg/",)),
    ("JWT (PyJWT, HMAC)", ("/jwt/", "hmac", "_hashlib", "/hashlib")),
    ("app code (app/)", ("/app/",)),
    ("event loop and sockets (asyncio)", ("/asyncio/", "selectors", "socket", "epoll")),
]
OTHER = "other (stdlib: logging, uuid, datetime, ...)"
# Generic stdlib helpers (typing.get_origin, isinstance checks through abc, enum flags, context managers): their
# time is their caller's, like a C function's.
HELPERS = ("/typing.py", "/abc.py", "<frozen abc>", "/enum.py", "/contextlib.py", "/functools.py", "/inspect.py")
HELPERS += ("/_collections_abc.py", "<frozen _collections_abc>", "/types.py", "/dataclasses.py", "/copy.py")


def layer_of(filename: str, name: str) -> str | None:
    """The layer of a function, or None for a C function (its caller's layer is used)."""
    where = f"{filename}:{name}"
    if any(helper in filename for helper in HELPERS):
        return None
    if filename == "~":
        for layer, marks in LAYERS:
            if any(mark in name for mark in marks if not mark.startswith("/")):
                return layer
        return None
    for layer, marks in LAYERS:
        if any(mark in where for mark in marks):
            return layer
    return OTHER


def layered(stats: Any) -> dict[str, float]:
    """Own CPU time per layer (seconds) from a pstats.Stats."""
    raw = stats.stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    totals: dict[str, float] = {}

    def owner(func: tuple[str, int, str], depth: int = 0) -> str:
        layer = layer_of(func[0], func[2])
        if layer is not None or depth > 5:
            return layer or OTHER
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        if not callers:
            return OTHER
        heaviest = max(callers.items(), key=lambda item: item[1][2])[0]
        return owner(heaviest, depth + 1)

    for func, (_, _, tottime, _, callers) in raw.items():
        if layer_of(func[0], func[2]) is None and callers:
            # A C function or a helper: split its time among its callers' layers by what each call edge spent.
            edge_total = sum(edge[2] for edge in callers.values()) or 1.0
            for caller, edge in callers.items():
                layer = owner(caller)
                totals[layer] = totals.get(layer, 0.0) + tottime * edge[2] / edge_total
            continue
        layer = owner(func)
        totals[layer] = totals.get(layer, 0.0) + tottime
    return totals


# --- the worker: a process of its own, configured before `app` is imported --------------------------------


def _stand_in_argon2() -> None:
    import app.api.routes.auth as auth_routes

    auth_routes.hash_password = lambda password: "stand-in hash"  # type: ignore[assignment]
    auth_routes.verify_password = lambda password, hashed: hashed is not None  # type: ignore[assignment]


def worker(url: str, pool: str, requests: int, rounds: int, profile_requests: int) -> dict[str, Any]:
    os.environ.update(
        DATABASE_URL=url,
        DATABASE_URL_DIRECT=url,
        ENVIRONMENT="local",
        DB_POOL=pool,
        AUTH_RATE_LIMIT_ATTEMPTS="1000000",
    )
    import cProfile
    import pstats

    from bench._common import LambdaContext, lambda_handler
    from bench.endpoints import ENDPOINTS, Endpoint, available

    handler = lambda_handler()
    _stand_in_argon2()
    context = LambdaContext()
    figures: dict[str, Any] = {}
    # The floor of Mangum + FastAPI: no database, no token.
    for endpoint in [*ENDPOINTS, Endpoint("GET /health", "GET", "/api/v1/health", auth=False)]:
        if endpoint.name in SKIPPED or not available(endpoint):
            continue

        def events(count: int, endpoint=endpoint) -> list[dict[str, Any]]:
            return [endpoint.event(run(endpoint.prepare(url)) if endpoint.prepare else {}) for _ in range(count)]

        for event in events(5):  # warm: first connection, statements prepared, lazy imports done
            status = handler(event, context)["statusCode"]
        if status not in endpoint.expect:
            raise SystemExit(f"{endpoint.name} answered {status}")
        samples = []
        for _ in range(rounds):
            batch = events(requests)
            started = time.process_time()
            for event in batch:
                handler(event, context)
            samples.append((time.process_time() - started) * 1000 / requests)
        figures[endpoint.name] = {"cpu_ms": p50(samples), "status": status}

    list_endpoint = next(e for e in ENDPOINTS if e.name == LIST)
    batch = [list_endpoint.event({}) for _ in range(profile_requests)]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for event in batch:
        handler(event, context)
    profiler.disable()
    layers = layered(pstats.Stats(profiler))
    total = sum(layers.values())
    ordered = sorted(layers.items(), key=lambda item: -item[1])
    figures["layers"] = {layer: seconds / total * figures[LIST]["cpu_ms"] for layer, seconds in ordered}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="invocations per endpoint and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", default="queue", choices=["queue", "null"])
    parser.add_argument("--profile-requests", type=int, default=300)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the database URL
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.pool, args.requests, args.rounds, args.profile_requests)))
        return 0

    url = bench_database_url()
    migrate(url)
    run(ensure_bench_user(url))
    command = [PYTHON, str(Path(__file__).resolve()), "--worker", url, "--pool", args.pool]
    command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
    command += ["--profile-requests", str(args.profile_requests)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    layers = figures.pop("layers")
    print(f"CPU per invocation through the Lambda handler, DB_POOL={args.pool}, median of {args.rounds} rounds:\n")
    print(table(["endpoint", "status", "CPU ms"], [[name, f["status"], f["cpu_ms"]] for name, f in figures.items()]))
    print(f"\nWhere the CPU of `{LIST}` goes (cProfile, own time per layer, scaled to the figure above):\n")
    print(table(["layer", "CPU ms"], [[layer, ms] for layer, ms in layers.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
