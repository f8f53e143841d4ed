"""A scripted PostgreSQL endpoint on 127.0.0.1, for outages the real server cannot stage on demand.

`FakeEndpoint` extends scripts/rtt_proxy.py's `RttProxy` (its thread, loop, listener and byte pipe): each
incoming connection gets the next action of a script, then the default action:

- FORWARD: a byte pipe to the real test PostgreSQL, with the client's protocol messages read on the way
  (Parse and Query texts, Execute count) and optionally the connection cut right after a chosen statement;
- DROP: accept and close at once (a server that hangs up);
- SILENT: accept and never answer (a host that swallows packets after the TCP handshake);
- STALL_AFTER_SSL: answer the SSLRequest with 'N', then never answer the startup packet (a handshake that
  never completes);
- PgError(sqlstate, message): read the startup packet and answer a real ErrorResponse, then close, as
  PostgreSQL does while starting up (57P03) or Neon's proxy does while a compute wakes up (XX000).

`pause()` closes the listener (connections are then refused by the kernel: nothing listens) and `resume()`
listens again on the same port. Every connection is recorded as an `Attempt` with its accept time.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.rtt_proxy import RttProxy

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

FORWARD = "forward"
DROP = "drop"
SILENT = "silent"
STALL_AFTER_SSL = "stall-after-ssl"


@dataclass(frozen=True)
class PgError:
    sqlstate: str
    message: str
    severity: str = "FATAL"

    def wire(self) -> bytes:
        """The ErrorResponse message ('E'), as the server sends it."""
        pairs = ((b"S", self.severity), (b"V", self.severity), (b"C", self.sqlstate), (b"M", self.message))
        fields = b"".join(code + value.encode() + b"\0" for code, value in pairs)
        body = fields + b"\0"
        return b"E" + struct.pack("!I", len(body) + 4) + body


Action = str | PgError


@dataclass
class Attempt:
    at: float  # time.monotonic() at accept
    action: Action
    cancel_request: bool = False  # a CancelRequest connection (asyncpg opens one to cancel a statement)
    parsed: list[str] = field(default_factory=list)  # Parse (extended protocol) statement texts
    queries: list[str] = field(default_factory=list)  # Query (simple protocol) texts
    executes: int = 0
    cut: bool = False


class _ClientTap:
    """Wraps the client's StreamReader for the pipe: reads PostgreSQL messages as they pass, and ends the
    client's side of the connection right after the Execute of a statement `cut_after` selects."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attempt: Attempt, cut_after):
        self.reader, self.writer, self.attempt, self.cut_after = reader, writer, attempt, cut_after
        self.buffer = b""
        self.startup = True  # untyped packets until the StartupMessage
        self.last_parse = ""
        self.cutting = False

    async def read(self, n: int) -> bytes:
        if self.cutting:
            return b""  # the server gets EOF after everything the client sent (it finishes the statement)
        data = await self.reader.read(n)
        self.buffer += data
        self._scan()
        if self.cutting:
            # The reply must never reach the client: it sees the connection lost after its statement left.
            self.attempt.cut = True
            self.writer.transport.abort()
        return data

    def _scan(self) -> None:
        while True:
            if self.startup:
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!II", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                self.buffer = self.buffer[length:]
                if code == CANCEL_REQUEST:
                    self.attempt.cancel_request = True
                if code not in (SSL_REQUEST, GSSENC_REQUEST):
                    self.startup = False
                continue
            if len(self.buffer) < 5:
                return
            tag, length = self.buffer[:1], struct.unpack("!I", self.buffer[1:5])[0]
            if len(self.buffer) < 1 + length:
                return
            body, self.buffer = self.buffer[5 : 1 + length], self.buffer[1 + length :]
            if tag == b"P":
                _name, _, rest = body.partition(b"\0")
                self.last_parse = rest.partition(b"\0")[0].decode(errors="replace")
                self.attempt.parsed.append(self.last_parse)
            elif tag == b"Q":
                self.attempt.queries.append(body.rstrip(b"\0").decode(errors="replace"))
            elif tag == b"E":
                self.attempt.executes += 1
                if self.cut_after is not None and self.cut_after(self.last_parse):
                    self.cutting = True


