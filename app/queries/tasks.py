"""Every SQL statement about tasks: filters, sort orders, keyset pagination, writes, tag counts.

Each function runs exactly one statement, and each statement also checks that the token's user still exists
and is active (the user id comes from the verified JWT, not from a separate query): `authorised(token)`. So one
round trip both authorises and does the work, and a deleted user loses access at once.

Statements are written against the models (`select(Task)`, `update(Task)`); their rows have the model's
columns, which the routes return as they are and FastAPI validates into the response model (TaskRead).
SQLAlchemy's compiled cache makes building them per request cheap: the values are bound parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    Uuid,
    and_,
    asc,
    bindparam,
    case,
    delete,
    desc,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import update as sql_update
from sqlalchemy.sql import ColumnElement
from sqlmodel import col

from app.cursor import InvalidCursor, decode_cursor, encode_cursor
from app.db import LazyConnection
from app.models.base import table_of
from app.models.task import PRIORITY_RANK, Task, TaskCreate, TaskListQuery, TaskSort, TaskStatus, priority_rank
from app.models.user import User
from app.queries import AccountGone, TaskNotFound, VersionMismatch, idempotency
from app.queries.idempotency import Claim, Replay
from app.queries.users import authorised, authorised_by
from app.security import AccessToken

tasks = table_of(Task)  # its columns by name, for the sort keys and the literals' types

# --- listing ------------------------------------------------------------------------------------------------


def _sort_key(sort: TaskSort, columns: Any) -> ColumnElement[Any]:
    if sort.key == "priority":
        return priority_rank(columns.priority)  # the expression of ix_tasks_user_priority_rank
    return columns[sort.key]


def _order_by(sort: TaskSort, columns: Any) -> list[ColumnElement[Any]]:
    direction = desc if sort.descending else asc
    key = direction(_sort_key(sort, columns))
    if sort.key == "due_date":
        key = key.nulls_last()  # no due date: last in both directions
    return [key, direction(columns.id)]


def _filters(query: TaskListQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.status:
        conditions.append(col(Task.status).in_([s.value for s in query.status]))
    if query.priority:
        conditions.append(col(Task.priority).in_([p.value for p in query.priority]))
    if query.tag:
        conditions.append(tasks.c.tags.contains(query.tag))  # @>: served by the GIN index
    if query.any_tag:
        conditions.append(tasks.c.tags.overlap(query.any_tag))  # &&: served by the GIN index
    if query.overdue:
        conditions += [col(Task.due_date) < func.now(), col(Task.status) != TaskStatus.done.value]
    if query.due_before is not None:
        conditions.append(col(Task.due_date) < query.due_before)
    if query.due_after is not None:
        conditions.append(col(Task.due_date) > query.due_after)
    if query.q:
        # autoescape: `%` and `_` typed by the user match themselves.
        conditions.append(
            or_(
                col(Task.title).icontains(query.q, autoescape=True),
                col(Task.description).icontains(query.q, autoescape=True),
            )
        )
    return conditions


def _after_cursor(sort: TaskSort, key: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor's row (its sort key and id) in this sort order. Raises InvalidCursor on a
    malformed key."""
    try:
        raw_value, raw_id = key
        last = literal(uuid.UUID(raw_id), Uuid())
        if sort.key == "priority":
            if type(raw_value) is not int:
                raise TypeError
            value: Any = literal(raw_value, Integer())
        elif raw_value is None and sort.key == "due_date":
            # The cursor row has no due date: only the remaining undated rows follow it.
            return and_(col(Task.due_date).is_(None), col(Task.id) < last if sort.descending else col(Task.id) > last)
        else:
            value = literal(datetime.fromisoformat(raw_value), tasks.c[sort.key].type)
    except (TypeError, ValueError, AttributeError):
        raise InvalidCursor("is not a cursor returned by this API") from None
    columns, bound = tuple_(_sort_key(sort, tasks.c), col(Task.id)), tuple_(value, last)
    after = columns < bound if sort.descending else columns > bound
    if sort.key == "due_date":
        after = or_(after, col(Task.due_date).is_(None))  # undated rows come after every dated one
    return after


