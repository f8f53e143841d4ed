"""`make dev`: start the embedded PostgreSQL (unless DATABASE_URL is set), migrate, seed, serve with reload."""

import os
import subprocess
import sys

import _bootstrap

HOST = "127.0.0.1"
# DEV_PORT moves the server off 8000 (tests/test_readme_commands.py runs `make dev` on a free port).
PORT = os.environ.get("DEV_PORT", "8000")


def main() -> int:
    server = _bootstrap.database_ready()
    env = {**os.environ}
    for step in ("init_db.py", "seed_dev.py"):
        subprocess.run([sys.executable, str(_bootstrap.ROOT / "scripts" / step)], check=True, env=env)

    from app.config import settings

    if server is not None:
        print(f"\nData lives in {server.data_dir} (kept across runs; `make db-stop` stops the server)")
    print(f"Database: {settings.database.safe_url}")
    print(f"API:      http://{HOST}:{PORT}/docs   (log in as test@example.com / devpassword)\n", flush=True)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--reload",
        "--host",
        HOST,
        "--port",
        PORT,
        "--reload-dir",
        str(_bootstrap.ROOT / "app"),
        # The app logs each request itself (a JSON line with its request id and route template); uvicorn's
        # access line would repeat it, with the raw query string. app/observability.py quiets it as well.
        "--no-access-log",
    ]
    try:
        return subprocess.call(command, env=env, cwd=_bootstrap.ROOT)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
