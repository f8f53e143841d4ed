"""One load-generating process for the pooler proof (started by tests/pooler/test_proof.py).

    python -m tests.pooler.load http http://127.0.0.1:PORT --worker 1 --requests 300 --go GO --out OUT.json
    python -m tests.pooler.load lambda --worker 1 --requests 300 --go GO --out OUT.json
    python -m tests.pooler.load engine --worker 1 --requests 300 --go GO --out OUT.json

`http` sends requests to a running server, `lambda` invokes `app.handler.handler` in this process with API
Gateway HTTP API 2.0 events (one at a time, like a Lambda execution environment), `engine` runs statements on
the app's own engine. The database settings come from the environment (DATABASE_URL, DB_POOLER, DB_POOL).
Each worker registers its own user and works on its own tasks, so workers never depend on each other.
The process writes OUT.json.ready once set up, waits for GO to exist, runs, and writes OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

API = "/api/v1"
WAIT_FOR_GO_SECONDS = 60


class Result:
    def __init__(self) -> None:
        self.requests = 0
        self.by_step: Counter[str] = Counter()
        self.errors: list[str] = []
        self.error_count = 0
        self.error_types: Counter[str] = Counter()
        self.creates = 0
        self.deletes = 0

    def record(self, step: str, status: int, expected: int, detail: str = "") -> bool:
        self.requests += 1
        self.by_step[step] += 1
        if status == expected:
            return True
        self.error_count += 1
        self.error_types[f"HTTP {status}"] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{step}: {status} (expected {expected}) {detail[:200]}")
        return False


# Transports: (method, path, json body, headers) -> (status, parsed body).


class HttpTransport:
    def __init__(self, base_url: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=base_url, timeout=30)

    def __call__(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None):
        response = self.client.request(method, path, json=body, headers=headers)
        return response.status_code, (response.json() if response.content else None)


class LambdaTransport:
    def __init__(self) -> None:
        from app.handler import handler
        from tests.aws_lambda.support import FakeContext

        self.handler, self.context = handler, FakeContext()

    def __call__(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None):
        from tests.aws_lambda.support import adapt, response_json

        path, _, query = path.partition("?")
        params: dict[str, list[str]] = {}
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            params.setdefault(key, []).append(value)
        event = adapt(
            "awsdocs__event-v2.json",
            method,
            path,
            query=params,
            headers=headers,
            body=None if body is None else json.dumps(body),
            keep_stage=False,
        )
        response = self.handler(event, self.context)
        return response["statusCode"], response_json(response)


# Scenarios.


def has_task_api(call) -> bool:
    """Whether the app serves the task routes (asked over the transport: HTTP workers never import it)."""
    status, schema = call("GET", "/openapi.json")
    return status == 200 and f"{API}/auth/register" in schema["paths"]


def task_scenario(call, worker: int, total: int, result: Result) -> dict[str, Any]:
    """Register, then cycle through writes (create, update, delete) and reads (get, list, tags, health)."""
    email = f"load-{worker}-{uuid.uuid4().hex[:8]}@example.com"
    status, body = call("POST", f"{API}/auth/register", body={"email": email, "password": "load-test-password-1"})
    if not result.record("register", status, 201, json.dumps(body)):
        return {"email": email}
    auth = {"authorization": f"Bearer {body['access_token']}"}
    tag = f"w{worker}"
    task_ids: list[str] = []
    step = 0
    while result.requests < total:
        kind = step % 7
        step += 1
        if kind == 0 or not task_ids:
            status, body = call(
                "POST",
                f"{API}/tasks",
                headers=auth,
                body={
                    "title": f"load task {step}",
                    "priority": ["low", "medium", "high", "urgent"][step % 4],
                    "tags": [tag, f"n{step % 3}"],
                },
            )
            if result.record("create", status, 201, json.dumps(body)):
                task_ids.append(body["id"])
                result.creates += 1
        elif kind == 1:
            status, body = call("GET", f"{API}/tasks/{task_ids[-1]}", headers=auth)
            result.record("get", status, 200, json.dumps(body))
        elif kind == 2:
            status, body = call("PATCH", f"{API}/tasks/{task_ids[-1]}", headers=auth, body={"status": "done"})
            result.record("update", status, 200, json.dumps(body))
        elif kind == 3:
            status, body = call("GET", f"{API}/tasks?tag={tag}&limit=20", headers=auth)
            result.record("list", status, 200, json.dumps(body))
        elif kind == 4:
            status, body = call("GET", f"{API}/tags", headers=auth)
            result.record("tags", status, 200, json.dumps(body))
        elif kind == 5 and len(task_ids) > 1:
            status, body = call("DELETE", f"{API}/tasks/{task_ids[0]}", headers=auth)
            if result.record("delete", status, 204, json.dumps(body)):
                task_ids.pop(0)
                result.deletes += 1
        else:
            status, body = call("GET", f"{API}/health/db")
            result.record("health_db", status, 200, json.dumps(body))
    return {"email": email, "tag": tag}


def health_scenario(call, worker: int, total: int, result: Result) -> dict[str, Any]:
    """Without the task routes: readiness (a statement through the pooler) and liveness."""
    while result.requests < total:
        status, body = call("GET", f"{API}/health/db")
        result.record("health_db", status, 200, json.dumps(body))
    return {}


def engine_scenario(worker: int, total: int, result: Result) -> dict[str, Any]:
    """Statements with parameters on the app's engine: each one is prepared by asyncpg (named or unnamed)."""
    from sqlalchemy import text

    from app.db import engine

    statements = [
        (text("SELECT count(*) FROM users WHERE email = :email"), {"email": f"nobody-{worker}@example.com"}),
        (text("SELECT count(*) FROM tasks WHERE priority = :priority"), {"priority": "high"}),
        (text("SELECT CAST(:a AS integer) + 1 AS total"), {"a": worker}),
    ]

    async def run() -> None:
        for index in range(total):
            statement, params = statements[index % len(statements)]
            result.requests += 1
            try:
                async with engine.connect() as connection:
                    await connection.execute(statement, params)
            except Exception as error:  # noqa: BLE001 - counting every failure is the point
                original = getattr(error, "orig", None)
                cause = getattr(original, "__cause__", None) or original or error
                result.error_count += 1
                result.error_types[type(cause).__name__] += 1
                if len(result.errors) < 10:
                    result.errors.append(f"{type(cause).__name__}: {str(cause)[:200]}")
        await engine.dispose()

    asyncio.run(run())
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["http", "lambda", "engine"])
    parser.add_argument("base_url", nargs="?")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--go", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    call = HttpTransport(args.base_url) if args.mode == "http" else LambdaTransport() if args.mode == "lambda" else None
    scenario = "engine" if args.mode == "engine" else "tasks" if has_task_api(call) else "health"
    Path(f"{args.out}.ready").write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_FOR_GO_SECONDS
    while not args.go.exists():
        if time.monotonic() > deadline:
            print("no go signal", file=sys.stderr)
            return 2
        time.sleep(0.01)

    result = Result()
    started = time.time()
    if scenario == "engine":
        extra = engine_scenario(args.worker, args.requests, result)
    elif scenario == "tasks":
        extra = task_scenario(call, args.worker, args.requests, result)
    else:
        extra = health_scenario(call, args.worker, args.requests, result)
    args.out.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "mode": args.mode,
                "scenario": scenario,
                "started": started,
                "finished": time.time(),
                "requests": result.requests,
                "by_step": result.by_step,
                "error_count": result.error_count,
                "error_types": result.error_types,
                "errors": result.errors,
                "creates": result.creates,
                "deletes": result.deletes,
                **extra,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
