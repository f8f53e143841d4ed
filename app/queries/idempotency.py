"""Exactly-once writes: the `Idempotency-Key` rides along with the write's own statement (no round trip of its
own).

A keyed write's statement gains two CTEs (`previous`, `recorded`) and one condition on its write:

    WITH previous AS (SELECT fingerprint, status_code, response, live FROM idempotency_keys
                      WHERE user_id = <the token's> AND operation = ... AND key = ...),
         written  AS (INSERT/UPDATE ... WHERE ... AND NOT EXISTS (SELECT FROM previous) RETURNING tasks.*),
         recorded AS (INSERT INTO idempotency_keys SELECT ..., to_jsonb(written) FROM written)
    SELECT <the user>, previous.*, written.* ...

So the write and its key are committed together, or neither is. A key already recorded means nothing is
written and the statement returns the stored answer instead (a replay, or a mismatch when the fingerprint
differs).

Two duplicates sent at once both find no key in their snapshot and both write; the second's INSERT into
idempotency_keys then waits for the first to commit and fails on the primary key, which rolls back its whole
statement, its write included. `execute_keyed` sends it once more: by then the first's key is committed, so
the second is answered with the first's response. Exactly one row is written.

A key older than IDEMPOTENCY_KEY_TTL_HOURS counts as new: `execute_keyed` deletes it and sends the statement
again (two more round trips, only for a key reused after it expired and before the purge removed it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import (
    CTE,
    ColumnElement,
    Interval,
    SmallInteger,
    Text,
    Uuid,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlmodel import col

from app.config import settings
from app.db import LazyConnection
from app.db_faults import caused_by
from app.models.idempotency import IdempotencyKey
from app.observability import exception_chain
from app.queries import IdempotencyKeyInFlight, IdempotencyKeyReused

KEY_CONSTRAINT = "pk_idempotency_keys"


class Claim(NamedTuple):
    """A keyed request: its key, the operation it is scoped to (with the user), and its fingerprint."""

    key: str
    operation: str
    fingerprint: str


class Replay(NamedTuple):
    """The stored answer to a key's first request: its status and the written row (the response's source)."""

    status_code: int
    row: dict[str, Any]


# The key's values are bind parameters of the statement (`parameters` gives their values), so that a keyed
# statement may be built once and executed with them (app/queries/tasks.py's keyed create).
_KEY_USER = bindparam("key_user_id", type_=Uuid())
_KEY_OPERATION = bindparam("key_operation", type_=Text())
_KEY = bindparam("key", type_=Text())
_FINGERPRINT = bindparam("key_fingerprint", type_=Text())
_STATUS = bindparam("key_status_code", type_=SmallInteger())
_TTL = bindparam("key_ttl", type_=Interval())
# This request's key, and a key past its lifetime: in the lookup, the expired key's delete and the purge.
_THIS_KEY = (
    col(IdempotencyKey.user_id) == _KEY_USER,
    col(IdempotencyKey.operation) == _KEY_OPERATION,
    col(IdempotencyKey.key) == _KEY,
)
_EXPIRED = col(IdempotencyKey.created_at) <= func.now() - _TTL


def parameters(user_id: Any, claim: Claim, status_code: int) -> dict[str, Any]:
    """The values of the keyed statement's key parameters."""
    return {
        "key_user_id": user_id,
        "key_operation": claim.operation,
        "key": claim.key,
        "key_fingerprint": claim.fingerprint,
        "key_status_code": status_code,
        "key_ttl": _ttl(),
    }


def _ttl() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def previous() -> CTE:
    """The key's row, if this user sent it on this operation before (expired or not)."""
    return (
        select(
            col(IdempotencyKey.fingerprint),
            col(IdempotencyKey.status_code),
            col(IdempotencyKey.response),
            (~_EXPIRED).label("live"),
        )
        .where(*_THIS_KEY)
        .cte("previous")
    )


def unclaimed(previous_key: CTE) -> ColumnElement[bool]:
    """The condition the write gains: the key was not recorded before."""
    return ~exists(previous_key.select())


def recorded(written: CTE) -> CTE:
    """The key's row, inserted from the written row itself (nothing is recorded when nothing was written)."""
    values = select(
        written.c.user_id, _KEY_OPERATION, _KEY, _FINGERPRINT, _STATUS, func.to_jsonb(written.table_valued())
    )
    columns = ["user_id", "operation", "key", "fingerprint", "status_code", "response"]
    return insert(IdempotencyKey).from_select(columns, values).cte("recorded")


def keyed(statement: Any) -> Any:
    """Marks a keyed write as safe to send twice (app.db.LazyConnection resends it on a lost connection)."""
    return statement.execution_options(idempotent=True)


def replayed(claim: Claim, row: Any) -> Replay | None:
    """The stored answer when the statement found the key (None when it wrote). IdempotencyKeyReused when the
    key was used for another request."""
    if row.fingerprint is None:
        return None
    if row.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused
    return Replay(row.status_code, row.response)


def _lost_race(error: sa_exc.IntegrityError) -> bool:
    """Whether the statement failed because a concurrent request recorded the same key first."""
    return caused_by(error, asyncpg.UniqueViolationError) and any(
        getattr(link, "constraint_name", None) == KEY_CONSTRAINT for link in exception_chain(error, "orig", "__cause__")
    )


async def execute_keyed(connection: LazyConnection, statement: Any, values: dict[str, Any]) -> Any:
    """The keyed statement's one row; `values` holds the key's `parameters()` among the statement's own. Sent
    once more after losing the race to a concurrent duplicate (it then finds the duplicate's key and replays it),
    and once more after deleting the key if it had expired (it then writes as if the key were new): at most
    three sends, and one for almost every request."""
    statement = keyed(statement)
    raced = forgot = False
    while True:
        try:
            row = (await connection.execute(statement, values)).first()
        except sa_exc.IntegrityError as error:
            if not _lost_race(error):
                raise
            if raced:  # lost twice: the key is busy with other requests; let the client come back
                raise IdempotencyKeyInFlight from error
            raced = True
            continue
        if row is None or row.fingerprint is None or row.live or forgot:
            return row
        await connection.execute(delete(IdempotencyKey).where(*_THIS_KEY, _EXPIRED), values)
        forgot = True


async def purge_expired(connection: Any, batch: int = 10_000) -> int:
    """Deletes keys past their lifetime, `batch` at a time; returns how many.

    Each batch is PostgreSQL's usual batched delete: the expired rows' `ctid`s, found through the created_at
    index (locked, skipping rows a concurrent purge holds), then deleted by `ctid` (a TID scan): no read of
    the rest of the table, however large it grows.
    """
    ctid: ColumnElement[Any] = literal_column("ctid")
    total = 0
    while True:
        doomed = (
            select(ctid)
            .select_from(IdempotencyKey)
            .where(_EXPIRED)
            .order_by(col(IdempotencyKey.created_at))
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        statement = delete(IdempotencyKey).where(ctid == any_(func.array(doomed.scalar_subquery())))
        deleted = (await connection.execute(statement, {"key_ttl": _ttl()})).rowcount
        total += deleted
        if deleted < batch:
            return total
