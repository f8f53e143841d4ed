"""The engine and the request-scoped database dependency.

Built once at import with no I/O: importing the app with an unreachable database host succeeds, and the
first connection is opened by the first request that needs one.

On Lambda every invocation opens a fresh connection (NullPool; a real pool cannot be shared across Mangum's
event loop and frozen execution environments), so what matters is round trips per request:
- connection setup is bounded (`DB_CONNECT_TIMEOUT`) and retried briefly, for a Neon compute waking up;
- SQLAlchemy's four first-connect queries are answered from what the server reports at startup;
- closing a connection sends Terminate and drops the socket without waiting for the server to hang up;
- with DB_POOL=queue, the checkout ping is one round trip (not BEGIN; ; ROLLBACK);
- every route's work is one statement, run in autocommit (no BEGIN/COMMIT round trips) via
  `autocommit_connection`.

Statements are bounded by `DB_COMMAND_TIMEOUT` on the client: asyncpg sends the server a CancelRequest (it
goes through PgBouncer too) and the request gets a 504 (app/errors.py). That guard dies with a frozen or
killed Lambda; the server-side one is the role's own setting, which PgBouncer and Neon's pooler accept (a
`statement_timeout` startup parameter they reject), e.g. `ALTER ROLE app SET statement_timeout = '20s'`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only

from app.config import DatabaseTarget, Environment, Settings, settings
from app.db_faults import ConnectFailure, DatabaseUnavailable, StatementTimeout, backoff_delays, classify_connect_error

logger = logging.getLogger("app.db")

# The engine's DB_COMMAND_TIMEOUT, carried as a (user-defined) execution option, for StatementTimeout's message.
COMMAND_TIMEOUT_OPTION = "task_api_command_timeout"
# Below this, an attempt cannot even finish a TCP handshake plus a login: not worth starting.
MIN_ATTEMPT_SECONDS = 0.05


def asyncpg_connect_kwargs(target: DatabaseTarget, cfg: Settings) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect` (everything but the address and credentials)."""
    kwargs: dict[str, Any] = {
        "timeout": cfg.DB_CONNECT_TIMEOUT,
        "command_timeout": cfg.DB_COMMAND_TIMEOUT,
        # PgBouncer (Neon's pooler) accepts application_name but rejects most other startup parameters, so
        # server-side timeouts belong in SET LOCAL or on the role, not here.
        "server_settings": {"application_name": cfg.DB_APPLICATION_NAME},
        **target.connect_args,
    }
    if target.behind_pooler:
        # Transaction pooling hands each statement to any server connection: named prepared statements
        # would collide (DuplicatePreparedStatementError). With the cache off asyncpg uses unnamed ones.
        kwargs["statement_cache_size"] = 0
    return kwargs


async def connect_to(
    target: DatabaseTarget, cfg: Settings = settings, *, database: str | None = None, timeout: float | None = None
) -> asyncpg.Connection:
    """One asyncpg connection to `target` (or to another `database` on the same server), no retries.

    The engine's connector and the scripts (seed, init, backup, restore) all connect through here.
    """
    url = target.url
    kwargs = asyncpg_connect_kwargs(target, cfg)
    if timeout is not None:
        kwargs["timeout"] = timeout
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=database or url.database,
        **kwargs,
    )


def make_connector(target: DatabaseTarget, cfg: Settings) -> Callable[[], Awaitable[asyncpg.Connection]]:
    """An `async_creator` that connects with retries, all within `DB_CONNECT_TIMEOUT` in total.

    Only "not yet" errors are retried (app.db_faults.classify_connect_error), after exponentially growing,
    jittered delays. Every way of failing ends in DatabaseUnavailable, with the last error chained: the
    handler answers 503 (app.errors), and a connect timeout is never mistaken for a statement timeout.
    """
    budget = cfg.DB_CONNECT_TIMEOUT

    async def connect() -> asyncpg.Connection:
        deadline = time.monotonic() + budget
        delays = backoff_delays()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await connect_to(target, cfg, timeout=max(deadline - time.monotonic(), MIN_ATTEMPT_SECONDS))
            except Exception as error:
                failure = classify_connect_error(error)
                if failure is None:
                    raise  # not about the database: a bug, shown as such
                delay = next(delays)
                if failure is not ConnectFailure.retry or deadline - time.monotonic() < delay + MIN_ATTEMPT_SECONDS:
                    raise DatabaseUnavailable(attempts, lasting=failure is ConnectFailure.lasting) from error
                # The type and SQLSTATE only: messages can name hosts and users.
                logger.info(
                    "database connect attempt %d failed (%s %s); retrying in %.2f s",
                    attempts,
                    type(error).__name__,
                    getattr(error, "sqlstate", ""),
                    delay,
                )
                await asyncio.sleep(delay)

    return connect


def answer_first_connect_from_startup(dialect: Dialect) -> None:
    """Skip SQLAlchemy's per-process first-connect queries; the answers are already known.

    On its first connection SQLAlchemy asks the server for its version, the current schema, the isolation
    level and standard_conforming_strings: four statements, ~8 round trips on every Lambda cold start.
    PostgreSQL already reports `server_version` and `standard_conforming_strings` in the startup packet
    (asyncpg keeps them); our connections always run READ COMMITTED (SQLAlchemy's asyncpg driver sends the
    level explicitly with BEGIN) and the app never reflects, so the default schema is only a label.
    Migrations use their own, unmodified engine (alembic/env.py), where reflection does need the truth.
    """

    def driver_connection(connection: Any) -> asyncpg.Connection:
        return connection.connection.dbapi_connection.driver_connection

    def server_version_info(connection: Any) -> tuple[int, ...]:
        version = driver_connection(connection).get_server_version()
        return (version.major, version.minor)

    def set_backslash_escapes(connection: Any) -> None:
        conforming = driver_connection(connection).get_settings().standard_conforming_strings
        dialect._backslash_escapes = conforming == "off"  # type: ignore[attr-defined]

    dialect._get_server_version_info = server_version_info  # type: ignore[method-assign]
    dialect._get_default_schema_name = lambda connection: "public"  # type: ignore[method-assign]
    dialect.get_default_isolation_level = lambda dbapi_connection: "READ COMMITTED"  # type: ignore[method-assign, assignment]
    dialect._set_backslash_escapes = set_backslash_escapes  # type: ignore[attr-defined]


