"""Every SQL statement about tasks: filters, sort orders, keyset pagination, writes, tag counts.

Each function runs exactly one statement, and each statement also checks that the token's user still exists
and is active (the user id comes from the verified JWT, not from a separate query). So one round trip both
authorises and does the work, and a deleted user loses access at once.

Statements are built once per shape (which filters are present, the sort, the cursor; which columns a PATCH
sets) with `bindparam()`s, and reused with each request's values: building one costs more CPU than running it.
Rows are returned as documents shaped like TaskRead (its fields in order) without validating them again: the
columns already have TaskRead's types (the list's ids come as their text: `_as_sent`), and tests/test_documents.py
checks that the JSON is the same.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    DateTime,
    Integer,
    Text,
    Uuid,
    and_,
    asc,
    bindparam,
    cast,
    delete,
    desc,
    func,
    insert,
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
from sqlalchemy.types import NullType

from app.cursor import InvalidCursor, decode_cursor, encode_cursor
from app.db import LazyConnection
from app.models.base import table_of
from app.models.task import (
    PRIORITY_RANK,
    Task,
    TaskCreate,
    TaskListQuery,
    TaskRead,
    TaskSort,
    TaskStatus,
    priority_rank,
)
from app.queries import AccountGone, TaskNotFound, VersionMismatch
from app.queries.users import AUTHORISED, token_parameters, users
from app.security import AccessToken

tasks = table_of(Task)

# Exactly the columns a task reads as (TaskRead), in its order.
TASK_FIELDS = tuple(TaskRead.model_fields)
TASK_COLUMNS = [tasks.c[name] for name in TASK_FIELDS]
TEXT_ARRAY = ARRAY(Text)
TIMESTAMPTZ = DateTime(timezone=True)
# How many shapes of list statement a process keeps: far more than the combinations clients really use.
LIST_SHAPES_KEPT = 512


def task_document(values: Sequence[Any]) -> dict[str, Any]:
    """TASK_COLUMNS' values as the API shows a task (TaskRead's fields, in order)."""
    return dict(zip(TASK_FIELDS, values, strict=True))


# --- listing ------------------------------------------------------------------------------------------------


class ListShape(NamedTuple):
    """What decides a list statement's SQL; everything else about a request is a parameter value."""

    sort: TaskSort
    status: bool
    priority: bool
    tag: bool
    any_tag: bool
    overdue: bool
    due_before: bool
    due_after: bool
    q: bool
    cursor: str | None  # None, "keyed" (after a sort key), "undated" (after a row without a due date)


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


def _filters(shape: ListShape) -> list[ColumnElement[bool]]:
    c = tasks.c
    tags = type_coerce(c.tags, TEXT_ARRAY)  # the dialect ARRAY type has @> and &&
    conditions: list[ColumnElement[bool]] = []
    if shape.status:
        conditions.append(c.status.in_(bindparam("statuses", expanding=True, type_=Text())))
    if shape.priority:
        conditions.append(c.priority.in_(bindparam("priorities", expanding=True, type_=Text())))
    if shape.tag:
        conditions.append(tags.contains(bindparam("all_tags", type_=TEXT_ARRAY)))  # @>: served by the GIN index
    if shape.any_tag:
        conditions.append(tags.overlap(bindparam("any_tags", type_=TEXT_ARRAY)))  # &&: served by the GIN index
    if shape.overdue:
        conditions += [c.due_date < func.now(), c.status != TaskStatus.done.value]
    if shape.due_before:
        conditions.append(c.due_date < bindparam("due_before", type_=TIMESTAMPTZ))
    if shape.due_after:
        conditions.append(c.due_date > bindparam("due_after", type_=TIMESTAMPTZ))
    if shape.q:
        # The value is escaped by `_like_pattern`, so `%` and `_` typed by the user match themselves.
        conditions.append(
            or_(
                c.title.icontains(bindparam("q_title", type_=Text()), escape=LIKE_ESCAPE),
                c.description.icontains(bindparam("q_description", type_=Text()), escape=LIKE_ESCAPE),
            )
        )
    return conditions


LIKE_ESCAPE = "/"


def _like_pattern(text: str) -> str:
    """`text` with LIKE's wildcards escaped (what SQLAlchemy's autoescape does to a literal value)."""
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")


