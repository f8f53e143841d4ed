"""Password hashing (argon2 via pwdlib) and access tokens (HS256 JWT).

The hasher is imported on first use: only register, login and password changes need it, and it is not free to
import on a Lambda cold start.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

import jwt

from app.config import settings

if TYPE_CHECKING:
    from pwdlib import PasswordHash


@cache
def _hasher() -> PasswordHash:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    if settings.FAST_PASSWORD_HASHING:  # ENVIRONMENT=test only (app/config.py)
        return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    return PasswordHash((Argon2Hasher(),))


# Verified against when an email is unknown, so that login costs one argon2 verify whether or not the email is
# registered: the work of a verify depends only on the parameters in the hash (m, t, p, lengths), not on the
# password. A constant rather than hashed at first use, which would make the first unknown-email login of
# every process (every Lambda instance) cost a hash and a verify. tests/test_auth_attacks.py keeps its
# parameters equal to those of the hashes hash_password makes; bench/login_timing.py measures the result.
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$dO7irFe0156ae2bzVePxEQ$bttohWoIVZVxKS/+KfVUhodzOrbXHAhdDjsvw7Kg73g"


@cache
def dummy_hash() -> str:
    """DUMMY_HASH, or under FAST_PASSWORD_HASHING a hash of the hasher's own cheap parameters (made once)."""
    if settings.FAST_PASSWORD_HASHING:
        return _hasher().hash("dummy-password-for-constant-time-login")
    return DUMMY_HASH


# Each argon2 hash or verify holds 64 MiB (m=65536) for its duration, and Starlette's threadpool runs up to 40
# of them at once: a burst of 50 registrations took a uvicorn server to 2.5 GB (bench/load.py). More hashes in
# flight than cores only queue inside the CPU anyway, so this bounds memory at no cost in throughput. (On Lambda
# a process serves one request at a time, so it never waits here.)
HASHING_SLOTS = max(2, os.cpu_count() or 2)
_hashing = threading.BoundedSemaphore(HASHING_SLOTS)


def hash_password(password: str) -> str:
    with _hashing:
        return _hasher().hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Check `password` against `hashed`; with `hashed=None` do the same work and return False."""
    with _hashing:
        if hashed is None:
            _hasher().verify(password, dummy_hash())
            return False
        return _hasher().verify(password, hashed)


def create_access_token(user_id: uuid.UUID, *, now: datetime | None = None, minutes: int | None = None) -> str:
    issued = now or datetime.now(UTC)
    lifetime = timedelta(minutes=minutes if minutes is not None else settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    claims = {"sub": str(user_id), "iat": issued, "exp": issued + lifetime}
    return jwt.encode(claims, settings.secret_key, algorithm=settings.ALGORITHM)


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or names no user id."""


class AccessToken(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """What a verified token says: whose it is, and when it was issued (whole seconds, as JWT `iat` is)."""

    user_id: uuid.UUID
    issued_at: datetime


# Tokens that passed the full check below, by their whole text: a warm process sees the same few tokens again and
# again (a client sends its token with every request until it expires), and PyJWT's decode is a good part of a
# warm request's CPU. Why a hit is as strict as a full check:
# - everything the full check looks at, except the clock, is a function of the token's text and the key: the
#   header's algorithm, the signature, the JSON, the required claims, `sub` being a UUID. Only a text that passed
#   is stored, so a forged, altered or differently signed token is a different key, never found here; the key
#   and algorithm are part of the entry and compared on every hit;
# - what depends on the clock (`exp`, `iat` and `nbf` against now, no leeway, as PyJWT does) is checked again on
#   every hit, so no token outlives its `exp`;
# - revocation (user deleted, password changed since `iat`) is not decided here but by the request's statement,
#   for hits and misses alike.
# Bounded, oldest first out: at most VERIFIED_TOKENS_KEPT small entries per process, whatever clients send.
VERIFIED_TOKENS_KEPT = 256
_verified: dict[str, tuple[AccessToken, float, float, str, str]] = {}


def read_access_token(token: str) -> AccessToken:
    """Verify `token`. Only the configured algorithm is accepted (so never `alg: none`).

    Whether the user still exists, and has not changed their password since `issued_at`, is checked by the
    statement that does the request's work (app/queries/users.py: `authorised`).
    """
    hit = _verified.get(token)
    if hit is not None and hit[3] == settings.secret_key and hit[4] == settings.ALGORITHM:
        access, valid_from, expires, _, _ = hit
        if valid_from <= time.time() < expires:
            return access
        raise InvalidToken("the token has expired or is not valid yet")
    try:
        claims = jwt.decode(
            token, settings.secret_key, algorithms=[settings.ALGORITHM], options={"require": ["sub", "exp", "iat"]}
        )
        access = AccessToken(uuid.UUID(claims["sub"]), datetime.fromtimestamp(int(claims["iat"]), UTC))
        # PyJWT has checked these are integers; "nbf" is optional.
        valid_from = max(int(claims["iat"]), int(claims.get("nbf", claims["iat"])))
        expires = int(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, OSError) as error:
        raise InvalidToken(str(error)) from None
    if len(_verified) >= VERIFIED_TOKENS_KEPT:
        _verified.pop(next(iter(_verified)), None)
    _verified[token] = (access, valid_from, expires, settings.secret_key, settings.ALGORITHM)
    return access
