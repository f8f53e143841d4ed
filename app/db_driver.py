"""The one place that reaches below SQLAlchemy's and asyncpg's public APIs, for the versions checked here.

Things the public APIs do not offer:
- a dialect that answers SQLAlchemy's first-connect questions from the server's startup report, closes a
  connection without waiting for the server's goodbye, and pings in one round trip (`TaskApiDialect`);
- whether an idle connection's socket has something to say (`socket_has_news`): after a Lambda sandbox thaws,
  the server's goodbye (pg_terminate_backend's FATAL message, a pooler's or server's close) sits unread in the
  kernel's buffer, and the event loop has not looked yet;
- SCRAM's key derivation done once per process instead of once per connection (`scram_keys_remembered`).

The dialect is a subclass registered under its own driver name (SQLAlchemy's public dialect registry), so no
method of SQLAlchemy's own dialect is replaced. The overridden hooks are not public API: importing this module
with versions outside the ones below fails at once instead of misbehaving quietly.
"""

from __future__ import annotations

import contextvars
import hashlib
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import asyncpg.protocol.protocol
import sqlalchemy
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine.interfaces import IsolationLevel
from sqlalchemy.util import await_only

# Series whose hooks below were read and tested; a new series has to be read again before it is allowed here.
SQLALCHEMY_SERIES = ("2.0.", "2.1.")
ASYNCPG_SERIES = ("0.32.",)
DRIVER_NAME = "postgresql+taskapi_asyncpg"

if not sqlalchemy.__version__.startswith(SQLALCHEMY_SERIES) or not asyncpg.__version__.startswith(ASYNCPG_SERIES):
    raise ImportError(
        f"app/db_driver.py was written for SQLAlchemy {'/'.join(SQLALCHEMY_SERIES)}x and asyncpg "
        f"{'/'.join(ASYNCPG_SERIES)}x, found SQLAlchemy {sqlalchemy.__version__} and asyncpg {asyncpg.__version__}: "
        "check the dialect hooks, Connection._transport and the protocol module's hashlib there, then add the series"
    )


def driver_connection(dbapi_connection: Any) -> asyncpg.Connection:
    """The asyncpg connection under SQLAlchemy's adapted DBAPI connection (public: AdaptedConnection)."""
    return dbapi_connection.driver_connection


