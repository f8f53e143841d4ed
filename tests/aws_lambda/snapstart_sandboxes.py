"""SnapStart's lifecycle with real processes: init, snapshot, two restored sandboxes (run by test_snapstart.py).

    python -m tests.aws_lambda.snapstart_sandboxes [--no-restore-hooks]

The database settings come from the environment (the test session's). Prints one JSON object: what the
"snapshot" process held, and what each sandbox saw and made.

- Init: import app.handler, then one real request that opens a connection (with DB_POOL=queue the pool keeps
  it), as an init that touched the database would; then the before-snapshot hooks, run the way the Lambda
  runtime runs them (awslambdaric's runner, from what app.handler registered with snapshot_restore_py).
- Snapshot and restore: fork() twice. A VM snapshot restores memory as it was, but fork() has habits a restore
  has not, which each child undoes first: the `random` module reseeds itself in a forked child (an at-fork
  hook; Lambda runs none), so the child puts back the state the snapshot had; and the epoll instance of
  Mangum's event loop is one kernel object shared by both children (a restored VM has its own copy), so each
  child gets a loop of its own.
- Each sandbox then runs the after-restore hooks (unless --no-restore-hooks: the control), and is invoked with
  real API Gateway payloads. Its first invocation runs under an audit hook that records every module load.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import ssl
import sys
import uuid
from itertools import islice
from typing import Any

from tests.aws_lambda.support import FakeContext, adapt, response_header, response_json

V2 = "powertools__apiGatewayProxyV2Event.json"


def invoke(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, FakeContext())


def server_pids(engine: Any) -> list[int]:
    """Record the server pid of every connection the engine opens from now on (asyncpg's public API)."""
    from sqlalchemy import event

    pids: list[int] = []

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        pids.append(dbapi_connection.driver_connection.get_server_pid())

    event.listen(engine.sync_engine, "connect", on_connect)
    return pids


def sandbox(token: str, run_restore_hooks: bool, snapshot_random_state: Any) -> dict[str, Any]:
    random.setstate(snapshot_random_state)  # as restored from the snapshot (see the module docstring)
    asyncio.set_event_loop(asyncio.new_event_loop())
    from awslambdaric import lambda_runtime_hooks_runner

    import app.db
    from app.db_faults import backoff_delays
    from app.handler import handler
    from app.main import app as fastapi_app

    if run_restore_hooks:
        lambda_runtime_hooks_runner.run_after_restore()
    pids = server_pids(app.db.engine)
    builds: list[int] = []
    build = fastapi_app.build_middleware_stack

    def counting_build() -> Any:
        builds.append(1)
        return build()

    fastapi_app.build_middleware_stack = counting_build  # type: ignore[method-assign]

    imports: list[str] = []
    recording = True

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if recording and event == "import":
            imports.append(str(args[0]))

    modules_before = len(sys.modules)
    sys.addaudithook(audit)
    first = invoke(handler, adapt(V2, "GET", "/api/v1/tasks", headers={"authorization": f"Bearer {token}"}))
    recording = False
    modules_after = len(sys.modules)

    created = invoke(
        handler,
        adapt(
            V2,
            "POST",
            "/api/v1/tasks",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            body=json.dumps({"title": "made in a sandbox"}),
        ),
    )
    # Without a Lambda context and an X-Request-ID, the app makes the request id itself.
    anonymous = adapt(V2, "GET", "/api/v1/health")
    anonymous["headers"].pop("x-request-id", None)
    health = handler(anonymous, None)
    return {
        "pid": os.getpid(),
        "first_status": first["statusCode"],
        "first_imports": imports,
        "first_modules_added": modules_after - modules_before,
        "first_app_builds": len(builds),
        "created_status": created["statusCode"],
        "server_pids": pids,
        "unique": {
            "random.random": random.random(),
            "backoff jitter": list(islice(backoff_delays(), 4)),
            "OpenSSL RAND_bytes": ssl.RAND_bytes(16).hex(),
            "uuid4": str(uuid.uuid4()),
            "secrets.token_hex": secrets.token_hex(16),
            "generated request id": response_header(health, "x-request-id"),
            "created task id": (response_json(created) or {}).get("id"),
            **statement_names(),
        },
    }


def statement_names() -> dict[str, str]:
    """With DB_POOL=single, the name this sandbox gives its next prepared statement."""
    import app.db

    statements = app.db.engine_retries.get(app.db.engine)
    return {"prepared statement name": statements.next_name()} if statements is not None else {}


def main(argv: list[str]) -> None:
    run_restore_hooks = "--no-restore-hooks" not in argv
    token = os.environ["SNAPSTART_TEST_TOKEN"]
    from awslambdaric import lambda_runtime_hooks_runner

    import app.db
    from app.handler import handler

    init_pids = server_pids(app.db.engine)
    init_request = invoke(handler, adapt(V2, "GET", "/api/v1/health/db"))
    lambda_runtime_hooks_runner.run_before_snapshot()
    pool = app.db.engine.sync_engine.pool
    snapshot = {
        "init_status": init_request["statusCode"],
        "init_server_pids": init_pids,
        "pool_status_at_snapshot": pool.status(),
        "connections_held_at_snapshot": pool.checkedin() + pool.checkedout() if hasattr(pool, "checkedin") else 0,
        "middleware_stack_built": app.main.app.middleware_stack is not None,
        "openapi_built": app.main.app.openapi_schema is not None,
    }
    snapshot_random_state = random.getstate()

    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                result = sandbox(token, run_restore_hooks, snapshot_random_state)
            except BaseException as error:  # reported, not swallowed: the test shows it
                result = {"error": repr(error)}
            with os.fdopen(write, "w") as out:
                json.dump(result, out)
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    sandboxes = []
    for pid, read in children:
        with os.fdopen(read) as pipe:
            sandboxes.append(json.loads(pipe.read() or '{"error": "no output"}'))
        os.waitpid(pid, 0)
    print(json.dumps({"snapshot": snapshot, "sandboxes": sandboxes}))


if __name__ == "__main__":
    import app.main  # noqa: F401 - for snapshot["middleware_stack_built"]

    main(sys.argv[1:])
