"""The SQLAlchemy dialect: the stock `postgresql+asyncpg` one, with three documented `Dialect` methods
overridden through asyncpg's public calls. Each saves round trips a user waits for; none changes SQL.

- `initialize` (first connect of each process): the stock dialect asks the server for its version, its
  current schema, its isolation level and `standard_conforming_strings`, four statements of two round trips
  each on every cold start. PostgreSQL reports `server_version` and `standard_conforming_strings` at startup,
  and asyncpg keeps them (`get_server_version()`, `get_settings()`); our sessions run READ COMMITTED and the
  app never reflects, so the default schema is only a label. When the server reports non-standard strings,
  the stock queries run (the dialect must then escape backslashes, which only they configure).
- `do_close`: asyncpg's `close()` sends Terminate and waits for the server to hang up, a round trip at the end
  of every request on a fresh connection. `terminate()` sends the same Terminate and drops the socket, as
  libpq's PQfinish does.
- `do_ping` (DB_POOL=queue's pre-ping): one simple-protocol `SELECT 1`, one round trip, where the stock ping
  prepares `;` first (two behind a pooler, where no statement is cached). A failed ping returns False, which
  makes the pool open a fresh connection.

Registered under its own driver name in SQLAlchemy's public dialect registry: SQLAlchemy's own dialect is
left as it is (migrations use it, alembic/env.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

DRIVER_NAME = "postgresql+taskapi_asyncpg"
# What the server may report at startup for the dialect's class defaults to hold (they assume PostgreSQL 14+:
# jsonb subscripting, DROP INDEX CONCURRENTLY) and for no backslash escaping to be needed.
OLDEST_SERVER = 14


class TaskApiDialect(PGDialect_asyncpg):
    """SQLAlchemy's asyncpg dialect, minus the round trips it spends that the app does not need (module
    docstring)."""

    supports_statement_cache = True  # SQL compilation is the parent's, cacheable as before

    def initialize(self, connection: Any) -> None:
        driver: asyncpg.Connection = connection.connection.driver_connection
        version = driver.get_server_version()
        if version.major < OLDEST_SERVER or driver.get_settings().standard_conforming_strings != "on":
            super().initialize(connection)
            return
        self.server_version_info = (version.major, version.minor)
        self.default_schema_name = "public"
        self.default_isolation_level = "READ COMMITTED"
        self.supports_identity_columns = True
        self.supports_smallserial = True
        self.supports_virtual_generated_columns = version.major >= 18

    def do_close(self, dbapi_connection: Any) -> None:
        dbapi_connection.rollback()  # no I/O unless a transaction is still open
        dbapi_connection.driver_connection.terminate()

    def do_ping(self, dbapi_connection: Any) -> bool:
        async def ping(driver: asyncpg.Connection) -> bool:
            try:
                await driver.execute("SELECT 1")  # no arguments: the simple protocol, one round trip
            except Exception:
                # Whatever the reason (the socket is gone, or, just after pg_terminate_backend, asyncpg has read
                # the server's goodbye and raises InternalClientError before it notices the close), this
                # connection cannot serve the request: the pool opens a new one, whose errors are the real ones.
                return False
            return True

        return bool(dbapi_connection.run_async(ping))


registry.register(DRIVER_NAME.replace("+", "."), __name__, "TaskApiDialect")


async def closed_while_idle(driver: asyncpg.Connection) -> bool:
    """Whether a connection kept since an earlier request was closed meanwhile (by the server, the pooler, an
    idle timeout), without a round trip.

    After a Lambda sandbox thaws, the server's goodbye (pg_terminate_backend's FATAL message and EOF, or a
    pooler's close) sits unread in the socket's buffer: the event loop has not run since it arrived. Three
    turns of the loop let it deliver that (poll the socket, read the goodbye, then run asyncpg's
    connection_lost callback), after which asyncpg's public `is_closed()` knows. A few microseconds; with
    nothing to read, the turns do nothing. tests/aws_lambda/test_single_connection.py kills connections
    between invocations and checks that no request fails.
    """
    for _ in range(3):
        if driver.is_closed():
            return True
        await asyncio.sleep(0)
    return driver.is_closed()