class TaskApiDialect(PGDialect_asyncpg):
    """SQLAlchemy's asyncpg dialect, minus the round trips it spends that the app does not need.

    - First connect: SQLAlchemy asks the server for its version, the current schema, the isolation level and
      standard_conforming_strings: four statements, ~8 round trips on every Lambda cold start. PostgreSQL
      already reports `server_version` and `standard_conforming_strings` at startup (asyncpg keeps them); our
      connections run READ COMMITTED (the driver sends the level with BEGIN) and the app never reflects, so the
      default schema is only a label. Migrations use their own, unmodified engine (alembic/env.py).
    - Close: asyncpg's `close()` sends Terminate and waits for the server to hang up: one round trip at the end
      of every request on a fresh connection. `terminate()` (asyncpg >= 0.32) sends the same Terminate and drops
      the socket, as libpq's PQfinish does. SQLAlchemy has already reset the connection by then.
    - New connection: SQLAlchemy's asyncpg dialect registers json and jsonb codecs on every connection it opens
      (two trips through its greenlet bridge, and a pool `connect` listener run for every connection), for column
      types this schema has none of; tests/test_models.py fails when one appears, so that this is revisited.
    - Ping (DB_POOL=queue's pre-ping): one simple-protocol `SELECT 1` instead of `;` inside BEGIN/ROLLBACK; a
      simple Query uses no prepared statement, so it is as safe behind a transaction pooler. Not `;`: asyncpg
      0.32 fails on the EmptyQueryResponse of a simple query.
    """

    supports_statement_cache = True  # only hooks change; SQL compilation is the parent's, cacheable as before

    def on_connect(self) -> Any:
        if self._native_inet_types is False:  # an engine option this app does not set: keep the parent's hook
            return super().on_connect()
        return None  # no json/jsonb codecs to register (see the class docstring)

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        version = driver_connection(connection.connection.dbapi_connection).get_server_version()
        return (version.major, version.minor)

    def _get_default_schema_name(self, connection: Any) -> str:
        return "public"

    def get_default_isolation_level(self, dbapi_conn: Any) -> IsolationLevel:
        return "READ COMMITTED"

    def _set_backslash_escapes(self, connection: Any) -> None:
        settings = driver_connection(connection.connection.dbapi_connection).get_settings()
        self._backslash_escapes = settings.standard_conforming_strings == "off"

    def do_close(self, dbapi_connection: Any) -> None:
        dbapi_connection.rollback()  # no I/O unless a transaction is still open
        driver_connection(dbapi_connection).terminate()

    def do_ping(self, dbapi_connection: Any) -> bool:
        try:
            await_only(driver_connection(dbapi_connection).execute("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - translated to the DBAPI error the pool recognises
            dbapi_connection._handle_exception(error)
        return True


registry.register(DRIVER_NAME.replace("+", "."), __name__, "TaskApiDialect")


def socket_has_news(connection: asyncpg.Connection) -> bool:
    """True when an idle connection is closed or its socket is readable: either way, not worth reusing.

    Costs one zero-timeout poll, no round trip. An idle PostgreSQL session sends nothing unprompted except its
    goodbye (a FATAL ErrorResponse, then EOF), and a pooler that drops a client just closes the socket; data
    that arrived while the sandbox was frozen is still in the kernel's buffer, readable here.
    """
    if connection.is_closed():
        return True
    transport = connection._transport  # asyncpg keeps its asyncio transport here (checked versions above)
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


# --- SCRAM's salted password, derived once per process -----------------------------------------------------
#
# Every SCRAM-SHA-256 login derives SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations): 4096
# iterations, ~0.85 ms of CPU, on every fresh connection (DB_POOL=null opens one per invocation). The salt and
# the iteration count are the role's, the same at every login until its password is set again, so the result is
# the same every time. asyncpg 0.32's compiled protocol module derives it with `hashlib.pbkdf2_hmac(...)` through
# its module global `hashlib` (scram.pyx, included in asyncpg.protocol.protocol); that global is replaced by
# `_RememberingHashlib`, which hands back an earlier result for the same (password, salt, iterations).
#
# Safe because:
# - the key is all of PBKDF2's inputs: a new salt or iteration count (ALTER ROLE ... PASSWORD) or another
#   password is a miss, derived afresh; a wrong password's proof is still refused by the server;
# - the value is password-equivalent for SCRAM and lives in the same process memory as the password itself
#   (the settings; a SnapStart snapshot holds both alike); nothing is written anywhere, logged or sent; at most
#   `_SCRAM_KEYS` entries;
# - only connections opened inside `scram_keys_remembered()` (the app's connector, app.db.connect_to) use it:
#   any other asyncpg user in the process derives the key as asyncpg does. asyncpg runs the derivation in the
#   connection's protocol callback, which runs in the context the connection was opened in (the event loop copies
#   it when it creates the transport; asyncio's loop and uvloop alike), so a context variable tells the two apart;
# - everything else the protocol module takes from `hashlib` (`sha256` is bound at import, `md5` for MD5 logins,
#   `pbkdf2_hmac` with other arguments) passes through to hashlib unchanged.
_SCRAM_KEYS = 4
_remember_scram_keys: contextvars.ContextVar[bool] = contextvars.ContextVar("remember_scram_keys", default=False)


class _RememberingHashlib:
    """The `hashlib` asyncpg's protocol module sees: hashlib, with SCRAM's PBKDF2 remembered (see above)."""

    def __init__(self) -> None:
        self._salted_passwords: dict[tuple[bytes, bytes, int], bytes] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)

    def pbkdf2_hmac(
        self, hash_name: str, password: bytes, salt: bytes, iterations: int, dklen: int | None = None
    ) -> bytes:
        if hash_name != "sha256" or dklen is not None or not _remember_scram_keys.get():
            return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, dklen)
        key = (bytes(password), bytes(salt), iterations)
        salted = self._salted_passwords.get(key)
        if salted is None:
            salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
            if len(self._salted_passwords) >= _SCRAM_KEYS:
                del self._salted_passwords[next(iter(self._salted_passwords))]  # the oldest
            self._salted_passwords[key] = salted
        return salted

    def forget(self) -> None:
        self._salted_passwords.clear()


if getattr(asyncpg.protocol.protocol, "hashlib", None) is not hashlib:
    raise ImportError("asyncpg's protocol module no longer derives SCRAM keys through `hashlib`: read scram.pyx again")
scram_keys = _RememberingHashlib()
asyncpg.protocol.protocol.hashlib = scram_keys


@contextmanager
def scram_keys_remembered() -> Iterator[None]:
    """Connections opened inside derive each (password, salt, iterations)'s SCRAM key once per process."""
    token = _remember_scram_keys.set(True)
    try:
        yield
    finally:
        _remember_scram_keys.reset(token)
