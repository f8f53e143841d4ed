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

# API Gateway HTTP API (payload 2.0) events, the format serverless.yml's httpApi sends, as the benchmarks build them.
from bench._common import LambdaContext, http_api_event  # noqa: E402


def main() -> int:
    os.environ["ENVIRONMENT"] = "production"
    os.environ["SECRET_KEY"] = secrets.token_hex(32)
    os.environ.setdefault("DB_APPLICATION_NAME", "task-api-smoke")
    from app.handler import handler

    context = LambdaContext()
    checks: list[tuple[str, int, int]] = []

    def call(name: str, expected: int, method: str, path: str, **event: Any) -> Any:
        response = handler(http_api_event(method, path, **event), context)
        checks.append((name, expected, response["statusCode"]))
        return json.loads(response["body"]) if response.get("body") else None

    health = call("GET /api/v1/health/db", 200, "GET", "/api/v1/health/db")
    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    token = (
        call("register", 201, "POST", "/api/v1/auth/register", body={"email": email, "password": secrets.token_hex(16)})
        or {}
    ).get("access_token")
    if token:
        call("create a task", 201, "POST", "/api/v1/tasks", body={"title": "smoke", "tags": ["smoke"]}, token=token)
        # Exactly once through the pooler: the same keyed create twice is one task, the second a replay.
        keyed = http_api_event("POST", "/api/v1/tasks", body={"title": "keyed", "tags": ["smoke"]}, token=token)
        keyed["headers"]["idempotency-key"] = f'"{uuid.uuid4()}"'
        first, again = handler(keyed, context), handler(keyed, context)
        checks.append(("create with an Idempotency-Key", 201, first["statusCode"]))
        checks.append(("the same create again", 201, again["statusCode"]))
        same_task = json.loads(again["body"]) == json.loads(first["body"])
        replayed = same_task and again.get("headers", {}).get("idempotent-replayed") == "true"
        checks.append(("... answered as the first, Idempotent-Replayed", 1, int(replayed)))
        page = call("list by tag", 200, "GET", "/api/v1/tasks", query={"tag": "smoke"}, token=token)
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
