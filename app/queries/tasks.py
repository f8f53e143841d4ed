"""Every SQL statement about tasks: filters, sort orders, keyset pagination, writes, tag counts.

Each function runs exactly one statement, and each statement also checks that the token's user still exists
and is active (the user id comes from the verified JWT, not from a separate query). So one round trip both
authorises and does the work, and a deleted user loses access at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    Text,
    Uuid,
    and_,
    asc,
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
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate

from app.cursor import InvalidCursor, decode_cursor, encode_cursor
from app.db import LazyConnection
from app.models.base import table_of
from app.models.task import (
    PRIORITY_RANK,
    Task,
    TaskCreate,
    TaskListQuery,
    TaskPage,
    TaskRead,
    TaskSort,
    TaskStatus,
    priority_rank,
)
from app.queries import AccountGone, TaskNotFound, VersionMismatch
from app.queries.users import authorised, users
from app.security import AccessToken

tasks = table_of(Task)

# Exactly the columns a task reads as (TaskRead), in its order.
TASK_COLUMNS = [tasks.c[name] for name in TaskRead.model_fields]
TEXT_ARRAY = ARRAY(Text)
TIMESTAMPTZ = DateTime(timezone=True)


def _task_read(row: Any) -> TaskRead:
    return TaskRead.model_validate(row._mapping, from_attributes=False)


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
    c = tasks.c
    tags = type_coerce(c.tags, TEXT_ARRAY)  # the dialect ARRAY type has @> and &&
    conditions: list[ColumnElement[bool]] = []
    if query.status:
        conditions.append(c.status.in_([s.value for s in query.status]))
    if query.priority:
        conditions.append(c.priority.in_([p.value for p in query.priority]))
    if query.tag:
        conditions.append(tags.contains(query.tag))  # @>: served by the GIN index
    if query.any_tag:
        conditions.append(tags.overlap(query.any_tag))  # &&: served by the GIN index
    if query.overdue:
        conditions += [c.due_date < func.now(), c.status != TaskStatus.done.value]
    if query.due_before is not None:
        conditions.append(c.due_date < query.due_before)
    if query.due_after is not None:
        conditions.append(c.due_date > query.due_after)
    if query.q:
        # autoescape: `%` and `_` typed by the user match themselves, not any characters.
        conditions.append(
            or_(c.title.icontains(query.q, autoescape=True), c.description.icontains(query.q, autoescape=True))
        )
    return conditions


def _cursor_binding(user_id: uuid.UUID, query: TaskListQuery) -> str:
    """What a cursor is valid for: this user, this sort and these filters (the page size may change).

    Repeated parameters are sorted, so `tag=a&tag=b` and `tag=b&tag=a` are the same query.
    """
    filters = query.model_dump(mode="json", exclude={"cursor", "limit"})
    canonical = {name: sorted(value) if isinstance(value, list) else value for name, value in filters.items()}
    return f"{user_id}|{json.dumps(canonical, sort_keys=True)}"


def _cursor_key(sort: TaskSort, task: TaskRead) -> list[Any]:
    if sort.key == "priority":
        value: Any = PRIORITY_RANK[task.priority.value]
    else:
        moment: datetime | None = getattr(task, sort.key)
        value = moment.isoformat() if moment is not None else None
    return [value, str(task.id)]


def _after_cursor(sort: TaskSort, key: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor's row in this sort order. Raises InvalidCursor on a malformed key."""
    try:
        raw_value, raw_id = key
        last_id = uuid.UUID(raw_id)
        if sort.key == "priority":
            if type(raw_value) is not int:
                raise TypeError
            value: Any = literal(raw_value, Integer)
        elif raw_value is None and sort.key == "due_date":
            value = None
        else:
            value = literal(datetime.fromisoformat(raw_value), TIMESTAMPTZ)
    except (TypeError, ValueError, AttributeError):
        raise InvalidCursor("is not a cursor returned by this API") from None
    c = tasks.c
    last = literal(last_id, Uuid)
    if value is None:  # the cursor row has no due date: only the remaining undated rows follow it
        return and_(c.due_date.is_(None), c.id < last if sort.descending else c.id > last)
    columns, bound = tuple_(_sort_key(sort, c), c.id), tuple_(value, last)
    after = columns < bound if sort.descending else columns > bound
    if sort.key == "due_date":
        after = or_(after, c.due_date.is_(None))  # undated rows come after every dated one
    return after


