"""Smoke-test the app against DATABASE_URL through the Lambda handler, as a deployed function would run.

    DATABASE_URL=<pooled URL> python scripts/smoke_api.py

Used by scripts/ci_preview.sh on a preview branch's pooled URL. Settings are production's (a random
SECRET_KEY, TLS required for a remote host) and DB_POOL is left to its default, `auto`, so a `-pooler` URL
(or DB_POOLER=true) runs the kept connection exactly as Lambda would. One user registers, creates a task, and
another with an Idempotency-Key twice (one task, then a replay), lists them by tag and deletes the account again
(its tasks go with it): the branch is left as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def event(
    method: str, path: str, body: Any = None, token: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, the format serverless.yml's httpApi sends."""
    headers = {"host": "smoke.invalid", "content-type": "application/json", **(extra or {})}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": path.partition("?")[2],
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path.partition("?")[0], "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


class LambdaContext:
    aws_request_id = "smoke"
    function_name = "task-api-smoke"
    memory_limit_in_mb = 1024

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


def main() -> int:
    os.environ["ENVIRONMENT"] = "production"
    os.environ["SECRET_KEY"] = secrets.token_hex(32)
    os.environ.setdefault("DB_APPLICATION_NAME", "task-api-smoke")
    from app.handler import handler

    context = LambdaContext()
    checks: list[tuple[str, int, int]] = []

    def call(name: str, expected: int, *args: Any, **kwargs: Any) -> Any:
        response = handler(event(*args, **kwargs), context)
        checks.append((name, expected, response["statusCode"]))
        return json.loads(response["body"]) if response.get("body") else None

    health = call("GET /api/v1/health/db", 200, "GET", "/api/v1/health/db")
    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    token = (
        call("register", 201, "POST", "/api/v1/auth/register", {"email": email, "password": secrets.token_hex(16)})
        or {}
    ).get("access_token")
    if token:
        call("create a task", 201, "POST", "/api/v1/tasks", {"title": "smoke", "tags": ["smoke"]}, token)
        # Exactly once through the pooler: the same keyed create twice is one task, the second a replay.
        keyed = event(
            "POST",
            "/api/v1/tasks",
            {"title": "keyed", "tags": ["smoke"]},
            token,
            {"idempotency-key": f'"{uuid.uuid4()}"'},
        )
        first, again = handler(keyed, context), handler(keyed, context)
        checks.append(("create with an Idempotency-Key", 201, first["statusCode"]))
        checks.append(("the same create again", 201, again["statusCode"]))
        same_task = json.loads(again["body"]) == json.loads(first["body"])
        replayed = same_task and again.get("headers", {}).get("idempotent-replayed") == "true"
        checks.append(("... answered as the first, Idempotent-Replayed", 1, int(replayed)))
        page = call("list by tag", 200, "GET", "/api/v1/tasks?tag=smoke", token=token)
        checks.append(("the list holds the two tasks", 2, len((page or {}).get("items", []))))
        call("delete the account", 204, "DELETE", "/api/v1/users/me", token=token)
        call("warm request after the first ones", 200, "GET", "/api/v1/health/db")

    from app.config import choose_pool, settings

    print(f"pool: {choose_pool(settings.DB_POOL, settings.database).reason}")
    if isinstance(health, dict):
        print(f"database revision: {health.get('database_revision')}")
    failed = [c for c in checks if c[1] != c[2]]
    for name, expected, got in checks:
        print(f"{'ok  ' if expected == got else 'FAIL'} {name}: {got} (expected {expected})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
