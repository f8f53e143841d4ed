"""The engine and the request's database connection (`LazyConnection`, the `ConnectionDep` of the routes).

Built once at import with no I/O: importing the app with an unreachable database host succeeds, and the
first connection is opened by the first statement that needs one.

DB_POOL picks how connections live (`auto`, the default, picks `single` behind a pooler and `null` otherwise:
app.config.choose_pool): `null` opens one per request; `single` keeps at most one per
process across Lambda invocations (Mangum keeps its event loop), for a pooled endpoint; `queue` is a pool for
long-running servers. What matters is round trips per request:
- connection setup is bounded (`DB_CONNECT_TIMEOUT`) and retried briefly, for a Neon compute waking up;
- the dialect (app/db_dialect.py) answers SQLAlchemy's first-connect questions from the server's startup
  report, closes without waiting for the server's goodbye and pings in one round trip;
- with DB_POOL=single, a kept connection is checked without a round trip before use, a warm read reuses its
  named prepared statement (one Bind/Execute round trip), and a statement that meets a dead connection is
  sent again only when that is provably safe (LazyConnection);
- every route's work is one statement, run in autocommit (no BEGIN/COMMIT round trips).

Failures leave this module as the app's own errors only (app/db_faults.py: DatabaseUnavailable,
StatementTimeout, ConnectionLost), which app/errors.py answers with 503 or 504. Anything else (a constraint
the route did not expect, a bug) stays what it is: a 500.

Statements are bounded by `DB_COMMAND_TIMEOUT` on the client: asyncpg sends the server a CancelRequest (it
goes through PgBouncer too) and the request gets a 504. That guard dies with a frozen or killed Lambda; the
server-side one is the role's own setting, which PgBouncer and Neon's pooler accept (a `statement_timeout`
startup parameter they reject), e.g. `ALTER ROLE app SET statement_timeout = '20s'`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import asyncpg
from sqlalchemy import Select, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import visitors

from app.config import DatabaseTarget, Environment, Settings, choose_pool, settings
from app.db_dialect import DRIVER_NAME, closed_while_idle
from app.db_faults import (
    CONNECTION_GONE,
    NAMED_STATEMENT_REFUSED,
    ConnectFailure,
    ConnectionLost,
    DatabaseUnavailable,
    StatementTimeout,
    backoff_delays,
    caused_by,
    classify_connect_error,
    connect_failed,
)
from app.metrics import connecting
from app.observability import exception_chain

logger = logging.getLogger("app.db")

# Below this, an attempt cannot even finish a TCP handshake plus a login: not worth starting.
MIN_ATTEMPT_SECONDS = 0.05


def _session_kwargs(target: DatabaseTarget, cfg: Settings) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect` but the address, the credentials and TLS."""
    kwargs: dict[str, Any] = {
        "timeout": cfg.DB_CONNECT_TIMEOUT,
        "command_timeout": cfg.DB_COMMAND_TIMEOUT,
        # PgBouncer (Neon's pooler) accepts application_name but rejects most other startup parameters, so
        # server-side timeouts belong in SET LOCAL or on the role, not here.
        "server_settings": {"application_name": cfg.DB_APPLICATION_NAME},
    }
    if target.behind_pooler:
        # Transaction pooling hands each statement to any server connection: named prepared statements
        # would collide (DuplicatePreparedStatementError). With the cache off asyncpg uses unnamed ones.
        kwargs["statement_cache_size"] = 0
    return kwargs


