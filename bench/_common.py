"""What the benchmarks share: the bench database, API Gateway events, the Lambda handler, tables.

Benchmarks never touch the development database: they run their own embedded PostgreSQL in `.data/bench-pg`
(fsync off; the data is disposable and regenerated on demand), or the server named by BENCH_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The app writes one JSON line per request at INFO: thousands of lines in a bench's output, and their cost (about
# 25 us a request, which bench/request_log.py measures on its own) in every figure. Benches and the servers they
# start (which inherit this environment) log warnings only, unless LOG_LEVEL says otherwise.
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Under Lambda the request line carries the CloudWatch metrics and is written whatever LOG_LEVEL says; the
# benches invoke the handler as Lambda does, so they turn it off too (bench/observability.py measures it).
os.environ.setdefault("EMF_METRICS", "off")

# `make bench-smoke` (bench/smoke.py): tiny data sets on a server of their own, so that the real bench data in
# .data/bench-pg is never replaced by the smoke run's few rows.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BENCH_DATA_DIR = ROOT / ".data" / ("bench-smoke-pg" if SMOKE else "bench-pg")
PYTHON = sys.executable

BENCH_USER_EMAIL = "bench-user@example.com"
BENCH_USER_ID = uuid.UUID("8d7f1a52-3c8e-4a8e-9b55-1f0c2d3e4a51")


def bench_database_url(database: str = "bench") -> str:
    """The `postgresql://` URL of a bench database (created if needed), on the bench server by default."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    os.environ.setdefault("EMBEDDED_PG_FAST", "1")
    from app.dev.embedded import ensure_running, free_port

    # Any free port (used only when starting it): 54329 belongs to `make dev`'s server.
    server = ensure_running(BENCH_DATA_DIR, port=free_port(), database=database)
    return server.url(database)


def migrate(url: str) -> None:
    """Bring the bench database to the head revision with the real migrations (a no-op when it is there)."""
    import subprocess

    env = {**os.environ, "DATABASE_URL": url, "DATABASE_URL_DIRECT": url, "ENVIRONMENT": "local"}
    subprocess.run(
        [PYTHON, str(ROOT / "scripts" / "alembic_cli.py"), "upgrade", "head"],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )


def seed(url: str, users: int, tasks: int) -> float:
    """Run scripts/seed_dev.py against `url`; returns its wall time in seconds."""
    import subprocess

    env = {**os.environ, "DATABASE_URL": url, "DATABASE_URL_DIRECT": url, "ENVIRONMENT": "local"}
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, str(ROOT / "scripts" / "seed_dev.py"), "--users", str(users), "--tasks", str(tasks)],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    return time.perf_counter() - started


async def ensure_bench_user(url: str, tasks: int = 60) -> None:
    """The user the round-trip benchmarks act as, with `tasks` tasks (every third tagged 'x')."""
    import asyncpg

    from app.security import hash_password

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO users (id, email, hashed_password, full_name) VALUES ($1, $2, $3, 'Bench') "
            "ON CONFLICT DO NOTHING",
            BENCH_USER_ID,
            BENCH_USER_EMAIL,
            hash_password("benchpassword"),
        )
        have = await connection.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", BENCH_USER_ID)
        if have < tasks:
            await connection.execute(
                """INSERT INTO tasks (user_id, title, priority, status, tags, created_at)
                   SELECT $1, 'Bench task ' || g, (ARRAY['low','medium','high','urgent'])[1 + g % 4], 'todo',
                          CASE WHEN g % 3 = 0 THEN ARRAY['x', 'work'] ELSE ARRAY['home'] END,
                          now() - g * interval '1 minute'
                   FROM generate_series($2::int + 1, $3::int) AS g""",
                BENCH_USER_ID,
                have,
                tasks,
            )
    finally:
        await connection.close()


def bench_token(user_id: uuid.UUID = BENCH_USER_ID) -> str:
    from app.security import create_access_token

    return create_access_token(user_id, minutes=600)


# --- API Gateway HTTP API (payload 2.0) events -----------------------------------------------------------


def http_api_event(
    method: str,
    path: str,
    query: dict[str, Any] | None = None,
    body: Any = None,
    token: str | None = None,
    form: bool = False,
) -> dict[str, Any]:
    """A payload-2.0 event shaped like a real captured one (powertools-ts apigw-http iam-auth.json)."""
    headers = {
        "accept": "application/json",
        "accept-encoding": "gzip, deflate",
        "host": "lsw1ro4ipb.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "bench/1.0",
        "x-amzn-trace-id": "Root=1-667058bd-3265707259baa0695cdc20c5",
        "x-forwarded-for": "15.248.3.126",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    raw_body = None
    if body is not None:
        if form:
            raw_body = urlencode(body)
            headers["content-type"] = "application/x-www-form-urlencoded"
        else:
            raw_body = json.dumps(body)
            headers["content-type"] = "application/json"
        headers["content-length"] = str(len(raw_body.encode()))
    if token:
        headers["authorization"] = f"Bearer {token}"
    raw_query = urlencode(query or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "lsw1ro4ipb",
            "domainName": "lsw1ro4ipb.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "lsw1ro4ipb",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "15.248.3.126",
                "userAgent": "bench/1.0",
            },
            "requestId": base64.b64encode(os.urandom(10)).decode(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "17/Jun/2024:15:39:41 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
    if raw_body is not None:
        event["body"] = raw_body
    return event


class LambdaContext:
    function_name = "task-api-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:task-api-bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def lambda_handler():
    """The project's Lambda entry point (app.handler.handler), or the same Mangum wrapping until it exists."""
    try:
        from app.handler import handler
    except ImportError:
        from mangum import Mangum

        from app.main import app

        handler = Mangum(app, lifespan="off")
    return handler


# --- tables ----------------------------------------------------------------------------------------------


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (readable on a terminal too)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def run(coro):
    """Run `coro` on a private event loop, leaving the thread's current loop (Mangum's) alone."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
