"""Warm Lambda invocations: CPU and round trips per `GET /api/v1/tasks?tag=x&limit=20` (20 rows), per DB_POOL.

    python bench/warm.py [--invocations 300]

In one process, as a warm Lambda sandbox runs them: app.handler.handler called with HTTP API 2.0 events on the
thread's one event loop (Mangum keeps it). For `null`, `single` and `queue` against the server directly, and
`single` through PgBouncer 1.24 (scripts/build_pgbouncer.sh) configured like Neon's pooler. Every database
connection goes through scripts/rtt_proxy.py (no delay), which counts the round trips an invocation waits for.

Against two floors measured in the same run, on the same loop:
- a bare asyncpg connect + close with SCRAM (what a connection per invocation cannot avoid);
- the app's own statement on an open connection with its prepared statement cached, the rows to JSON.

CPU is `time.thread_time()` of the thread that runs the invocations (client, driver and app; not the counting
proxy's thread, nor the server or the pooler), averaged over the invocations after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    LambdaContext,
    bench_database_url,
    bench_token,
    ensure_bench_user,
    http_api_event,
    lambda_handler,
    migrate,
    table,
)

WARMUP = 20


def proxied(url: str, proxy) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def run_mode(
    loop: asyncio.AbstractEventLoop, url: str, mode: str, pooler: bool, invocations: int
) -> tuple[float, float]:
    """(CPU ms, round trips) per warm invocation with the app's engine in DB_POOL=`mode`, via a counting proxy."""
    from sqlalchemy.engine import make_url

    import app.db
    from app.config import normalize_database_url, settings
    from scripts.rtt_proxy import RttProxy

    target = make_url(url)
    proxy = RttProxy(target.host or "127.0.0.1", target.port or 5432).start()
    cfg = settings.model_copy(update={"DB_POOL": mode})
    engine = app.db.create_engine(normalize_database_url(proxied(url, proxy), force_pooler=pooler), cfg)
    previous, app.db.engine = app.db.engine, engine
    handler, context = lambda_handler(), LambdaContext()
    event = http_api_event("GET", "/api/v1/tasks", query={"tag": "x", "limit": 20}, token=bench_token())
    try:
        for _ in range(WARMUP):
            response = handler(event, context)
            assert response["statusCode"] == 200, response
            assert len(json.loads(response["body"])["items"]) == 20
        # Let the last close reach the proxy before counting starts.
        loop.run_until_complete(asyncio.sleep(0.05))
        trips_before = proxy.round_trips_so_far()
        cpu_before = time.thread_time()
        for _ in range(invocations):
            handler(event, context)
        cpu = (time.thread_time() - cpu_before) / invocations * 1000
        loop.run_until_complete(asyncio.sleep(0.05))
        trips = (proxy.round_trips_so_far() - trips_before) / invocations
    finally:
        loop.run_until_complete(engine.dispose())
        app.db.engine = previous
        proxy.stop()
    return cpu, trips


def app_statement(url: str) -> tuple[str, Any]:
    """The SQL text and parameters the app sends for the list request (captured from one invocation)."""
    from sqlalchemy import event

    import app.db
    from app.config import normalize_database_url, settings

    seen: list[tuple[str, Any]] = []
    engine = app.db.create_engine(normalize_database_url(url), settings.model_copy(update={"DB_POOL": "null"}))
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda c, cur, sql, params, ctx, many: seen.append((sql, params))
    )
    previous, app.db.engine = app.db.engine, engine
    try:
        request = http_api_event("GET", "/api/v1/tasks", query={"tag": "x", "limit": 20}, token=bench_token())
        assert lambda_handler()(request, LambdaContext())["statusCode"] == 200
    finally:
        app.db.engine = previous
    (statement,) = seen
    return statement


def floors(loop: asyncio.AbstractEventLoop, url: str, invocations: int) -> tuple[float, float]:
    """(bare connect + close, cached statement + rows to JSON), CPU ms each."""
    import asyncpg

    sql, params = app_statement(url)

    async def connect_close() -> None:
        connection = await asyncpg.connect(url)
        await connection.close()

    async def statement() -> float:
        connection = await asyncpg.connect(url)
        try:
            prepared = await connection.prepare(sql)
            for _ in range(WARMUP):
                await prepared.fetch(*params)
            started = time.thread_time()
            for _ in range(invocations):
                rows = await prepared.fetch(*params)
                # The page's statement asks for one row past the page (is there a next page?) and sends 20.
                assert len(rows) >= 20, len(rows)
                json.dumps([dict(row) for row in rows[:20]], default=str)
            return (time.thread_time() - started) / invocations * 1000
        finally:
            await connection.close()

    for _ in range(WARMUP):
        loop.run_until_complete(connect_close())
    started = time.thread_time()
    for _ in range(invocations):
        loop.run_until_complete(connect_close())
    bare = (time.thread_time() - started) / invocations * 1000
    return bare, loop.run_until_complete(statement())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=300)
    args = parser.parse_args()

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the proxy's tasks cancelled at its stop
    url = bench_database_url()
    migrate(url)
    asyncio.run(ensure_bench_user(url))
    handler = lambda_handler()  # Mangum takes the thread's loop; every invocation below runs on it
    loop = asyncio.get_event_loop()
    del handler

    from tests.pooler import pgbouncer as pgb

    bare, statement = floors(loop, url, args.invocations)
    rows = []
    figures: dict[str, tuple[float, float]] = {}
    for mode in ("null", "single", "queue"):
        figures[mode] = run_mode(loop, url, mode, False, args.invocations)
    current = pgb.find_current_binary()
    bouncer = pgb.start(url, binary=current) if current else None
    try:
        if bouncer is not None:
            figures["single via PgBouncer 1.24"] = run_mode(loop, bouncer.url(), "single", True, args.invocations)
        else:
            print("PgBouncer 1.24 is not built (scripts/build_pgbouncer.sh): its row is left out", file=sys.stderr)
    finally:
        if bouncer is not None:
            bouncer.stop()
    for name, (cpu, trips) in figures.items():
        rows.append((f"DB_POOL={name}", cpu, f"{trips:.2f}", cpu / statement, cpu / bare))
    rows.append(("floor: asyncpg connect + close (SCRAM)", bare, "-", bare / statement, 1.0))
    rows.append(("floor: cached statement, 20 rows to JSON", statement, "-", 1.0, statement / bare))
    print(f"\n{args.invocations} warm invocations each, GET /api/v1/tasks?tag=x&limit=20 (20 rows)\n")
    print(table(("what", "CPU ms/invocation", "round trips", "x statement floor", "x connect floor"), rows))

    single_cpu, single_trips = figures["single"]
    null_cpu = figures["null"][0]
    checks = [
        ("single CPU <= 0.2x null", single_cpu / null_cpu, 0.2),
        ("single CPU <= 6x the statement floor", single_cpu / statement, 6.0),
        ("single round trips <= 2", single_trips, 2.0),
        ("null CPU <= 1.5x connect + close", null_cpu / bare, 1.5),
    ]
    if "single via PgBouncer 1.24" in figures:
        checks.append(("single via PgBouncer 1.24: 1 round trip", figures["single via PgBouncer 1.24"][1], 1.0))
    print()
    print(table(("target", "measured", "bound", "met"), [(n, v, b, "yes" if v <= b else "NO") for n, v, b in checks]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
