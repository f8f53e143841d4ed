"""The per-client limit on login and register: who the client is, and which counters an attempt bumps.

The counters live in PostgreSQL (app/queries/rate_limit.py) and are bumped by the statement each route
already runs. Keys:
- the client IP, for both routes. Through API Gateway it is the connection's source address
  (requestContext sourceIp, which Mangum puts in scope["client"]), which a client cannot forge with headers.
  IPv6 clients are keyed by their /64: one subscriber usually holds a whole /64 and could rotate within it.
- for login, also the email: credential stuffing and password guessing from many addresses against one account
  are limited too. The price is that anyone can keep one account's login answering 429 for a window at a
  time; that is bounded (Retry-After says when it ends) and the password is never confirmed or revealed.
  The email is hashed, so the table is no list of typed (and mistyped) addresses.
Register is keyed by IP only: a repeated email there is already a 409.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time

from fastapi import Request

from app.config import settings
from app.queries.rate_limit import AttemptLimit


def client_address(request: Request) -> str:
    host = request.client.host if request.client else ""
    # Behind an ALB, Mangum passes X-Forwarded-For whole: only its last entry was written by the balancer.
    host = host.rsplit(",", 1)[-1].strip()
    try:
        address = ipaddress.ip_interface(host).ip  # API Gateway test payloads may say "192.168.0.1/32"
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _limit(*keys: str) -> AttemptLimit | None:
    attempts, window = settings.AUTH_RATE_LIMIT_ATTEMPTS, settings.AUTH_RATE_LIMIT_WINDOW_SECONDS
    if attempts == 0 or window == 0:
        return None
    return AttemptLimit(keys=keys, attempts=attempts, window_seconds=window)


def ip_key(request: Request) -> str:
    return f"ip:{client_address(request)}"


def email_key(email: str) -> str:
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


def login_limit(request: Request, email: str) -> AttemptLimit | None:
    return _limit(ip_key(request), email_key(email))


def register_limit(request: Request) -> AttemptLimit | None:
    return _limit(ip_key(request))


class RecentlyLimited:
    """Clients this process has answered 429, until their window ends (as the database reported it).

    Register must hash the password before its statement (argon2, tens of ms of CPU), so without this a
    limited client could still make every instance hash for it. An instance that has told a client 429
    answers its next attempts at once, with no hash and no statement, until that window ends; the database
    stays the only source of the verdict (its count only grows within a window, so the answer is the same).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._until: dict[str, float] = {}

    def retry_after(self, key: str) -> int | None:
        until = self._until.get(key)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._until[key]
            return None
        return max(math.ceil(left), 1)

    def remember(self, key: str, retry_after: int) -> None:
        if len(self._until) >= self._capacity:
            now = time.monotonic()
            self._until = {k: until for k, until in self._until.items() if until > now}
            while len(self._until) >= self._capacity:  # all still limited: forget the oldest
                del self._until[next(iter(self._until))]
        self._until[key] = time.monotonic() + retry_after


recently_limited = RecentlyLimited()
