"""The current user: read, update (name, password), delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import ConnectionDep, CurrentToken
from app.api.problems import R415, TOKEN_ERRORS, WrongCurrentPassword, documented
from app.models.user import UserRead, UserUpdate
from app.queries import PasswordChangedConcurrently
from app.queries import users as user_queries
from app.security import hash_password, verify_password

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    summary="The current user",
    operation_id="users_get_me",
    response_model=UserRead,
    responses=documented(*TOKEN_ERRORS),
)
async def read_me(token: CurrentToken, connection: ConnectionDep) -> Any:
    """Returns the account of the access token (never its password hash)."""
    return await user_queries.read_user(connection, token)


@router.patch(
    "/me",
    summary="Update the current user",
    operation_id="users_update_me",
    response_model=UserRead,
    responses=documented(*TOKEN_ERRORS, WrongCurrentPassword, PasswordChangedConcurrently) | R415,
)
async def update_me(body: UserUpdate, token: CurrentToken, connection: ConnectionDep) -> Any:
    """Changes `full_name` (null clears it) and/or the password (which needs `current_password`).

    A new password ends every session: access tokens issued before it, this request's included, get 401 from
    then on. Log in again with the new password.
    """
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"password", "current_password"})
    if body.password is None:
        if not changes:
            return await user_queries.read_user(connection, token)
        return await user_queries.update_user(connection, token, changes)
    old_hash = await user_queries.password_hash(connection, token)
    if not await run_in_threadpool(verify_password, body.current_password or "", old_hash):
        raise WrongCurrentPassword
    changes["hashed_password"] = await run_in_threadpool(hash_password, body.password)
    # PasswordChangedConcurrently if another request changed the password since `old_hash` was read.
    return await user_queries.update_user(connection, token, changes, old_hash=old_hash)


@router.delete(
    "/me",
    summary="Delete the current user and all their tasks",
    operation_id="users_delete_me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=documented(*TOKEN_ERRORS),
)
async def delete_me(token: CurrentToken, connection: ConnectionDep) -> None:
    """Deletes the account and its tasks; its access tokens stop working at once."""
    await user_queries.delete_user(connection, token)
