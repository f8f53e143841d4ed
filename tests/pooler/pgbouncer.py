"""A real PgBouncer in transaction mode in front of the test PostgreSQL, like Neon's `-pooler` endpoint.

Debian's pgbouncer 1.18 does not track protocol-level prepared statements at all (Neon runs 1.21+ with
`max_prepared_statements`), so code that passes through it passes through Neon's pooler too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from app.dev.embedded import bin_dir, free_port

if TYPE_CHECKING:
    from app.dev.certificates import KeyPair

MISSING = (
    "pgbouncer is not installed, so the tests through a transaction pooler cannot run: install it "
    "(Debian/Ubuntu: sudo apt-get install pgbouncer; macOS: brew install pgbouncer). "
    "CI installs it in .ci/run."
)
# Small on purpose: few server connections shared by many clients is what makes a pooler-unsafe driver fail.
POOL_SIZE = 4


def find_binary() -> str | None:
    # Debian installs it in /usr/sbin, which is not on a regular user's PATH.
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if os.access(path, os.X_OK)),
        None,
    )


def version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]


# The current pooler: PgBouncer 1.24 from Debian trixie's source, built by scripts/build_pgbouncer.sh (.ci/run
# builds it) into the cache folder below. It tracks protocol-level prepared statements, as Neon's pooler does.
CURRENT_MISSING = (
    "PgBouncer 1.24 is not built, so the tests through a pooler that keeps prepared statements cannot run: run "
    "scripts/build_pgbouncer.sh (CI does, in .ci/run)."
)
# Neon's published pooler setting.
NEON_MAX_PREPARED_STATEMENTS = 1000


def find_current_binary() -> str | None:
    cache = Path(os.environ.get("TASK_API_CACHE") or Path.home() / ".cache" / "task-api")
    binary = cache / "pgbouncer-1.24" / "bin" / "pgbouncer"
    return str(binary) if os.access(binary, os.X_OK) else None


def tracks_prepared_statements(binary: str) -> bool:
    """PgBouncer >= 1.21 can keep protocol-level prepared statements (max_prepared_statements)."""
    number = version(binary).split()[-1]
    major, minor = (int(part) for part in number.split(".")[:2])
    return (major, minor) >= (1, 21)


@dataclass
class PgBouncer:
    """A running pgbouncer. `url()` points at it; `admin()` runs a command on its admin console."""

    process: subprocess.Popen[bytes]
    workdir: Path
    port: int
    user: str
    password: str
    database: str
    pool_size: int
    binary: str = ""
    run_as: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def url(self, database: str | None = None) -> str:
        """The pooled URL (password included: pass it to processes, never print it)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database or self.database}"

    @property
    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def admin(self, command: str) -> list[dict[str, str]]:
        """Run a SHOW command on the admin console (simple query protocol only: psql, not asyncpg)."""
        result = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-X",
                "-q",
                "-A",
                "-F",
                "\t",
                "-P",
                "footer=off",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "pgbouncer",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "PGPASSWORD": self.password},
        )
        if result.returncode != 0:
            raise RuntimeError(f"pgbouncer admin {command!r} failed: {result.stderr.strip()}")
        lines = [line for line in result.stdout.splitlines() if line]
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]

    def servers(self) -> list[dict[str, str]]:
        """The server connections pgbouncer holds to PostgreSQL for the test database."""
        return [row for row in self.admin("SHOW SERVERS") if row["database"] == self.database]

    def stats(self) -> dict[str, int]:
        """Totals for the test database since pgbouncer started (zeros before its first client)."""
        row = next((row for row in self.admin("SHOW STATS") if row["database"] == self.database), {})
        return {key: int(value) for key, value in row.items() if key.startswith("total_")}

    def restart(self) -> None:
        """Stop the process (its clients' connections close) and start it again on the same port.

        SIGINT is the safe shutdown in every version (since 1.23 SIGTERM waits for every client to leave)."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        self.process = _launch(self.binary, self.workdir, self.run_as)
        _wait_listening(self)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def client_tls_settings(tls: KeyPair, workdir: Path) -> str:
    """pgbouncer.ini lines that make clients use TLS with `tls`'s certificate (copied into `workdir`, which
    pgbouncer's user owns)."""
    cert, key = workdir / "server.crt", workdir / "server.key"
    shutil.copyfile(tls.cert, cert)
    shutil.copyfile(tls.key, key)
    os.chmod(key, 0o600)
    return f"client_tls_sslmode = require\nclient_tls_cert_file = {cert}\nclient_tls_key_file = {key}\n"