def _after_cursor(shape: ListShape) -> ColumnElement[bool]:
    """Rows strictly after the cursor's row in this sort order (`cursor_key`, `cursor_id`)."""
    sort, c = shape.sort, tasks.c
    last = bindparam("cursor_id", type_=Uuid())
    if shape.cursor == "undated":  # the cursor row has no due date: only the remaining undated rows follow it
        return and_(c.due_date.is_(None), c.id < last if sort.descending else c.id > last)
    key = bindparam("cursor_key", type_=Integer() if sort.key == "priority" else TIMESTAMPTZ)
    columns, bound = tuple_(_sort_key(sort, c), c.id), tuple_(key, last)
    after = columns < bound if sort.descending else columns > bound
    if sort.key == "due_date":
        after = or_(after, c.due_date.is_(None))  # undated rows come after every dated one
    return after


def _as_sent(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A page column as the list sends it.

    The id as PostgreSQL's text of it (lower-case, hyphenated, exactly `str(uuid)`), which asyncpg returns as a
    str: pydantic_core's JSON writer has no fast path for asyncpg's own UUID class, and 20 of them cost more than
    the rest of the page's JSON. Sorting still uses the uuid column. The tags as asyncpg returns a text[] (a
    list of str), without the copy of every list that SQLAlchemy's ARRAY type makes on the way out."""
    if column.key == "id":
        return cast(column, Text).label("id")
    if column.key == "tags":
        return type_coerce(column, NullType()).label("tags")
    return column


@lru_cache(maxsize=LIST_SHAPES_KEPT)
def _list_statement(shape: ListShape) -> Any:
    """The user row LEFT JOIN LATERAL the page: no row at all means the user is gone."""
    conditions = _filters(shape)
    if shape.cursor is not None:
        conditions.append(_after_cursor(shape))
    page = (
        select(*TASK_COLUMNS)
        .where(tasks.c.user_id == users.c.id, *conditions)
        .order_by(*_order_by(shape.sort, tasks.c))
        .limit(bindparam("page_rows", type_=Integer()))
        .lateral("page")
    )
    return (
        select(users.c.id.label("account"), *(_as_sent(column) for column in page.c))
        .select_from(users.outerjoin(page, true()))
        .where(AUTHORISED)
        # The lateral subquery is ordered, but SQL only guarantees the order of the outermost query.
        .order_by(*_order_by(shape.sort, page.c))
    )


def _cursor_binding(user_id: uuid.UUID, query: TaskListQuery) -> str:
    """What a cursor is valid for: this user, this sort and these filters (the page size may change).

    Repeated parameters are sorted, so `tag=a&tag=b` and `tag=b&tag=a` are the same query.
    """
    filters = query.model_dump(mode="json", exclude={"cursor", "limit"})
    canonical = {name: sorted(value) if isinstance(value, list) else value for name, value in filters.items()}
    return f"{user_id}|{json.dumps(canonical, sort_keys=True)}"


def _cursor_key(sort: TaskSort, task: dict[str, Any]) -> list[Any]:
    if sort.key == "priority":
        value: Any = PRIORITY_RANK[task["priority"]]
    else:
        moment = task[sort.key]
        value = moment.isoformat() if moment is not None else None
    return [value, str(task["id"])]


def _cursor_parameters(sort: TaskSort, key: list[Any]) -> tuple[str, dict[str, Any]]:
    """(cursor shape, its parameter values) for a decoded cursor key. Raises InvalidCursor on a malformed one."""
    try:
        raw_value, raw_id = key
        last_id = uuid.UUID(raw_id)
        if sort.key == "priority":
            if type(raw_value) is not int:
                raise TypeError
            value: Any = raw_value
        elif raw_value is None and sort.key == "due_date":
            return "undated", {"cursor_id": last_id}
        else:
            value = datetime.fromisoformat(raw_value)
    except (TypeError, ValueError, AttributeError):
        raise InvalidCursor("is not a cursor returned by this API") from None
    return "keyed", {"cursor_key": value, "cursor_id": last_id}