def _cursor_binding(user_id: uuid.UUID, query: TaskListQuery) -> str:
    """What a cursor is valid for: this user, this sort and these filters (the page size may change).

    Repeated parameters are sorted, so `tag=a&tag=b` and `tag=b&tag=a` are the same query.
    """
    filters = query.model_dump(mode="json", exclude={"cursor", "limit"})
    canonical = {name: sorted(value) if isinstance(value, list) else value for name, value in filters.items()}
    return f"{user_id}|{json.dumps(canonical, sort_keys=True)}"


def _cursor_key(sort: TaskSort, task: Any) -> list[Any]:
    if sort.key == "priority":
        value: Any = PRIORITY_RANK[task.priority]
    else:
        moment = getattr(task, sort.key)
        value = moment.isoformat() if moment is not None else None
    return [value, str(task.id)]


async def list_tasks(
    connection: LazyConnection, token: AccessToken, query: TaskListQuery
) -> tuple[list[Row[Any]], str | None]:
    """One page of the user's tasks and the next page's cursor, in one statement: the user row LEFT JOIN
    LATERAL the page. No row at all means the user is gone (AccountGone); one row with NULL task columns is an
    empty page."""
    conditions = _filters(query)
    if query.cursor is not None:
        conditions.append(_after_cursor(query.sort, decode_cursor(query.cursor, _cursor_binding(token.user_id, query))))
    page = (
        select(Task)
        .where(col(Task.user_id) == User.id, *conditions)
        .order_by(*_order_by(query.sort, tasks.c))
        .limit(query.limit + 1)  # one extra row says whether there is a next page
        .lateral("page")
    )
    statement = (
        select(col(User.id).label("account"), page)
        .select_from(User)
        .outerjoin(page, true())
        .where(authorised(token))
        # The lateral subquery is ordered, but SQL only guarantees the order of the outermost query.
        .order_by(*_order_by(query.sort, page.c))
    )
    rows = (await connection.execute(statement)).all()
    if not rows:
        raise AccountGone
    items = [row for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > query.limit:
        items = items[: query.limit]
        next_cursor = encode_cursor(_cursor_key(query.sort, items[-1]), _cursor_binding(token.user_id, query))
    return items, next_cursor


# --- single tasks -------------------------------------------------------------------------------------------


# The fields of TaskCreate a new row takes as they are (completed_at follows from status).
CREATED_FIELDS = ("title", "description", "status", "priority", "due_date", "tags")


async def create_task(
    connection: LazyConnection, token: AccessToken, data: TaskCreate, claim: Claim | None = None
) -> Row[Any] | Replay:
    """INSERT ... SELECT FROM users: the row is only written if the user exists and is active. With a `claim`
    (an Idempotency-Key), the same statement records the key, or answers the key's earlier request instead of
    writing (app/queries/idempotency.py)."""
    if claim is not None:
        values = {name: getattr(data, name) for name in CREATED_FIELDS}
        values.update(status=data.status.value, priority=data.priority.value)
        values.update(token_user_id=token.user_id, token_issued_at=token.issued_at)
        return await _run_keyed(connection, token, claim, _keyed_create(), values, 201)
    columns = tasks.c
    values = {
        "user_id": User.id,
        "title": literal(data.title, columns.title.type),
        "description": literal(data.description, columns.description.type),
        "status": literal(data.status.value, columns.status.type),
        "priority": literal(data.priority.value, columns.priority.type),
        "due_date": literal(data.due_date, columns.due_date.type),
        "tags": literal(data.tags, columns.tags.type),
        "completed_at": func.now() if data.status is TaskStatus.done else null(),
    }
    source: Any = select(*values.values()).where(authorised(token))
    statement = insert(Task).from_select(list(values), source).returning(Task)
    row = (await connection.execute(statement)).first()
    if row is None:
        raise AccountGone
    return row


@cache
def _keyed_create() -> Any:
    """The keyed create, built once with bind parameters (the task's fields, the token's, the key's):

        WITH previous AS (the key's row), written AS (INSERT ... SELECT FROM users WHERE <authorised> AND NOT
             EXISTS previous RETURNING tasks.*), recorded AS (INSERT INTO idempotency_keys ... FROM written)
        SELECT account.id, previous.*, written.* FROM account LEFT JOIN previous LEFT JOIN written

    Built per request like the plain create, its construction and its cache key cost more CPU than the rest
    of the request (bench/idempotency.py); executed with parameters, SQLAlchemy compiles it once as well."""
    columns = tasks.c
    values: dict[str, Any] = {"user_id": User.id}
    values.update({name: bindparam(name, type_=columns[name].type) for name in CREATED_FIELDS})
    values["completed_at"] = case((values["status"] == TaskStatus.done.value, func.now()), else_=null())
    user_id, issued_at = (
        bindparam("token_user_id", type_=Uuid()),
        bindparam("token_issued_at", type_=columns.created_at.type),
    )
    earlier = idempotency.previous()
    source = select(*values.values()).where(authorised_by(user_id, issued_at), idempotency.unclaimed(earlier))
    written = insert(Task).from_select(list(values), source).returning(Task).cte("written")
    account = select(col(User.id)).where(authorised_by(user_id, issued_at)).cte("account")
    return _write_statement(account, written, earlier=earlier)


def _write_statement(account: Any, written: Any, *, owned: Any = None, earlier: Any = None) -> Any:
    """A write's statement: the user, the task's current version (`owned`, for writes on one task), and the
    written row. With `earlier` (an Idempotency-Key's CTE) also the key's earlier answer, if any, and the key's
    row recorded from the written one."""
    columns: list[Any] = [account.c.id.label("account")]
    joined = account
    if owned is not None:
        columns.append(owned.c.version.label("current_version"))
        joined = joined.outerjoin(owned, true())
    if earlier is None:
        return select(*columns, written).select_from(joined.outerjoin(written, true()))
    return (
        select(*columns, earlier, written)
        .select_from(joined.outerjoin(earlier, true()).outerjoin(written, true()))
        .add_cte(idempotency.recorded(written))
    )


async def _run_keyed(
    connection: LazyConnection,
    token: AccessToken,
    claim: Claim,
    statement: Any,
    values: dict[str, Any],
    status_code: int,
) -> Row[Any] | Replay:
    values = values | idempotency.parameters(token.user_id, claim, status_code)
    row = await idempotency.execute_keyed(connection, statement, values)
    if row is None:
        raise AccountGone
    return idempotency.replayed(claim, row) or row


async def get_task(connection: LazyConnection, token: AccessToken, task_id: uuid.UUID) -> Row[Any]:
    owned = and_(col(Task.id) == task_id, col(Task.user_id) == User.id)
    statement: Any = (
        select(col(User.id).label("account"), Task).select_from(User).outerjoin(Task, owned).where(authorised(token))
    )
    row = (await connection.execute(statement)).first()
    if row is None:
        raise AccountGone
    if row.id is None:
        raise TaskNotFound
    return row


async def _guarded(
    connection: LazyConnection,
    token: AccessToken,
    task_id: uuid.UUID,
    write: Any,
    expected: list[int] | None,
    claim: Claim | None = None,
) -> Row[Any] | Replay:
    """A write on one task in a single statement that also tells 401, 404 and 412 apart.

        WITH account AS (the active user), owned AS (the task's version, if the user owns it),
             written AS (UPDATE/DELETE ... WHERE id IN owned [AND version IN expected] RETURNING ...)
        SELECT account.id, owned.version, written.* FROM account LEFT JOIN owned LEFT JOIN written

    `owned` locks the row (FOR UPDATE), so concurrent writers of one task queue on it, and under READ COMMITTED
    each one, once it has the lock, reads the row as the writer before it left it (not the statement's
    snapshot). So every answer is the one a serial order would give: with the same If-Match the first writes
    and the others get 412 naming the version it left; after a concurrent DELETE the task is gone, a 404 (a
    snapshot read would say 412 with the deleted task's version). The write's own WHERE is re-checked against
    that same latest row, so a stale If-Match writes nothing.

    With a `claim` (an Idempotency-Key) the statement also records the key, or, when the key was recorded
    before, writes nothing and answers as the first time: a replay is never a 404 or a 412 because the task
    moved on since.
    """
    account = select(col(User.id)).where(authorised(token)).cte("account")
    owned = (
        select(col(Task.id), col(Task.version))
        .where(col(Task.id) == task_id, col(Task.user_id).in_(select(account.c.id)))
        .with_for_update(of=Task)
        .cte("owned")
    )
    target: list[ColumnElement[bool]] = [col(Task.id).in_(select(owned.c.id))]
    if expected is not None:
        target.append(col(Task.version).in_(expected))
    if claim is None:
        written = write.where(*target).returning(Task).cte("written")
        row = (await connection.execute(_write_statement(account, written, owned=owned))).first()
    else:
        earlier = idempotency.previous()
        written = write.where(*target, idempotency.unclaimed(earlier)).returning(Task).cte("written")
        statement = _write_statement(account, written, owned=owned, earlier=earlier)
        outcome = await _run_keyed(connection, token, claim, statement, {}, 200)
        if isinstance(outcome, Replay):
            return outcome
        row = outcome
    if row is None:
        raise AccountGone
    if row.current_version is None:
        raise TaskNotFound
    if row.id is None:
        if expected is not None:
            raise VersionMismatch(row.current_version)
        raise TaskNotFound  # not while `owned` holds the row lock; a 404 rather than a crash if it ever does
    return row


async def update_task(
    connection: LazyConnection,
    token: AccessToken,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected: list[int] | None,
    claim: Claim | None = None,
) -> Row[Any] | Replay:
    """Apply `changes` (a partial update, already validated) and bump the version, in one statement."""
    # Nothing to write: answer like a read, still honouring If-Match (with a key too: there is nothing to repeat).
    if not changes:
        task = await get_task(connection, token, task_id)
        if expected is not None and task.version not in expected:
            raise VersionMismatch(task.version)
        return task
    values = dict(changes)
    if "status" in changes:
        # Keep the first completion time when a done task is set to done again; clear it when leaving done.
        done = changes["status"] == TaskStatus.done
        values["completed_at"] = func.coalesce(Task.completed_at, func.now()) if done else null()
    values["version"] = col(Task.version) + 1
    return await _guarded(connection, token, task_id, sql_update(Task).values(values), expected, claim)


async def delete_task(
    connection: LazyConnection, token: AccessToken, task_id: uuid.UUID, expected: list[int] | None
) -> None:
    await _guarded(connection, token, task_id, delete(Task), expected)


# --- tags ---------------------------------------------------------------------------------------------------


async def tag_counts(connection: LazyConnection, token: AccessToken) -> Sequence[Row[Any]]:
    """The user's tags with how many tasks carry each (rows of `tag` and `count`), most used first (ties
    alphabetical). One statement: the user row LEFT JOIN LATERAL the counts, as in `list_tasks`."""
    tags = func.unnest(Task.tags).table_valued("tag").render_derived(name="tags")
    counted = (
        select(tags.c.tag, func.count().label("count"))
        .select_from(Task)
        .join(tags, true())  # a function after its table in FROM is implicitly LATERAL
        .where(col(Task.user_id) == User.id)
        .group_by(tags.c.tag)
        .lateral("counted")
    )
    statement = (
        select(col(User.id).label("account"), counted.c.tag, counted.c["count"])
        .select_from(User)
        .outerjoin(counted, true())
        .where(authorised(token))
        .order_by(counted.c["count"].desc(), counted.c.tag)
    )
    rows = (await connection.execute(statement)).all()
    if not rows:
        raise AccountGone
    return [row for row in rows if row.tag is not None]