def start(
    upstream_url: str,
    *,
    pool_size: int = POOL_SIZE,
    binary: str | None = None,
    auth_type: str = "scram-sha-256",
    settings: dict[str, str] | None = None,
    tls: KeyPair | None = None,
) -> PgBouncer:
    """Start pgbouncer in transaction mode in front of `upstream_url`'s server, on a free port of 127.0.0.1.

    Towards the server pgbouncer always logs in with SCRAM (the server requires it); `auth_type` is what it
    asks of its clients. A pgbouncer that can keep prepared statements (1.21+) keeps as many as Neon's does.
    `settings` adds or overrides [pgbouncer] settings (e.g. client_idle_timeout). With `tls` (a certificate and
    its key) it requires TLS of its clients, as Neon's endpoints do.
    """
    binary = binary or find_binary()
    if binary is None:
        raise FileNotFoundError(MISSING)
    extra = {}
    if tracks_prepared_statements(binary):
        extra["max_prepared_statements"] = str(NEON_MAX_PREPARED_STATEMENTS)
    extra.update(settings or {})
    upstream = make_url(upstream_url.replace("postgres://", "postgresql://", 1))
    user, password = upstream.username or "postgres", upstream.password or ""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="task-api-pgbouncer-"))
    os.chmod(workdir, 0o700)
    # The plain password lets pgbouncer answer the client's SCRAM exchange and run its own against the server
    # (a SCRAM secret from pg_authid works too, but needs a superuser to read it).
    (workdir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={upstream.host} port={upstream.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = {auth_type}\nauth_file = {workdir / 'userlist.txt'}\n"
        f"admin_users = {user}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\nmax_client_conn = 500\n"
        # Neon's pooler: the same defaults for what clients may send at startup.
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
        "log_connections = 0\nlog_disconnections = 0\n"
        + "".join(f"{key} = {value}\n" for key, value in extra.items())
        + (client_tls_settings(tls, workdir) if tls else "")
    )
    run_as = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        run_as = "nobody"  # pgbouncer refuses to run as root
        if not binary.startswith("/usr/"):
            # A binary built into root's cache folder is out of nobody's reach: run a copy from the workdir.
            binary = str(shutil.copy2(binary, workdir / "pgbouncer"))
        for path in (workdir, *workdir.iterdir()):
            shutil.chown(path, user=run_as)
    process = _launch(binary, workdir, run_as)
    bouncer = PgBouncer(
        process, workdir, port, user, password, upstream.database or "postgres", pool_size, binary, run_as
    )
    _wait_listening(bouncer)
    return bouncer


def _launch(binary: str, workdir: Path, run_as: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "-q", str(workdir / "pgbouncer.ini")],
        user=run_as,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_listening(bouncer: PgBouncer) -> None:
    process, port = bouncer.process, bouncer.port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log = bouncer.log
            bouncer.stop()
            raise RuntimeError(f"pgbouncer exited with code {process.returncode}: {stderr}\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not open port {port} within 10 s")


async def prepared_statements_on_servers(bouncer: PgBouncer) -> dict[int, list[str]]:
    """The named prepared statements on each server connection pgbouncer holds: {backend pid: [names]}.

    `pg_prepared_statements` only shows the current session's statements, so it has to be read on every server
    connection itself. Through the pooler, as many clients as there are server connections each hold a
    transaction open, which pins one distinct server connection to each; their backend pids must be exactly
    the `remote_pid`s SHOW SERVERS listed before and after, or the check did not look where it claims to.
    """
    import asyncpg

    listed = {int(row["remote_pid"]) for row in bouncer.servers()}
    if not listed:
        return {}
    connections = [await asyncpg.connect(bouncer.url(), statement_cache_size=0) for _ in listed]
    seen: dict[int, list[str]] = {}
    try:
        for connection in connections:
            # pgbouncer keeps this client's server connection until the transaction ends.
            await connection.execute("BEGIN")
        for connection in connections:
            row = await connection.fetchrow(
                "SELECT pg_backend_pid() AS pid, "
                "coalesce(array_agg(name::text ORDER BY name), '{}') AS names FROM pg_prepared_statements"
            )
            seen[row["pid"]] = list(row["names"])
        still_listed = {int(row["remote_pid"]) for row in bouncer.servers()}
    finally:
        for connection in connections:
            await connection.close()
    if set(seen) != listed or still_listed != listed:
        raise AssertionError(
            f"the probe reached server pids {sorted(seen)}, "
            f"pgbouncer listed {sorted(listed)} then {sorted(still_listed)}"
        )
    return seen