async def list_tasks(
    connection: LazyConnection, token: AccessToken, query: TaskListQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the user's tasks (documents shaped as TaskRead) and the next page's cursor, one statement.

    No row at all means the user is gone (AccountGone); one row with NULL task columns is an empty page.
    """
    parameters = token_parameters(token)
    parameters["page_rows"] = query.limit + 1  # one extra row says whether there is a next page
    cursor: str | None = None
    if query.cursor is not None:
        key = decode_cursor(query.cursor, _cursor_binding(token.user_id, query))
        cursor, cursor_values = _cursor_parameters(query.sort, key)
        parameters.update(cursor_values)
    if query.status:
        parameters["statuses"] = [s.value for s in query.status]
    if query.priority:
        parameters["priorities"] = [p.value for p in query.priority]
    if query.tag:
        parameters["all_tags"] = query.tag
    if query.any_tag:
        parameters["any_tags"] = query.any_tag
    if query.due_before is not None:
        parameters["due_before"] = query.due_before
    if query.due_after is not None:
        parameters["due_after"] = query.due_after
    if query.q:
        parameters["q_title"] = parameters["q_description"] = _like_pattern(query.q)
    shape = ListShape(
        query.sort,
        bool(query.status),
        bool(query.priority),
        bool(query.tag),
        bool(query.any_tag),
        query.overdue,
        query.due_before is not None,
        query.due_after is not None,
        bool(query.q),
        cursor,
    )
    rows = (await connection.execute(_list_statement(shape), parameters)).all()
    if not rows:
        raise AccountGone
    items = [task_document(row[1:]) for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > query.limit:
        items = items[: query.limit]
        next_cursor = encode_cursor(_cursor_key(query.sort, items[-1]), _cursor_binding(token.user_id, query))
    return items, next_cursor


# --- single tasks -------------------------------------------------------------------------------------------


@cache
def _create_statement(done: bool) -> Any:
    """INSERT ... SELECT FROM users: the row is only written if the user exists and is active."""
    values: dict[str, Any] = {
        "user_id": users.c.id,
        "title": bindparam("new_title", type_=Text()),
        "description": bindparam("new_description", type_=Text()),
        "status": bindparam("new_status", type_=Text()),
        "priority": bindparam("new_priority", type_=Text()),
        "due_date": bindparam("new_due_date", type_=TIMESTAMPTZ),
        "tags": bindparam("new_tags", type_=TEXT_ARRAY),
        "completed_at": func.now() if done else null(),
    }
    source = select(*values.values()).where(AUTHORISED)
    return insert(tasks).from_select(list(values), source).returning(*TASK_COLUMNS)


async def create_task(connection: LazyConnection, token: AccessToken, data: TaskCreate) -> dict[str, Any]:
    parameters = token_parameters(token) | {
        "new_title": data.title,
        "new_description": data.description,
        "new_status": data.status.value,
        "new_priority": data.priority.value,
        "new_due_date": data.due_date,
        "new_tags": data.tags,
    }
    row = (await connection.execute(_create_statement(data.status is TaskStatus.done), parameters)).first()
    if row is None:
        raise AccountGone
    return task_document(row)


@cache
def _get_statement() -> Any:
    owned = and_(tasks.c.id == bindparam("task_id", type_=Uuid()), tasks.c.user_id == users.c.id)
    return (
        select(users.c.id.label("account"), *TASK_COLUMNS).select_from(users.outerjoin(tasks, owned)).where(AUTHORISED)
    )


async def get_task(connection: LazyConnection, token: AccessToken, task_id: uuid.UUID) -> dict[str, Any]:
    parameters = token_parameters(token) | {"task_id": task_id}
    row = (await connection.execute(_get_statement(), parameters)).first()
    if row is None:
        raise AccountGone
    if row.id is None:
        raise TaskNotFound
    return task_document(row[1:])


def _guarded(write: Any, returning: list[Any], guarded_by_version: bool) -> Any:
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
    """
    account = select(users.c.id).where(AUTHORISED).cte("account")
    owned = (
        select(tasks.c.id, tasks.c.version)
        .where(tasks.c.id == bindparam("task_id", type_=Uuid()), tasks.c.user_id.in_(select(account.c.id)))
        .with_for_update(of=tasks)
        .cte("owned")
    )
    target: list[ColumnElement[bool]] = [tasks.c.id.in_(select(owned.c.id))]
    if guarded_by_version:
        target.append(tasks.c.version.in_(bindparam("expected", expanding=True, type_=Integer())))
    written = write.where(*target).returning(*returning).cte("written")
    return select(account.c.id.label("account"), owned.c.version.label("current_version"), *written.c).select_from(
        account.outerjoin(owned, true()).outerjoin(written, true())
    )


async def _run_guarded(
    connection: LazyConnection,
    statement: Any,
    parameters: dict[str, Any],
    expected: list[int] | None,
) -> Row[Any]:
    row = (await connection.execute(statement, parameters)).first()
    if row is None:
        raise AccountGone
    if row.current_version is None:
        raise TaskNotFound
    if row.id is None:
        if expected is not None:
            raise VersionMismatch(row.current_version)
        raise TaskNotFound  # not while `owned` holds the row lock; a 404 rather than a crash if it ever does
    return row


def _guard_parameters(token: AccessToken, task_id: uuid.UUID, expected: list[int] | None) -> dict[str, Any]:
    parameters = token_parameters(token) | {"task_id": task_id}
    if expected is not None:
        parameters["expected"] = expected
    return parameters


@cache
def _update_statement(columns: tuple[str, ...], done: bool | None, guarded_by_version: bool) -> Any:
    """UPDATE of `columns` (from parameters `new_<column>`); `done`: whether status is set to done, if set."""
    values: dict[str, Any] = {name: bindparam(f"new_{name}", type_=tasks.c[name].type) for name in columns}
    if done is not None:
        # Keep the first completion time when a done task is set to done again; clear it when leaving done.
        values["completed_at"] = func.coalesce(tasks.c.completed_at, func.now()) if done else null()
    values["version"] = tasks.c.version + 1
    return _guarded(update(tasks).values(values), TASK_COLUMNS, guarded_by_version)


async def update_task(
    connection: LazyConnection,
    token: AccessToken,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected: list[int] | None,
) -> dict[str, Any]:
    """Apply `changes` (a partial update, already validated) and bump the version, in one statement."""
    if not changes:  # nothing to write: answer like a read, still honouring If-Match
        task = await get_task(connection, token, task_id)
        if expected is not None and task["version"] not in expected:
            raise VersionMismatch(task["version"])
        return task
    columns = tuple(sorted(changes))
    done = changes["status"] == TaskStatus.done if "status" in changes else None
    parameters = _guard_parameters(token, task_id, expected)
    parameters.update({f"new_{name}": value for name, value in changes.items()})
    row = await _run_guarded(connection, _update_statement(columns, done, expected is not None), parameters, expected)
    return task_document(row[2:])


@cache
def _delete_statement(guarded_by_version: bool) -> Any:
    return _guarded(delete(tasks), [tasks.c.id], guarded_by_version)


async def delete_task(
    connection: LazyConnection, token: AccessToken, task_id: uuid.UUID, expected: list[int] | None
) -> None:
    parameters = _guard_parameters(token, task_id, expected)
    await _run_guarded(connection, _delete_statement(expected is not None), parameters, expected)


# --- tags ---------------------------------------------------------------------------------------------------


@cache
def _tag_counts_statement() -> Any:
    tags = func.unnest(tasks.c.tags).table_valued("tag").render_derived(name="tags")
    counted = (
        select(tags.c.tag, func.count().label("count"))
        .select_from(tasks.join(tags, true()))  # a function after its table in FROM is implicitly LATERAL
        .where(tasks.c.user_id == users.c.id)
        .group_by(tags.c.tag)
        .lateral("counted")
    )
    return (
        select(users.c.id.label("account"), counted.c.tag, counted.c["count"])
        .select_from(users.outerjoin(counted, true()))
        .where(AUTHORISED)
        .order_by(counted.c["count"].desc(), counted.c.tag)
    )


async def tag_counts(connection: LazyConnection, token: AccessToken) -> list[dict[str, Any]]:
    """The user's tags with how many tasks carry each (shaped as TagCount), most used first (ties alphabetical).

    One statement: the user row LEFT JOIN LATERAL the counts, as in `list_tasks`.
    """
    rows = (await connection.execute(_tag_counts_statement(), token_parameters(token))).all()
    if not rows:
        raise AccountGone
    return [{"tag": tag, "count": count} for _, tag, count in rows if tag is not None]
