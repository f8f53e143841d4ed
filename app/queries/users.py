"""Every SQL statement about users. Emails are stored lower-cased; the lower(email) index serves lookups."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, and_, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import ColumnElement
from sqlmodel import col

from app.db import LazyConnection
from app.models.base import table_of
from app.models.user import User, UserRead
from app.queries import AccountGone, PasswordChangedConcurrently
from app.queries.rate_limit import AttemptLimit, counted, raise_if_limited
from app.security import AccessToken

users = table_of(User)  # its columns by name, for the literals' types
# What a read returns of a user: UserRead's columns, so the password hash stays in the database.
USER_COLUMNS = [users.c[name] for name in UserRead.model_fields]


def authorised(token: AccessToken) -> ColumnElement[bool]:
    """The users row of a token that is still good: the user exists, is active, and has not changed their
    password since the token was issued. Part of every statement a token authorises (here and in tasks.py), so
    checking it costs no round trip of its own."""
    return authorised_by(token.user_id, token.issued_at)


def authorised_by(user_id: Any, issued_at: Any) -> ColumnElement[bool]:
    """`authorised` from the token's user id and issue time: values, or bind parameters for a statement built
    once and executed with them."""
    return and_(
        col(User.id) == user_id,
        col(User.is_active),
        or_(col(User.tokens_valid_from).is_(None), col(User.tokens_valid_from) <= issued_at),
    )


async def insert_user(
    connection: LazyConnection,
    email: str,
    hashed_password: str,
    full_name: str | None,
    limit: AttemptLimit | None = None,
) -> uuid.UUID | None:
    """The new user's id, or None if the email is taken (also by a concurrent registration).

    With `limit`, the attempt is counted in the same statement and the user is inserted only within the
    limit; over it, RateLimited is raised and nothing but the counter is written.
    """
    # ON CONFLICT DO NOTHING: a duplicate, even one registered concurrently, is a 409 and never a 500.
    insert_new = insert(User).on_conflict_do_nothing(index_elements=[func.lower(text("email"))])
    values = {"email": email, "hashed_password": hashed_password, "full_name": full_name}
    if limit is None:
        statement: Any = insert_new.values(values).returning(col(User.id))
        return (await connection.execute(statement)).scalar_one_or_none()
    verdict, cleanup = counted(limit)
    allowed = select(*(literal(value, users.c[name].type) for name, value in values.items())).where(
        verdict.c.retry_after.is_(None)
    )
    # include_defaults=False: id and is_active come from the server defaults, as in the plain INSERT.
    inserting = insert_new.from_select(list(values), allowed, include_defaults=False).returning(col(User.id))
    new_user = inserting.cte("new_user")
    statement = select(verdict.c.retry_after, select(new_user.c.id).scalar_subquery().label("id")).add_cte(cleanup)
    row = (await connection.execute(statement)).one()
    raise_if_limited(row)
    return row.id


async def credentials(
    connection: LazyConnection, email: str, limit: AttemptLimit | None = None
) -> tuple[uuid.UUID, str] | None:
    """(id, password hash) of the active user with this (lower-cased) email.

    With `limit`, the attempt is counted in the same statement; over the limit RateLimited is raised and no
    hash is read, so the caller has nothing to verify.
    """
    columns = (col(User.id), col(User.hashed_password))
    match = and_(func.lower(User.email) == email, col(User.is_active))
    row: Row[Any] | None
    if limit is None:
        row = (await connection.execute(select(*columns).where(match))).first()
    else:
        verdict, cleanup = counted(limit)
        statement = (
            select(verdict.c.retry_after, *columns)
            .select_from(verdict.outerjoin(User, and_(match, verdict.c.retry_after.is_(None))))
            .add_cte(cleanup)
        )
        row = (await connection.execute(statement)).one()
        raise_if_limited(row)
    return (row.id, row.hashed_password) if row is not None and row.id is not None else None


async def password_hash(connection: LazyConnection, token: AccessToken) -> str:
    statement = select(col(User.hashed_password)).where(authorised(token))
    hashed = (await connection.execute(statement)).scalar_one_or_none()
    if hashed is None:
        raise AccountGone
    return hashed


async def read_user(connection: LazyConnection, token: AccessToken) -> Row[Any]:
    """The user of `token` (its row; the routes answer with UserRead's fields of it)."""
    row = (await connection.execute(select(*USER_COLUMNS).where(authorised(token)))).first()
    if row is None:
        raise AccountGone
    return row


async def update_user(
    connection: LazyConnection, token: AccessToken, values: dict[str, Any], *, old_hash: str | None = None
) -> Row[Any]:
    """Write `values` in one statement. With `old_hash`, only if the password is still that one.

    That compare-and-set makes a password change safe without a transaction around its read and its write.
    A new password also ends every session: tokens issued before this second stop working (whole seconds,
    because a token's `iat` is; a token issued later in the same second, e.g. the next login, still works).
    """
    values = dict(values)
    if "hashed_password" in values:
        values["tokens_valid_from"] = func.date_trunc("second", func.now())
    statement = update(User).where(authorised(token)).values(values).returning(*USER_COLUMNS)
    if old_hash is not None:
        statement = statement.where(col(User.hashed_password) == old_hash)
    row = (await connection.execute(statement)).first()
    if row is None:
        if old_hash is not None:
            await password_hash(connection, token)  # AccountGone if that is why nothing was written
            raise PasswordChangedConcurrently
        raise AccountGone
    return row


async def delete_user(connection: LazyConnection, token: AccessToken) -> None:
    """Delete the user; their tasks go with them (ON DELETE CASCADE)."""
    statement = delete(User).where(authorised(token)).returning(col(User.id))
    if (await connection.execute(statement)).first() is None:
        raise AccountGone
