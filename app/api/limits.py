"""What the API accepts at the HTTP level, before any route runs: the body's size and its media type.

`BodySizeLimit` is plain ASGI (no BaseHTTPMiddleware: it would add a task and a stream per request). It reads
the whole body, up to the limit, *before* the app sees the request, so an oversized request is answered 413
without any route having run: a route that never reads its body (DELETE with a 2 MB body) cannot act first and
be refused afterwards. Content-Length is only a hint for refusing early; the bytes are counted either way, so a
missing (chunked) or lying header cannot get a larger body through.
"""

from __future__ import annotations

import json
from email.message import Message as MimeMessage
from typing import Any

from fastapi import HTTPException, Request, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
BODY_TOO_LARGE = f"The request body is larger than {MAX_BODY_BYTES:,} bytes (1 MB); send a smaller one."
# The number of body bytes the request had, for `require_declared_media_type` (Lambda events carry no
# Content-Length, so the header cannot tell whether there was a body).
BODY_SIZE_KEY = "task_api.body_size"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        scope[BODY_SIZE_KEY] = size
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # waits for the disconnect, as the server's receive would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _too_large(send: Send) -> None:
    body = json.dumps({"detail": BODY_TOO_LARGE}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # Connection: close, as the rest of the body was not read and must not be taken for the next request.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status.HTTP_413_CONTENT_TOO_LARGE, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _media_type(content_type: str) -> str:
    message = MimeMessage()
    message["content-type"] = content_type
    return message.get_content_type()


def _accepts(declared: str, sent: str) -> bool:
    if declared == "application/json":
        return sent == "application/json" or (sent.startswith("application/") and sent.endswith("+json"))
    return sent == declared


WRONG_MEDIA_TYPE = "This operation takes a body of type {declared}; the request has {what}."


def media_type_problem(request: Request) -> str | None:
    """Why the request's body does not have the media type its operation declares in OpenAPI, or None."""
    route: Any = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None or not request.scope.get(BODY_SIZE_KEY, 1):
        return None
    declared = body_field.field_info.media_type
    sent = request.headers.get("content-type")
    if sent is not None and _accepts(declared, _media_type(sent)):
        return None
    what = f"Content-Type {sent[:100]!r}" if sent is not None else "no Content-Type"
    return WRONG_MEDIA_TYPE.format(declared=declared, what=what)


async def require_declared_media_type(request: Request) -> None:
    """415 for a body of another media type than the operation's.

    Without this, a text/plain or form body sent to a JSON route is a 422 saying "Input should be a valid
    dictionary", and JSON sent to the login form a 422 about missing fields: true, but no hint at the fix.
    """
    problem = media_type_problem(request)
    if problem is not None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=problem)