async def list_tasks(connection: LazyConnection, token: AccessToken, query: TaskListQuery) -> TaskPage:
    """One page of the user's tasks, one statement: the user row LEFT JOIN LATERAL the page.

    No row at all means the user is gone (AccountGone); one row with NULL task columns is an empty page.
    """
    binding = _cursor_binding(token.user_id, query)
    conditions = _filters(query)
    if query.cursor is not None:
        conditions.append(_after_cursor(query.sort, decode_cursor(query.cursor, binding)))
    page = (
        select(*TASK_COLUMNS)
        .where(tasks.c.user_id == users.c.id, *conditions)
        .order_by(*_order_by(query.sort, tasks.c))
        .limit(query.limit + 1)  # one extra row says whether there is a next page
        .lateral("page")
    )
    statement = (
        select(users.c.id.label("account"), *page.c)
        .select_from(users.outerjoin(page, true()))
        .where(authorised(token))
        # The lateral subquery is ordered, but SQL only guarantees the order of the outermost query.
        .order_by(*_order_by(query.sort, page.c))
    )
    rows = (await connection.execute(statement)).all()
    if not rows:
        raise AccountGone
    items = [_task_read(row) for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > query.limit:
        items = items[: query.limit]
        next_cursor = encode_cursor(_cursor_key(query.sort, items[-1]), binding)
    return TaskPage(items=items, next_cursor=next_cursor)


# --- single tasks -------------------------------------------------------------------------------------------


async def create_task(connection: LazyConnection, token: AccessToken, data: TaskCreate) -> TaskRead:
    """INSERT ... SELECT FROM users: the row is only written if the user exists and is active."""
    values: dict[str, Any] = {
        "user_id": users.c.id,
        "title": literal(data.title, Text),
        "description": literal(data.description, Text),
        "status": literal(data.status.value, Text),
        "priority": literal(data.priority.value, Text),
        "due_date": literal(data.due_date, TIMESTAMPTZ),
        "tags": literal(data.tags, TEXT_ARRAY),
        "completed_at": func.now() if data.status is TaskStatus.done else null(),
    }
    source = select(*values.values()).where(authorised(token))
    statement = insert(tasks).from_select(list(values), source).returning(*TASK_COLUMNS)
    row = (await connection.execute(statement)).first()
    if row is None:
        raise AccountGone
    return _task_read(row)


async def get_task(connection: LazyConnection, token: AccessToken, task_id: uuid.UUID) -> TaskRead:
    owned = and_(tasks.c.id == task_id, tasks.c.user_id == users.c.id)
    statement = (
        select(users.c.id.label("account"), *TASK_COLUMNS)
        .select_from(users.outerjoin(tasks, owned))
        .where(authorised(token))
    )
    row = (await connection.execute(statement)).first()
    if row is None:
        raise AccountGone
    if row.id is None:
        raise TaskNotFound
    return _task_read(row)


def _set_clause(changes: dict[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    if "status" in values:
        # Keep the first completion time when a done task is set to done again; clear it when leaving done.
        values["completed_at"] = (
            func.coalesce(tasks.c.completed_at, func.now()) if values["status"] == TaskStatus.done else null()
        )
    values["version"] = tasks.c.version + 1
    return values


async def _guarded(
    connection: LazyConnection,
    token: AccessToken,
    task_id: uuid.UUID,
    expected: list[int] | None,
    build_write: Callable[[list[ColumnElement[bool]]], ReturningDelete[Any] | ReturningUpdate[Any]],
) -> Row[Any]:
    """Run a write on one task in a single statement that also tells 401, 404 and 412 apart.

        WITH account AS (the active user), owned AS (the task's version, if the user owns it),
             written AS (UPDATE/DELETE ... WHERE id IN owned [AND version IN expected] RETURNING ...)
        SELECT account.id, owned.version, written.* FROM account LEFT JOIN owned LEFT JOIN written

    `owned` locks the row (FOR UPDATE), so concurrent writers of one task queue on it, and under READ COMMITTED
    each one, once it has the lock, reads the row as the writer before it left it (not the statement's
    snapshot). So every answer is the one a serial order would give: with the same If-Match the first writes
    and the others get 412 naming the version it left; after a concurrent DELETE the task is gone, a 404 (a
    snapshot read would say 412 with the deleted task's version). The write's own WHERE is re-checked against
    that same latest row, so a stale If-Match writes nothing.
    """
    account = select(users.c.id).where(authorised(token)).cte("account")
    owned = (
        select(tasks.c.id, tasks.c.version)
        .where(tasks.c.id == task_id, tasks.c.user_id.in_(select(account.c.id)))
        .with_for_update(of=tasks)
        .cte("owned")
    )
    target: list[ColumnElement[bool]] = [tasks.c.id.in_(select(owned.c.id))]
    if expected is not None:
        target.append(tasks.c.version.in_(expected))
    written = build_write(target).cte("written")
    statement = select(account.c.id.label("account"), owned.c.version.label("current_version"), *written.c).select_from(
        account.outerjoin(owned, true()).outerjoin(written, true())
    )
    row = (await connection.execute(statement)).first()
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
) -> TaskRead:
    """Apply `changes` (a partial update, already validated) and bump the version, in one statement."""
    if not changes:  # nothing to write: answer like a read, still honouring If-Match
        task = await get_task(connection, token, task_id)
        if expected is not None and task.version not in expected:
            raise VersionMismatch(task.version)
        return task

    def write(target: list[ColumnElement[bool]]) -> ReturningUpdate[Any]:
        return update(tasks).where(*target).values(_set_clause(changes)).returning(*TASK_COLUMNS)

    return _task_read(await _guarded(connection, token, task_id, expected, write))


async def delete_task(
    connection: LazyConnection, token: AccessToken, task_id: uuid.UUID, expected: list[int] | None
) -> None:
    def write(target: list[ColumnElement[bool]]) -> ReturningDelete[Any]:
        return delete(tasks).where(*target).returning(tasks.c.id)

    await _guarded(connection, token, task_id, expected, write)


# --- tags ---------------------------------------------------------------------------------------------------


async def tag_counts(connection: LazyConnection, token: AccessToken) -> list[tuple[str, int]]:
    """The user's tags with how many tasks carry each, most used first (ties alphabetical).

    One statement: the user row LEFT JOIN LATERAL the counts, as in `list_tasks`.
    """
    tags = func.unnest(tasks.c.tags).table_valued("tag").render_derived(name="tags")
    counted = (
        select(tags.c.tag, func.count().label("count"))
        .select_from(tasks.join(tags, true()))  # a function after its table in FROM is implicitly LATERAL
        .where(tasks.c.user_id == users.c.id)
        .group_by(tags.c.tag)
        .lateral("counted")
    )
    statement = (
        select(users.c.id.label("account"), counted.c.tag, counted.c["count"])
        .select_from(users.outerjoin(counted, true()))
        .where(authorised(token))
        .order_by(counted.c["count"].desc(), counted.c.tag)
    )
    rows = (await connection.execute(statement)).all()
    if not rows:
        raise AccountGone
    return [(row.tag, row._mapping["count"]) for row in rows if row.tag is not None]
