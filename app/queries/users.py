"""Every SQL statement about users. Emails are stored lower-cased; the lower(email) index serves lookups.

Statements of a fixed shape are built once per process with `bindparam()`s and reused with each request's
values: building a SQLAlchemy statement costs far more CPU than running it, and a reused statement object also
keeps its cache key, so SQLAlchemy's compiled cache answers without walking it again.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import DateTime, Text, Uuid, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import ColumnElement

from app.db import LazyConnection
from app.models.base import table_of
from app.models.user import User, UserRead
from app.queries import AccountGone, PasswordChangedConcurrently
from app.queries.rate_limit import AttemptLimit, counted, limit_parameters, limit_shape, raise_if_limited
from app.security import AccessToken

users = table_of(User)
USER_COLUMNS = [users.c[name] for name in UserRead.model_fields]
USER_FIELDS = tuple(UserRead.model_fields)

# The users row of a token that is still good: the user exists, is active, and has not changed their password
# since the token was issued. Part of every statement a token authorises (here and in tasks.py), so checking
# it costs no round trip of its own. Its values come from `token_parameters`.
AUTHORISED: ColumnElement[bool] = and_(
    users.c.id == bindparam("account_id", type_=Uuid()),
    users.c.is_active,
    or_(
        users.c.tokens_valid_from.is_(None),
        users.c.tokens_valid_from <= bindparam("token_issued_at", type_=DateTime(timezone=True)),
    ),
)


def token_parameters(token: AccessToken) -> dict[str, Any]:
    """The values of AUTHORISED's parameters for `token`."""
    return {"account_id": token.user_id, "token_issued_at": token.issued_at}


def user_document(row: Any) -> dict[str, Any]:
    """A row of USER_COLUMNS as the API shows a user (UserRead's fields, in order), without validating it again:
    the columns already have UserRead's types."""
    return dict(zip(USER_FIELDS, row, strict=True))


@cache
def _insert_statement(limit_shape: tuple[int, int, int] | None) -> Any:
    # ON CONFLICT DO NOTHING: a duplicate, even one registered concurrently, is a 409 and never a 500.
    insert_new = insert(users).on_conflict_do_nothing(index_elements=[func.lower(text("email"))])
    values = {name: bindparam(f"new_{name}", type_=Text()) for name in ("email", "hashed_password", "full_name")}
    if limit_shape is None:
        return insert_new.values(values).returning(users.c.id)
    verdict, cleanup = counted(*limit_shape)
    allowed = select(*values.values()).where(verdict.c.retry_after.is_(None))
    # include_defaults=False: id and is_active come from the server defaults, as in the plain INSERT.
    inserting = insert_new.from_select(list(values), allowed, include_defaults=False).returning(users.c.id)
    new_user = inserting.cte("new_user")
    return select(verdict.c.retry_after, select(new_user.c.id).scalar_subquery().label("id")).add_cte(cleanup)


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
    parameters = {"new_email": email, "new_hashed_password": hashed_password, "new_full_name": full_name}
    if limit is None:
        return (await connection.execute(_insert_statement(None), parameters)).scalar_one_or_none()
    parameters |= limit_parameters(limit)
    row = (await connection.execute(_insert_statement(limit_shape(limit)), parameters)).one()
    raise_if_limited(row)
    return row.id


@cache
def _credentials_statement(limit_shape: tuple[int, int, int] | None) -> Any:
    columns = (users.c.id, users.c.hashed_password)
    match = and_(func.lower(users.c.email) == bindparam("email", type_=Text()), users.c.is_active)
    if limit_shape is None:
        return select(*columns).where(match)
    verdict, cleanup = counted(*limit_shape)
    return (
        select(verdict.c.retry_after, *columns)
        .select_from(verdict.outerjoin(users, and_(match, verdict.c.retry_after.is_(None))))
        .add_cte(cleanup)
    )


async def credentials(
    connection: LazyConnection, email: str, limit: AttemptLimit | None = None
) -> tuple[uuid.UUID, str] | None:
    """(id, password hash) of the active user with this (lower-cased) email.

    With `limit`, the attempt is counted in the same statement; over the limit RateLimited is raised and no
    hash is read, so the caller has nothing to verify.
    """
    parameters: dict[str, Any] = {"email": email}
    if limit is None:
        row = (await connection.execute(_credentials_statement(None), parameters)).first()
    else:
        parameters |= limit_parameters(limit)
        row = (await connection.execute(_credentials_statement(limit_shape(limit)), parameters)).one()
        raise_if_limited(row)
    return (row.id, row.hashed_password) if row is not None and row.id is not None else None


@cache
def _password_hash_statement() -> Any:
    return select(users.c.hashed_password).where(AUTHORISED)


async def password_hash(connection: LazyConnection, token: AccessToken) -> str:
    result = await connection.execute(_password_hash_statement(), token_parameters(token))
    hashed = result.scalar_one_or_none()
    if hashed is None:
        raise AccountGone
    return hashed


@cache
def _read_statement() -> Any:
    return select(*USER_COLUMNS).where(AUTHORISED)


async def read_user(connection: LazyConnection, token: AccessToken) -> dict[str, Any]:
    """The user of `token`, shaped as UserRead."""
    row = (await connection.execute(_read_statement(), token_parameters(token))).first()
    if row is None:
        raise AccountGone
    return user_document(row)


@cache
def _update_statement(columns: tuple[str, ...], compare_and_set: bool) -> Any:
    values: dict[str, Any] = {name: bindparam(f"new_{name}", type_=users.c[name].type) for name in columns}
    if "hashed_password" in values:
        values["tokens_valid_from"] = func.date_trunc("second", func.now())
    statement = update(users).where(AUTHORISED).values(values).returning(*USER_COLUMNS)
    if compare_and_set:
        statement = statement.where(users.c.hashed_password == bindparam("old_hash", type_=Text()))
    return statement


async def update_user(
    connection: LazyConnection, token: AccessToken, values: dict[str, Any], *, old_hash: str | None = None
) -> dict[str, Any]:
    """Write `values` in one statement. With `old_hash`, only if the password is still that one.

    That compare-and-set makes a password change safe without a transaction around its read and its write.
    A new password also ends every session: tokens issued before this second stop working (whole seconds,
    because a token's `iat` is; a token issued later in the same second, e.g. the next login, still works).
    """
    columns = tuple(sorted(values))
    parameters = {f"new_{name}": value for name, value in values.items()} | token_parameters(token)
    if old_hash is not None:
        parameters["old_hash"] = old_hash
    row = (await connection.execute(_update_statement(columns, old_hash is not None), parameters)).first()
    if row is None:
        if old_hash is not None:
            await password_hash(connection, token)  # AccountGone if that is why nothing was written
            raise PasswordChangedConcurrently
        raise AccountGone
    return user_document(row)


@cache
def _delete_statement() -> Any:
    return delete(users).where(AUTHORISED).returning(users.c.id)


async def delete_user(connection: LazyConnection, token: AccessToken) -> None:
    """Delete the user; their tasks go with them (ON DELETE CASCADE)."""
    if (await connection.execute(_delete_statement(), token_parameters(token))).first() is None:
        raise AccountGone