def close_without_waiting(dialect: Dialect) -> None:
    """Close connections the way libpq's PQfinish does: send Terminate and drop the socket, no waiting.

    asyncpg's `Connection.close()` sends Terminate and then waits for the server to close its side: one full
    round trip at the end of every request on a fresh connection, for nothing. `Connection.terminate()` sends
    the same Terminate message and closes the socket at once (asyncpg >= 0.32), so the server ends the session
    normally, without an "unexpected EOF" in its log. By the time the pool closes a connection SQLAlchemy has
    already reset it (rolled back any transaction), so nothing is left on the server to wait for.
    """

    def do_close(dbapi_connection: Any) -> None:
        dbapi_connection.rollback()  # no I/O unless a transaction is still open
        dialect.get_driver_connection(dbapi_connection).terminate()

    dialect.do_close = do_close  # type: ignore[method-assign]


def ping_in_one_round_trip(dialect: Dialect) -> None:
    """Make the pool's pre-ping (DB_POOL=queue) one simple-protocol `SELECT 1`: one round trip, not three.

    SQLAlchemy's asyncpg ping runs `;` inside BEGIN ... ROLLBACK when the connection is not in autocommit (it
    never is at checkout), so that PgBouncer in transaction mode sees the prepared statement and its execution
    on one server connection. A simple Query message ('Q', what asyncpg's `execute()` without arguments sends)
    uses no prepared statement at all, so it is just as safe behind a pooler and costs one round trip.
    Errors go through the adapter's translation, so the pool still recognises a dead connection and
    reconnects.
    """

    def do_ping(dbapi_connection: Any) -> bool:
        try:
            # Not ";": asyncpg 0.32 fails on the EmptyQueryResponse of a simple query.
            await_only(dialect.get_driver_connection(dbapi_connection).execute("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - translated to the DBAPI error SQLAlchemy expects
            dbapi_connection._handle_exception(error)
        return True

    dialect.do_ping = do_ping  # type: ignore[method-assign]


def create_engine(target: DatabaseTarget, cfg: Settings = settings) -> AsyncEngine:
    """The application's engine for `target`. No I/O happens here."""
    pool_args: dict[str, Any]
    if cfg.DB_POOL == "queue":
        # Long-running servers (uvicorn, containers): keep connections; verify them after idle periods.
        pool_args = {"pool_size": 5, "max_overflow": 10, "pool_recycle": 3600, "pool_pre_ping": True}
    else:
        pool_args = {"poolclass": NullPool}
    connect = make_connector(target, cfg)
    # SQLAlchemy's own per-connection statement cache only pays off with long-lived connections, and behind
    # a transaction pooler a cached statement may not exist on the next server connection.
    statement_cache = 100 if cfg.DB_POOL == "queue" and not target.behind_pooler else 0

    def creator() -> Any:
        # The form `async_creator=` uses internally, plus the adapter argument it cannot pass.
        return engine.sync_engine.dialect.dbapi.connect(  # type: ignore[union-attr]
            async_creator_fn=connect, prepared_statement_cache_size=statement_cache
        )

    engine = create_async_engine(
        target.url,
        creator=creator,
        echo=cfg.DB_ECHO,
        # Bound parameters (password hashes, emails, task text) stay out of logs and error messages in
        # production; locally they help debugging.
        hide_parameters=cfg.ENVIRONMENT is Environment.production,
        execution_options={COMMAND_TIMEOUT_OPTION: cfg.DB_COMMAND_TIMEOUT},
        **pool_args,
    )
    answer_first_connect_from_startup(engine.dialect)
    close_without_waiting(engine.dialect)
    ping_in_one_round_trip(engine.dialect)
    return engine


# The one engine. Every user looks it up here at call time (LazyConnection, health/db),
# so replacing `app.db.engine` (tests, benches) replaces it everywhere.
engine: AsyncEngine = create_engine(settings.database)


class LazyConnection:
    """The request's autocommit connection, opened by its first statement (not when the request starts).

    FastAPI enters a route's dependencies before it validates the query string and the body, so a connection
    opened up front would make every 422 pay for a connection, and on Neon possibly for waking a compute.
    Autocommit because these requests do one statement, atomic by itself: no BEGIN/COMMIT round trips.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if self._connection is None:
            connection = await self._engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            return await self._connection.execute(statement, parameters)
        except TimeoutError as error:
            # asyncpg's command_timeout (a connect timeout would be DatabaseUnavailable). asyncpg has sent the
            # server a CancelRequest; SQLAlchemy treats asyncio.TimeoutError as an exit exception and invalidates
            # the connection, whose graceful close waits for the cancel to be acknowledged: it is never reused.
            options = self._connection.sync_connection.get_execution_options()  # type: ignore[union-attr]
            raise StatementTimeout(options.get(COMMAND_TIMEOUT_OPTION)) from error

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


async def autocommit_connection() -> AsyncIterator[LazyConnection]:
    """For requests whose work is one statement: see LazyConnection."""
    connection = LazyConnection(engine)
    try:
        yield connection
    finally:
        await connection.close()