class FakeEndpoint(RttProxy):
    """See the module docstring. `start()` it, point a URL at `port`, `stop()` it."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        script: list[Action] | None = None,
        default: Action = FORWARD,
        cut_after: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(upstream_host, upstream_port)
        self.script = list(script or [])
        self.default = default
        self.cut_after = cut_after
        self.attempts: list[Attempt] = []
        self._attempts_lock = threading.Lock()

    # --- what tests read ---------------------------------------------------------------------------------

    def logins(self) -> list[Attempt]:
        """Connection attempts, CancelRequests left out."""
        return [attempt for attempt in self.attempts if not attempt.cancel_request]

    def statements(self, prefix: str) -> int:
        """How many times a statement starting with `prefix` was sent (Parse or Query), on any connection."""
        texts = [text for attempt in self.attempts for text in (*attempt.parsed, *attempt.queries)]
        return sum(text.lstrip().upper().startswith(prefix.upper()) for text in texts)

    # --- refusing connections ----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop listening: new connections are refused (open ones are left alone)."""
        assert self._loop is not None and self._server is not None

        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    def resume(self) -> None:
        """Listen again, on the same port."""
        assert self._loop is not None

        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, self.listen[0], self.port)

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(5)

    # --- the connection handler --------------------------------------------------------------------------

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with self._attempts_lock:
            index = len(self.attempts)
            action = self.script[index] if index < len(self.script) else self.default
            attempt = Attempt(time.monotonic(), action)
            self.attempts.append(attempt)
        try:
            if action == FORWARD:
                tap = _ClientTap(client_reader, client_writer, attempt, self.cut_after)
                await super()._handle(tap, client_writer)  # type: ignore[arg-type]
            elif action == DROP:
                client_writer.transport.abort()
            elif action == SILENT:
                await asyncio.Event().wait()  # until stop() cancels us
            elif action == STALL_AFTER_SSL:
                if await self._read_ssl_request(client_reader):
                    client_writer.write(b"N")
                    await client_writer.drain()
                await asyncio.Event().wait()
            elif isinstance(action, PgError):
                if await self._read_ssl_request(client_reader):
                    client_writer.write(b"N")
                    await client_writer.drain()
                    await self._read_packet(client_reader)
                client_writer.write(action.wire())
                await client_writer.drain()
                client_writer.close()
            else:  # pragma: no cover - a typo in a test's script
                raise ValueError(f"unknown action {action!r}")
        except (ConnectionError, asyncio.IncompleteReadError):
            client_writer.transport.abort()
        except asyncio.CancelledError:
            # stop() ends connections still open. Ending quietly: asyncio's streams would log the cancellation
            # of a connection handler as an error.
            client_writer.transport.abort()
        finally:
            with contextlib.suppress(Exception):
                if action != FORWARD:
                    client_writer.close()

    @staticmethod
    async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        length = struct.unpack("!I", await reader.readexactly(4))[0]
        body = await reader.readexactly(length - 4)
        return length, body

    async def _read_ssl_request(self, reader: asyncio.StreamReader) -> bool:
        """Read the client's first packet; True if it was an SSLRequest (a StartupMessage follows)."""
        _length, body = await self._read_packet(reader)
        return struct.unpack("!I", body[:4])[0] == SSL_REQUEST


def endpoint_for(database_url: str, **options) -> FakeEndpoint:
    """A started FakeEndpoint in front of `database_url`'s server."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return FakeEndpoint(url.host or "127.0.0.1", url.port or 5432, **options).start()


def url_through(database_url: str, endpoint: FakeEndpoint, **parts) -> str:
    """`database_url` with its port (and any other `parts`, e.g. password) changed to reach `endpoint`."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(port=endpoint.port, **parts).render_as_string(hide_password=False)
