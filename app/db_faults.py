"""What can go wrong between the app and its database, and which of it is worth retrying.

Connecting is retried (see app.db.open_connection) only on errors that mean "not yet": nothing listens, the
server is starting or restarting, it is full, or Neon's proxy could not reach a compute that is waking up.
What retrying cannot fix (a wrong password, an unknown role or database) fails at the first attempt.
A statement is never retried: once it has been sent it may have written, whatever happened next.

Neon's proxy answers every error of its own with SQLSTATE XX000 (proxy/src/stream.rs: `throw_error` writes
`SQLSTATE_INTERNAL_ERROR` for all of them, "TODO: either preserve the error code from postgres, or assign
error codes to proxy errors"), so its errors are told apart by their message. Messages from
neondatabase/neon proxy/src/compute.rs (COULD_NOT_CONNECT), proxy/src/control_plane/errors.rs and
messages.rs, and Neon's "Connection errors" page.
"""

from __future__ import annotations

import enum
import random
import ssl
from collections.abc import Callable, Iterator

import asyncpg

from app.observability import exception_chain


class DatabaseUnavailable(Exception):
    """No connection could be opened within DB_CONNECT_TIMEOUT, retries included. The last error is chained.

    `lasting`: the server answered and refused us for a reason that retrying cannot fix (credentials, role or
    database name): an operator has to act.
    """

    def __init__(self, attempts: int, *, lasting: bool = False) -> None:
        super().__init__(f"no database connection after {attempts} attempt(s)")
        self.attempts = attempts
        self.lasting = lasting


class ServerCertificateUntrusted(DatabaseUnavailable):
    """The server's TLS certificate failed verification (a man in the middle, the wrong host, or a trust store
    without the right CA): lasting, never retried. The message gives the host and OpenSSL's reason only (no
    certificate contents), and is safe to log."""

    def __init__(self, attempts: int, host: str, reason: str) -> None:
        super().__init__(attempts, lasting=True)
        self.host = host
        self.reason = reason
        self.args = (f"certificate verify failed for host {host}: {reason}",)


def connect_failed(attempts: int, failure: ConnectFailure, error: BaseException, host: str) -> DatabaseUnavailable:
    """The DatabaseUnavailable a connector raises (from `error`) when it gives up."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return ServerCertificateUntrusted(attempts, host, error.verify_message or "certificate verify failed")
    return DatabaseUnavailable(attempts, lasting=failure is ConnectFailure.lasting)


class StatementTimeout(Exception):
    """A statement ran past DB_COMMAND_TIMEOUT. asyncpg has sent the server a CancelRequest for it, and the
    connection was discarded rather than handed to the next request."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__(f"statement timed out after {seconds} s")
        self.seconds = seconds


class ConnectionLost(Exception):
    """The connection died once a statement had been sent, and it was not sent again. `wrote`: the statement
    could write, so the change may or may not have been saved (a read just failed)."""

    def __init__(self, wrote: bool) -> None:
        super().__init__("the database connection was lost during a " + ("write" if wrote else "read"))
        self.wrote = wrote


# The errors a connection that died (while idle, or under a statement) raises on its next use.
CONNECTION_GONE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.AdminShutdownError)


def caused_by(error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """Whether `error`, the driver error SQLAlchemy wrapped in it (`orig`), or what either was raised from, is
    one of `kinds`."""
    return any(isinstance(item, kinds) for item in exception_chain(error, "orig", "__cause__"))


# The app's own database errors: the only ones answered 503 or 504 (app/errors.py).
DATABASE_ERRORS: tuple[type[Exception], ...] = (DatabaseUnavailable, StatementTimeout, ConnectionLost)

# A pooler that does not keep protocol-level prepared statements (PgBouncer < 1.21) answers a Bind of a named
# statement on a server connection that never saw its Parse with 26000, or a Parse whose name is taken there
# with 42P05. Either way the statement was not executed.
NAMED_STATEMENT_REFUSED = (asyncpg.InvalidSQLStatementNameError, asyncpg.DuplicatePreparedStatementError)


class ConnectFailure(enum.Enum):
    retry = "not yet: worth another attempt"
    lasting = "refused for good: retrying cannot help"
    fail = "a database error we do not know to be transient: not retried"


# SQLSTATEs of a server that is starting, stopping or full.
RETRYABLE_SQLSTATES = frozenset(
    {
        "57P03",  # cannot_connect_now: "the database system is starting up" (also shutting down, in recovery)
        "57P01",  # admin_shutdown: a compute restarting (Neon's maintenance, scale to zero)
        "57P02",  # crash_shutdown
        "53300",  # too_many_connections (also "for role")
        "53000",  # insufficient_resources
    }
)
# Class 08 (connection exception) is retried too, except 08P01, which PgBouncer uses for everything it says.
# Refusals that stay refusals: credentials, pg_hba, unknown role (28000), unknown database, no CONNECT right.
LASTING_SQLSTATES = frozenset({"28P01", "28000", "3D000", "42501"})

# Neon's proxy (XX000) and PgBouncer (08P01) messages that mean "not yet".
RETRYABLE_MESSAGES = (
    "couldn't connect to compute node",  # the proxy could not reach the compute (it is waking up)
    "the database system is starting up",  # the compute's own 57P03, forwarded by the proxy as XX000
    "the database system is not yet accepting connections",
    "failed to acquire permit to connect to the database",  # too many connection attempts in flight
    "pgbouncer cannot connect to server",
    "server login has been failing",
    "no more connections allowed",  # max_client_conn: a full pooler, like 53300
)
# Neon's proxy (XX000) messages that mean "not ever, until someone fixes it".
LASTING_MESSAGES = (
    "password authentication failed",
    "does not exist",  # role or database
    "endpoint cannot be found",
    "endpoint is disabled",
    "the endpoint id is not specified",
)


def _message(error: BaseException) -> str:
    return str(getattr(error, "message", None) or error).lower()


def classify_connect_error(error: BaseException) -> ConnectFailure | None:
    """How a failed connection attempt should be treated; None for errors that are not about the database
    (a bug: they propagate as they are)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return ConnectFailure.lasting  # the wrong host or a broken trust store: the next attempt sees the same
    if isinstance(error, ConnectionError) and "rejected ssl upgrade" in _message(error):
        return ConnectFailure.lasting  # sslmode=require against a server without TLS
    if isinstance(error, OSError):  # refused, reset, unreachable, DNS, and TimeoutError (a subclass)
        return ConnectFailure.retry
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or ""
        message = _message(error)
        if sqlstate in LASTING_SQLSTATES or any(marker in message for marker in LASTING_MESSAGES):
            return ConnectFailure.lasting
        if sqlstate in RETRYABLE_SQLSTATES or (sqlstate.startswith("08") and sqlstate != "08P01"):
            return ConnectFailure.retry
        if any(marker in message for marker in RETRYABLE_MESSAGES):
            return ConnectFailure.retry
        return ConnectFailure.fail
    if isinstance(error, asyncpg.InterfaceError):  # e.g. the server hung up in the middle of the handshake
        return ConnectFailure.retry
    return None


def backoff_delays(first: float = 0.05, cap: float = 1.0, rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Exponential backoff with jitter: nominal delays double from `first` up to `cap`, and each one is drawn
    from [0.5, 1.5) x nominal, so processes woken by the same outage do not retry in lockstep."""
    nominal = first
    while True:
        yield nominal * (0.5 + rng())
        nominal = min(nominal * 2, cap)
