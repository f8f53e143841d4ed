"""A small Lambda Runtime API (the HTTP interface the real bootstrap polls), on 127.0.0.1, for awslambdaric.

The protocol, as documented by AWS ("Using the Lambda runtime API for custom runtimes"):
  GET  /2018-06-01/runtime/invocation/next              -> the next event; request id etc. in headers
  POST /2018-06-01/runtime/invocation/{id}/response     -> the handler's result
  POST /2018-06-01/runtime/invocation/{id}/error        -> the handler raised
  POST /2018-06-01/runtime/init/error                   -> importing the handler failed
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:task-api-dev-api"
TRACE_ID = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"


class FakeRuntimeApi:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any], str]] = queue.Queue()
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.init_errors: list[dict[str, Any]] = []
        self.done = threading.Condition()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> FakeRuntimeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: dict[str, Any], trace_id: str = TRACE_ID) -> str:
        """Queue an event; returns its request id. `trace_id` is the invocation's X-Ray header, which the
        runtime puts in _X_AMZN_TRACE_ID for that invocation (the real service sends a new one each time)."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event, trace_id))
        return request_id

    def wait_for(self, request_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.done:
            while not all(r in self.results or r in self.errors for r in request_ids) and not self.init_errors:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer for {[r for r in request_ids if r not in self.results]}")
                self.done.wait(remaining)

    def _record(self, kind: str, key: str | None, body: dict[str, Any]) -> None:
        with self.done:
            if kind == "response":
                self.results[key or ""] = body
            elif kind == "error":
                self.errors[key or ""] = body
            else:
                self.init_errors.append(body)
            self.done.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404)
                while not api.stopping.is_set():  # long poll, like the real API
                    try:
                        request_id, event, trace_id = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    deadline_ms = int((time.time() + 25) * 1000)
                    return self._reply(
                        200,
                        json.dumps(event).encode(),
                        {
                            "Content-Type": "application/json",
                            "Lambda-Runtime-Aws-Request-Id": request_id,
                            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                            "Lambda-Runtime-Trace-Id": trace_id,
                        },
                    )
                return self._reply(503)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts[:1] == ["invocation"] and len(parts) == 3 and parts[2] in {"response", "error"}:
                    api._record(parts[2], parts[1], body)
                    return self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                if parts == ["init", "error"]:
                    api._record("init", None, body)
                    return self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                return self._reply(404)

        return Handler
