"""Opaque keyset-pagination cursors: the sort key of a page's last row, signed and bound to its query.

A cursor is `base64url(json(key)) "." base64url(hmac)`. The MAC covers the key and a binding string (the user,
the sort and the filters), so a cursor that was edited, forged, or replayed with another sort or other filters
is refused instead of silently returning a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from functools import cache
from typing import Any

from app.config import settings

MAC_BYTES = 16


class InvalidCursor(ValueError):
    """The cursor is malformed, was tampered with, or belongs to a different query."""


@cache
def _key(secret: str) -> bytes:
    # A key of its own, derived from SECRET_KEY, so a cursor MAC can never double as a token signature.
    return hashlib.sha256(b"task-api cursor v1\x00" + secret.encode()).digest()


def _mac(payload: bytes, binding: str) -> bytes:
    message = payload + b"\x00" + binding.encode()
    return hmac.new(_key(settings.secret_key), message, hashlib.sha256).digest()[:MAC_BYTES]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: list[Any], binding: str) -> str:
    payload = json.dumps(key, separators=(",", ":")).encode()
    return f"{_b64encode(payload)}.{_b64encode(_mac(payload, binding))}"


def decode_cursor(cursor: str, binding: str) -> list[Any]:
    """The key list of a cursor made by `encode_cursor` with the same binding, or InvalidCursor."""
    body, dot, signature = cursor.partition(".")
    if not dot:
        raise InvalidCursor("is not a cursor returned by this API (use next_cursor unchanged)")
    try:
        payload, mac = _b64decode(body), _b64decode(signature)
    except (binascii.Error, ValueError):
        raise InvalidCursor("is not a cursor returned by this API (use next_cursor unchanged)") from None
    if not hmac.compare_digest(mac, _mac(payload, binding)):
        raise InvalidCursor(
            "does not match this query: it was modified, or the sort or filters changed since it was issued"
        )
    try:
        key = json.loads(payload)
    except ValueError:
        raise InvalidCursor("is not a cursor returned by this API") from None
    if not isinstance(key, list):
        raise InvalidCursor("is not a cursor returned by this API")
    return key
