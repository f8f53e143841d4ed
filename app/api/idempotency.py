"""The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header-06): reading it, and the
fingerprint of the request it is sent with.

The header's value is a Structured Field string (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`); an unquoted value
is accepted too, as Stripe's clients send one. The key is then recorded by the write's own statement
(app/queries/idempotency.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import BaseModel

from app.api.problems import MalformedIdempotencyKey
from app.queries.idempotency import Claim

MAX_KEY_LENGTH = 255

# sf-string: printable ASCII between double quotes, where `"` and `\` are escaped with a backslash.
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_UNQUOTED = re.compile(r"[\x21\x23-\x7e][\x21-\x7e]*")  # visible ASCII, not starting with a quote
_ESCAPE = re.compile(r"\\([\"\\])")


def parse_key(value: str) -> str:
    """The key a header value carries; MalformedIdempotencyKey when it carries none."""
    value = value.strip(" \t")
    if quoted := _QUOTED.fullmatch(value):
        key = _ESCAPE.sub(r"\1", quoted.group(1))
    elif _UNQUOTED.fullmatch(value):
        key = value
    else:
        raise MalformedIdempotencyKey
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise MalformedIdempotencyKey
    return key


async def idempotency_key(
    request: Request,
    header: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Optional. A unique value per change (a UUID, say), as a quoted string. A retry with the same key "
                "and the same request is answered as the first time (with `Idempotent-Replayed: true`) and "
                "writes nothing; the same key with another request is a 422. Keys are scoped to the user and "
                "the operation, and are remembered for IDEMPOTENCY_KEY_TTL_HOURS (24 by default)."
            ),
            examples=['"8e03978e-40d5-43e8-bc93-6894a57f9324"'],
        ),
    ] = None,
) -> str | None:
    """The request's key, or None without the header."""
    if header is None:
        return None
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise MalformedIdempotencyKey  # two keys: which one the client meant cannot be known
    return parse_key(header)


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


def claim_for(key: str | None, request: Request, body: BaseModel, **parameters: Any) -> Claim | None:
    """The claim a keyed request makes (None without a key): its operation and its fingerprint.

    The fingerprint is the SHA-256 of the method, the route's path template, the route's parameters as
    validated (`parameters`: path parameters and If-Match), and the body as validated, in canonical JSON (keys
    sorted, fields the client did not send left out). So two requests that mean the same match, whatever their
    JSON's key order or whitespace.
    """
    if key is None:
        return None
    route = request.scope["route"]
    request_shape = [
        request.method,
        route.path_format,
        parameters,
        body.model_dump(mode="json", exclude_unset=True),
    ]
    canonical = json.dumps(request_shape, sort_keys=True, separators=(",", ":"), default=str)
    return Claim(key, route.operation_id, hashlib.sha256(canonical.encode()).hexdigest())
