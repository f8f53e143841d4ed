"""Fixtures that invoke app.handler.handler the way the Lambda runtime does.

Nothing from `app` is imported at module level: pytest loads this file before the root conftest has pointed
the settings at the test database.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.aws_lambda.support import FakeContext


def event_path(event: dict[str, Any]) -> str:
    return str(event.get("rawPath") or event.get("path") or "?")


Invoke = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="module")
def lambda_thread():
    # On Lambda, import and invocations happen on the same (main) thread, where Mangum's constructor has set
    # up the loop it then keeps. This thread gets its loop the same way, once, and keeps it for the module.
    executor = ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix="lambda",
        initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop()),
    )
    yield executor
    executor.shutdown()


@pytest.fixture
def invoke(lambda_thread, leak_watch) -> Invoke:
    """`await invoke(event)`: the handler's response, computed on the long-lived 'Lambda' thread (and
    scanned for secrets by the root conftest's `leak_watch`)."""
    from app.handler import handler

    async def run(event: dict[str, Any], lambda_handler=None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(lambda_thread, lambda_handler or handler, event, FakeContext())
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        leak_watch.scan(f"the Lambda response to {event_path(event)}", f"{json.dumps(response)}\n{body}", tokens=False)
        return response

    return run


@pytest.fixture
def handler_for_base_path(monkeypatch):
    """app.handler rebuilt as Lambda would build it with API_BASE_PATH set."""

    def build(base_path: str):
        import app.handler
        from app.config import settings

        monkeypatch.setattr(settings, "API_BASE_PATH", base_path)
        return importlib.reload(app.handler).handler

    yield build
    monkeypatch.undo()
    import app.handler

    importlib.reload(app.handler)
