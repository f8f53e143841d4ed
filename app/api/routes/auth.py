"""Registration and login. Password hashing runs in a worker thread: it is deliberately slow CPU work.

Both routes are rate-limited per client (app/api/rate_limit.py); the attempt is counted inside the route's one
statement, and a limited login never verifies a password.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import ConnectionDep
from app.api.problems import R415, BadCredentials, EmailTaken, documented
from app.api.rate_limit import ip_key, login_limit, recently_limited, register_limit
from app.models.auth import LoginForm, RegisterRequest, Token
from app.queries import RateLimited
from app.queries import users as user_queries
from app.security import create_access_token, hash_password, verify_password

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    summary="Create an account and get an access token",
    operation_id="auth_register",
    status_code=status.HTTP_201_CREATED,
    response_model=Token,
    responses=documented(EmailTaken, RateLimited) | R415,
)
async def register(body: RegisterRequest, request: Request, connection: ConnectionDep) -> Token:
    """Registers `email` (unique ignoring case) and returns a bearer token for the new account."""
    client = ip_key(request)
    # Told 429 already in this window: answer before spending a password hash on it.
    if (seconds := recently_limited.retry_after(client)) is not None:
        raise RateLimited(seconds)
    hashed = await run_in_threadpool(hash_password, body.password)
    try:
        user_id = await user_queries.insert_user(
            connection, body.email, hashed, body.full_name, register_limit(request)
        )
    except RateLimited as limited:
        recently_limited.remember(client, limited.retry_after)
        raise
    if user_id is None:
        raise EmailTaken
    return Token(access_token=create_access_token(user_id))


@router.post(
    "/token",
    summary="Log in with email and password (OAuth2 password form)",
    operation_id="auth_token",
    response_model=Token,
    responses=documented(BadCredentials, RateLimited) | R415,
)
async def login(form: Annotated[LoginForm, Form()], request: Request, connection: ConnectionDep) -> Token:
    """Exchanges `username` (the email) and `password` for a bearer token (the form /docs Authorize sends)."""
    email = form.username.strip().lower()
    # Over the limit, RateLimited: no hash is read, none verified.
    found = await user_queries.credentials(connection, email, login_limit(request, email))
    # Unknown emails are verified against a dummy hash, so timing does not reveal which emails are registered.
    valid = await run_in_threadpool(verify_password, form.password, found[1] if found else None)
    if found is None or not valid:
        raise BadCredentials
    return Token(access_token=create_access_token(found[0]))