def asyncpg_connect_kwargs(target: DatabaseTarget, cfg: Settings) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect` (everything but the address and credentials)."""
    return {**_session_kwargs(target, cfg), **target.connect_args}


async def connect_to(
    target: DatabaseTarget, cfg: Settings = settings, *, database: str | None = None, timeout: float | None = None
) -> asyncpg.Connection:
    """One plain asyncpg connection to `target` (or to another `database` on the same server), no retries:
    for the scripts (seed, init, backup, restore), which need asyncpg's own API (COPY, advisory locks)."""
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


class PreparedStatements:
    """Whether this process's kept connection may use named prepared statements, and their names.

    With DB_POOL=single a warm read is one Bind/Execute round trip only if the statement's Parse survives from an
    earlier request, i.e. named statements cached on the connection (SQLAlchemy's adapter keeps them). Through a
    pooler that tracks them (PgBouncer >= 1.21 with max_prepared_statements, Neon's) that works; through one that
    does not (PgBouncer 1.18), a later Bind can reach a server connection that never saw the Parse. The names are
    unique to this process, so such a Bind fails with "prepared statement ... does not exist" (26000) and never
    runs another client's statement of the same name; nothing has been executed then, so the statement is
    retried once, and from then on this process uses unnamed statements (`refused()`).
    """

    def __init__(self) -> None:
        self.named = True
        self.renew()

    def renew(self) -> None:
        """New names for a new process image: every SnapStart sandbox restored from one snapshot starts with the
        same memory, and two sandboxes naming different statements alike would defeat the uniqueness above."""
        self._prefix = f"__task_api_{secrets.token_hex(6)}_"
        self._counter = itertools.count(1)

    def next_name(self) -> str:
        return f"{self._prefix}{next(self._counter)}__"

    def refused(self) -> None:
        if self.named:
            logger.warning("the pooler does not keep prepared statements: using unnamed statements from now on")
        self.named = False

    def connect_arguments(self) -> dict[str, Any]:
        """The adapter's statement options for the next connection (SQLAlchemy's documented asyncpg arguments)."""
        if self.named:
            return {"prepared_statement_cache_size": 100, "prepared_statement_name_func": self.next_name}
        return {"prepared_statement_cache_size": 0}


def check_idle_connection(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    """Pool checkout hook (DB_POOL=single): refuse a connection the server or the pooler has already closed.

    No round trip (app.db_dialect.closed_while_idle). Raising DisconnectionError makes the pool discard the
    connection and open a fresh one (SQLAlchemy's documented custom-ping pattern).
    """
    if dbapi_connection.run_async(closed_while_idle):
        logger.info("the kept database connection was closed while idle; opening a new one")
        raise sa_exc.DisconnectionError("the kept connection was closed while idle")


def create_engine(target: DatabaseTarget, cfg: Settings = settings) -> AsyncEngine:
    """The application's engine for `target`. No I/O happens here."""
    pool_args: dict[str, Any]
    connect_args = _session_kwargs(target, cfg)  # TLS at the first connect (do_connect below), not at import
    choice = choose_pool(cfg.DB_POOL, target)  # DB_POOL=auto resolved for this target (app/config.py)
    if choice.mode == "queue":
        # Long-running servers (uvicorn, containers): keep connections; verify them after idle periods.
        # All 15 are kept, none is overflow: a request holds its connection only for its one statement, so
        # under load the number in use swings around any pool_size, and every overflow connection returned
        # while the pool is full is closed, to be opened again (a login, every statement prepared again) a
        # moment later: with 5 + 10 overflow, 32 clients made ~22 new sessions per 100 requests
        # (bench/throughput.py counts them).
        pool_args = {"pool_size": 15, "max_overflow": 0, "pool_recycle": 3600, "pool_pre_ping": True}
        # SQLAlchemy's per-connection statement cache pays off with long-lived connections; behind a
        # transaction pooler a cached statement may not exist on the next server connection.
        connect_args["prepared_statement_cache_size"] = 0 if target.behind_pooler else 100
    elif choice.mode == "single":
        # One connection per process, kept across Lambda invocations (Mangum keeps its event loop). Requests that
        # overlap in one process (only under uvicorn) wait for it rather than open a second one: "at most one
        # connection per process" is what makes a pooler's client limit a bound on the fleet. The wait is bounded
        # (a connect plus a statement's worth); past it the request gets a 503.
        pool_args = {
            "pool_size": 1,
            "max_overflow": 0,
            "pool_timeout": cfg.DB_CONNECT_TIMEOUT + cfg.DB_COMMAND_TIMEOUT,
            "pool_pre_ping": False,  # checked without a round trip, see check_idle_connection
        }
        if not target.behind_pooler:
            logger.warning(
                "DB_POOL=single without a pooler: each warm process keeps a server connection; a direct endpoint "
                "allows ~100 (use Neon's -pooler URL, DB_POOLER=true, or DB_POOL=null)"
            )
    else:
        pool_args = {"poolclass": NullPool}
        connect_args["prepared_statement_cache_size"] = 0  # a connection lives for one statement

    engine = create_async_engine(
        target.url.set(drivername=DRIVER_NAME),
        connect_args=connect_args,
        echo=cfg.DB_ECHO,
        # Bound parameters (password hashes, emails, task text) stay out of logs and error messages in
        # production; locally they help debugging.
        hide_parameters=cfg.ENVIRONMENT is Environment.production,
        # Every statement of the app is atomic on its own (one per request): no BEGIN/COMMIT round trips. Set on
        # the engine, each new connection is put in autocommit once; an autocommit view of the engine
        # (execution_options) would set it again on every checkout and reset it at every check-in.
        isolation_level="AUTOCOMMIT",
        **pool_args,
    )
    statements = PreparedStatements() if choice.mode == "single" else None

    # On the first connection, not at import: logging is configured by then (app.main imports this module first).
    event.listen(engine.sync_engine, "first_connect", lambda *_: logger.info("DB_POOL=%s: %s", *choice))

    @event.listens_for(engine.sync_engine, "do_connect")
    def connect_options(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        # SQLAlchemy's documented hook for per-connection arguments: TLS (its SSLContext is built on first use:
        # loading the trust store costs milliseconds an import need not pay), this attempt's share of the
        # budget, and with DB_POOL=single whether its statements are named.
        cparams.update(target.connect_args)
        deadline = connect_deadline.get()
        if deadline is not None:
            cparams["timeout"] = max(deadline - time.monotonic(), MIN_ATTEMPT_SECONDS)
        if statements is not None:
            cparams.update(statements.connect_arguments())

    if statements is not None:
        event.listen(engine.sync_engine.pool, "checkout", check_idle_connection)
        engine_retries[engine] = statements
    command_timeouts[engine] = cfg.DB_COMMAND_TIMEOUT
    connect_budgets[engine] = cfg.DB_CONNECT_TIMEOUT
    return engine


# When the connection being opened must be ready (open_connection): each attempt gets what is left of the budget.
connect_deadline: ContextVar[float | None] = ContextVar("connect_deadline", default=None)

# Per engine, because tests and benches build engines of their own: the engines whose LazyConnections may send
# a statement again (DB_POOL=single) with their prepared-statement state, and each engine's bounds.
engine_retries: weakref.WeakKeyDictionary[AsyncEngine, PreparedStatements] = weakref.WeakKeyDictionary()
command_timeouts: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()
connect_budgets: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()


def renew_statement_names() -> None:
    """Give the engine's prepared statements names of this sandbox's own (app.snapstart's after-restore hook)."""
    statements = engine_retries.get(engine)
    if statements is not None:
        statements.renew()


# The one engine. Every user looks it up here at call time (request_connection, health/db),
# so replacing `app.db.engine` (tests, benches) replaces it everywhere.
engine: AsyncEngine = create_engine(settings.database)


async def open_connection(engine: AsyncEngine) -> AsyncConnection:
    """A connection of `engine`, with connection setup retried within DB_CONNECT_TIMEOUT in total.

    Only "not yet" errors are retried (app.db_faults.classify_connect_error), after exponentially growing,
    jittered delays. Every way of failing ends in DatabaseUnavailable, with the last error chained, so a
    connect timeout is never mistaken for a statement timeout.
    """
    budget = connect_budgets.get(engine, settings.DB_CONNECT_TIMEOUT)
    deadline = time.monotonic() + budget
    token = connect_deadline.set(deadline)
    try:
        with connecting():  # the request's database time (app.metrics), retries and their waits included
            return await _connect_with_retries(engine, deadline)
    finally:
        connect_deadline.reset(token)


async def _connect_with_retries(engine: AsyncEngine, deadline: float) -> AsyncConnection:
    delays = backoff_delays()
    attempts = 0
    while True:
        attempts += 1
        try:
            return await engine.connect()
        except sa_exc.TimeoutError as error:
            # DB_POOL=single under uvicorn: the one connection stayed busy past the bounded wait.
            raise DatabaseUnavailable(attempts) from error
        except Exception as error:
            cause = next(
                (item for item in exception_chain(error, "orig", "__cause__") if classify_connect_error(item)),
                None,
            )
            if cause is None:
                raise  # not about the database: a bug, shown as such
            failure = classify_connect_error(cause)
            assert failure is not None
            delay = next(delays)
            if failure is not ConnectFailure.retry or deadline - time.monotonic() < delay + MIN_ATTEMPT_SECONDS:
                raise connect_failed(attempts, failure, cause, engine.url.host or "") from error
            # The type and SQLSTATE only: messages can name hosts and users.
            logger.info(
                "database connect attempt %d failed (%s %s); retrying in %.2f s",
                attempts,
                type(cause).__name__,
                getattr(cause, "sqlstate", ""),
                delay,
            )
            await asyncio.sleep(delay)


def is_read(statement: Any) -> bool:
    """A SELECT with no INSERT/UPDATE/DELETE anywhere inside it (CTEs included): safe to send twice."""
    if not isinstance(statement, Select):
        return False
    return not any(getattr(element, "is_dml", False) for element in visitors.iterate(statement))


def _lost(error: sa_exc.DBAPIError) -> bool:
    """Whether a statement failed because its connection died (not because the server refused it)."""
    return error.connection_invalidated or caused_by(error, CONNECTION_GONE)


class LazyConnection:
    """The request's autocommit connection, opened by its first statement (not when the request starts).

    FastAPI enters a route's dependencies before it validates the query string and the body, so a connection
    opened up front would make every 422 pay for a connection, and on Neon possibly for waking a compute.
    Autocommit because these requests do one statement, atomic by itself: no BEGIN/COMMIT round trips.

    With DB_POOL=single the connection may have been kept since an earlier invocation, so a statement can meet
    a connection that died under it. It is sent again, once, on a fresh connection only where that is provably
    safe: the pooler refused a named prepared statement (nothing ran), the connection was already closed before
    the statement was sent, the statement is a read, or it is a write with an Idempotency-Key (a second one
    replays the first if it committed). Any other write whose fate is unknown is never sent twice: it ends in
    ConnectionLost, a 503 that says the change may have been saved (app.errors).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._retries = engine_retries.get(engine)
        self._driver: asyncpg.Connection | None = None

    async def _open(self) -> AsyncConnection:
        if self._connection is None:
            self._connection = await open_connection(self._engine)
            if self._retries is not None:
                # Kept for the verdict after a failure, when SQLAlchemy may already have let go of it.
                raw = await self._connection.get_raw_connection()
                self._driver = raw.driver_connection
        return self._connection

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        """`AsyncConnection.execute`, with the app's errors for a connection that died or a statement too slow."""
        connection = await self._open()
        try:
            return await connection.execute(statement, parameters)
        except sa_exc.DBAPIError as error:
            if self._retries is None or not self._safe_to_resend(statement, error):
                raise self._translated(statement, error) from error
        except TimeoutError as error:
            raise self._timed_out() from error
        # The failed connection is gone (or given up): the pool opens a fresh one for the second attempt.
        await self._discard()
        connection = await self._open()
        try:
            return await connection.execute(statement, parameters)
        except sa_exc.DBAPIError as error:
            raise self._translated(statement, error) from error
        except TimeoutError as error:
            raise self._timed_out() from error

    def _translated(self, statement: Any, error: sa_exc.DBAPIError) -> Exception:
        """The app's error for a failed statement, or `error` itself when the server answered (a constraint, a
        bad value: the route's business, or a bug)."""
        if caused_by(error, asyncpg.QueryCanceledError):
            return StatementTimeout(None)  # 57014: the server's own statement_timeout
        if _lost(error):
            return ConnectionLost(wrote=not is_read(statement))
        return error

    def _safe_to_resend(self, statement: Any, error: sa_exc.DBAPIError) -> bool:
        assert self._retries is not None
        if caused_by(error, NAMED_STATEMENT_REFUSED):
            self._retries.refused()  # a failed Parse or Bind of a named statement: nothing was executed
            return True
        if not _lost(error):
            return False  # an answer from the server (a constraint, a bad value): the same again would fail
        # asyncpg checks that its connection is open before it writes a byte, and raises InterfaceError
        # ("connection is closed") when it is not: then the statement never left.
        closed = self._driver is not None and self._driver.is_closed()
        if closed and caused_by(error, asyncpg.InterfaceError):
            logger.info("the database connection was closed before the statement was sent; sending it again")
            return True
        if is_read(statement):
            logger.info("the database connection was lost during a read; reading again on a new connection")
            return True
        if statement.get_execution_options().get("idempotent"):
            # An Idempotency-Key write (app/queries/idempotency.py): if the first one committed, the second finds
            # its key and replays it instead of writing again.
            logger.info("the database connection was lost during a keyed write; sending it again on a new connection")
            return True
        logger.warning(
            "the database connection was lost while a write was running: its outcome is unknown, so it is not "
            "sent again (503, the change may have been saved)"
        )
        return False

    def _timed_out(self) -> StatementTimeout:
        # asyncpg's command_timeout (a connect timeout would be DatabaseUnavailable). asyncpg has sent the
        # server a CancelRequest; SQLAlchemy treats asyncio.TimeoutError as an exit exception and invalidates
        # the connection, whose graceful close waits for the cancel to be acknowledged: it is never reused.
        return StatementTimeout(command_timeouts.get(self._engine))

    async def _discard(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await connection.invalidate()
            finally:
                await connection.close()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def __aenter__(self) -> LazyConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def request_connection() -> LazyConnection:
    """The request's connection on the current engine, closed when its `async with` block ends."""
    return LazyConnection(engine)


async def get_connection() -> AsyncIterator[LazyConnection]:
    """The routes' database dependency (`ConnectionDep`): one LazyConnection per request, closed after it."""
    async with request_connection() as connection:
        yield connection
