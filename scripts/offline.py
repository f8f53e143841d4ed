"""`make offline`: the API through the real Lambda handler (app.handler.handler) over HTTP (osls offline).

serverless-offline turns each HTTP request into an HTTP API payload 2.0 event, as API Gateway would, and hands
it to a long-lived Python process that imports app.handler once (like a warm Lambda sandbox). The database is
the embedded PostgreSQL unless DATABASE_URL is set; settings come from the environment, not SSM
(TASK_API_SETTINGS_FROM=local), so no AWS account is needed.

Replaces itself with osls (exec), so stopping this process's pid stops the emulator.
"""

import os
import subprocess
import sys

import _bootstrap

OSLS = _bootstrap.ROOT / "node_modules" / ".bin" / "osls"


def main() -> None:
    if not OSLS.exists():
        raise SystemExit("node_modules is missing: run `npm ci` (Node 20+)")
    _bootstrap.database_ready()
    subprocess.run([sys.executable, str(_bootstrap.ROOT / "scripts" / "init_db.py")], check=True)

    from app.config import settings

    env = {
        **os.environ,
        "TASK_API_SETTINGS_FROM": "local",
        # serverless-offline runs `python3` from PATH; VIRTUAL_ENV puts .venv's first.
        "VIRTUAL_ENV": str(_bootstrap.ROOT / ".venv"),
        # The database URL may come from .env, which serverless.yml's ${env:} cannot see.
        "DATABASE_URL": settings.DATABASE_URL.get_secret_value() if settings.DATABASE_URL else "",
        "SLS_TELEMETRY_DISABLED": "1",
    }
    # osls wants credentials to exist even though offline never calls AWS.
    env.setdefault("AWS_ACCESS_KEY_ID", "offline")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "offline")
    port = env.get("OFFLINE_HTTP_PORT", "3000")
    print(f"Database: {settings.database.safe_url}")
    print(f"API:      http://127.0.0.1:{port}/docs   (via app.handler.handler, payload 2.0)\n", flush=True)
    os.chdir(_bootstrap.ROOT)
    os.execvpe(str(OSLS), [str(OSLS), "offline", "start", "--stage", "dev"], env)


if __name__ == "__main__":
    main()
