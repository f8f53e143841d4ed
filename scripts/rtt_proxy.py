"""A TCP proxy in front of PostgreSQL that adds network delay and counts the round trips a client waits for.

    python scripts/rtt_proxy.py --upstream 127.0.0.1:54329 --delay-ms 5 [--listen 127.0.0.1:0] [--log x.jsonl]

prints `listening <port>` and, for every connection once both sides have closed, one JSON line (to --log, or
stdout) with its round trips and bytes. The benchmarks use the `RttProxy` class in a thread of their own.

Round trips are counted in "flights": a flight is a burst of client bytes sent after the server has sent
something (the TCP connect counts as the server's first word, and as one round trip of its own). A flight
counts as a round trip the client waited for when the server answers it with data, or when the server closes
its side and the client is still there once that close has been delivered to it. A flight the client sends and
then closes without waiting for (a Terminate on the way out) is reported as `unwaited`, not as a round trip.

Whether a client waits for the server's close cannot be told from timing alone when the delay is small (a
client that does not wait still closes its socket a moment later, on its event loop's next turn). With
`eof_hold_ms` the proxy holds the server's close back that much longer before passing it on: a client that
waits for it is still connected when it arrives; one that does not has long gone. The benchmarks count with a
hold and time without one.

Delay: every chunk is delivered `delay` seconds after it arrived, per direction, in order. The connect itself
is simulated too: nothing the client sends leaves before `2 x delay` after the accept (SYN, SYN-ACK, then data
with the ACK), so a fresh connection costs one more round trip of latency, as it does over a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field


@dataclass
class ConnectionStats:
    """What one client connection cost."""

    round_trips: int = 1  # the TCP connect
    unwaited: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    flights_up: list[int] = field(default_factory=list)  # bytes per client flight, waited-for or not
    opened: float = 0.0
    closed: float = 0.0
    trace: list[str] = field(default_factory=list)  # ">" client or "<" server, then the chunk's first bytes

    def as_dict(self) -> dict:
        return asdict(self)


class _FlightCounter:
    """The flight state machine of one connection (see the module docstring)."""

    def __init__(self, stats: ConnectionStats) -> None:
        self.stats = stats
        self.server_spoke = True  # the connect's SYN-ACK: the client's first bytes start a flight
        self.pending = False
        self.client_gone = False

    def client_bytes(self, n: int) -> None:
        self.stats.bytes_up += n
        if self.server_spoke:
            self.server_spoke = False
            self.pending = True
            self.stats.flights_up.append(n)
        else:
            self.stats.flights_up[-1] += n

    def server_bytes(self, n: int) -> None:
        self.stats.bytes_down += n
        self._answered()

    def server_close_delivered(self) -> None:
        if not self.client_gone:
            self._answered()

    def client_closed(self) -> None:
        self.client_gone = True
        if self.pending:  # sent and left without waiting for an answer
            self.pending = False
            self.stats.unwaited += 1

    def _answered(self) -> None:
        if self.pending:
            self.pending = False
            self.stats.round_trips += 1
        self.server_spoke = True


class _DelayedPipe:
    """Delivers chunks from a reader to a writer, each `delay` after it arrived (not before `not_before`)."""

    def __init__(self, delay: float, not_before: float = 0.0, eof_hold: float = 0.0, on_eof=None) -> None:
        self.delay = delay
        self.not_before = not_before
        self.eof_hold = eof_hold
        self.on_eof = on_eof
        self.queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    def put(self, data: bytes | None) -> None:
        due = max(time.monotonic(), self.not_before) + self.delay + (self.eof_hold if data is None else 0.0)
        self.queue.put_nowait((due, data))

    async def drain_to(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                due, data = await self.queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if self.on_eof is not None:
                        self.on_eof()
                    with contextlib.suppress(Exception):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return


class RttProxy:
    """The proxy. `start()` runs it on its own event loop in a daemon thread; `connections` fills up."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        delay_ms: float = 0.0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        on_close=None,
        eof_hold_ms: float = 0.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay_ms / 1000.0
        self.eof_hold = eof_hold_ms / 1000.0  # may be changed between requests
        self.listen = (listen_host, listen_port)
        self.on_close = on_close
        self.connections: list[ConnectionStats] = []  # closed ones
        self.every_connection: list[ConnectionStats] = []  # open ones too (for long-lived pooled connections)
        self.port: int = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._open = 0

    # --- thread API -------------------------------------------------------------------------------------

    def start(self) -> RttProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="rtt-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def mark(self) -> int:
        """A position in `connections` (call it while no connection is open); see `wait_idle`."""
        with self._lock:
            return len(self.connections)

    def wait_idle(self, since: int, timeout: float = 10.0) -> list[ConnectionStats]:
        """Wait until no connection is open; return the stats of those closed since `mark()` gave `since`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._open and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return self.connections[since:]

    def round_trips_so_far(self) -> int:
        """Round trips of every connection so far, open ones included: take differences around a request."""
        with self._lock:
            return sum(c.round_trips for c in self.every_connection)

    @property
    def url_host_port(self) -> tuple[str, int]:
        return self.listen[0], self.port

    # --- the proxy ----------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            await self._relay(client_reader, client_writer)
        except asyncio.CancelledError:
            # stop() cancels the connections still open (a DB_POOL=single client's kept one). Python 3.11's
            # start_server calls task.exception() on a cancelled handler, which raises and is logged as an error
            # (3.12 checks task.cancelled() first), so the handler ends normally instead.
            client_writer.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        accepted = time.monotonic()
        stats = ConnectionStats(opened=time.time())
        with self._lock:
            self._open += 1
            self.every_connection.append(stats)
        counter = _FlightCounter(stats)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            self._finish(stats)
            return
        # Client data may leave only once the simulated handshake is over (SYN + SYN-ACK: 2 x delay).
        up = _DelayedPipe(self.delay, not_before=accepted + 2 * self.delay)
        down = _DelayedPipe(self.delay, eof_hold=self.eof_hold, on_eof=counter.server_close_delivered)

        async def pump(reader: asyncio.StreamReader, pipe: _DelayedPipe, on_data, on_eof, arrow: str) -> None:
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    on_data(len(data))
                    stats.trace.append(arrow + data[:1].decode("latin-1") + str(len(data)))
                    pipe.put(data)
            except (ConnectionError, OSError):
                pass
            on_eof()
            stats.trace.append(arrow + "EOF")
            pipe.put(None)

        tasks = [
            asyncio.create_task(pump(client_reader, up, counter.client_bytes, counter.client_closed, ">")),
            asyncio.create_task(pump(server_reader, down, counter.server_bytes, lambda: None, "<")),
            asyncio.create_task(up.drain_to(server_writer)),
            asyncio.create_task(down.drain_to(client_writer)),
        ]
        await asyncio.gather(*tasks[:2])
        await asyncio.gather(*tasks[2:])
        for writer in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                writer.close()
        stats.closed = time.time()
        self._finish(stats)

    def _finish(self, stats: ConnectionStats) -> None:
        with self._changed:
            self.connections.append(stats)
            self._open -= 1
            self._changed.notify_all()
        if self.on_close is not None:
            self.on_close(stats)


def total(connections: list[ConnectionStats]) -> dict:
    """Round trips, unwaited flights and bytes summed over a request's connections."""
    return {
        "connections": len(connections),
        "round_trips": sum(c.round_trips for c in connections),
        "unwaited": sum(c.unwaited for c in connections),
        "bytes_up": sum(c.bytes_up for c in connections),
        "bytes_down": sum(c.bytes_down for c in connections),
        "trace": " ".join(" ".join(c.trace) for c in connections),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="host:port of the PostgreSQL server")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0: any free port)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added per direction")
    parser.add_argument(
        "--eof-hold-ms",
        type=float,
        default=50.0,
        help="hold the server's close back this long (tells waiting clients from leaving ones)",
    )
    parser.add_argument("--log", help="append one JSON line per closed connection here (default: stdout)")
    args = parser.parse_args(argv)
    up_host, _, up_port = args.upstream.rpartition(":")
    host, _, port = args.listen.rpartition(":")
    out = open(args.log, "a", buffering=1) if args.log else sys.stdout  # noqa: SIM115 - lives as long as we do

    def log(stats: ConnectionStats) -> None:
        print(json.dumps(stats.as_dict()), file=out, flush=True)

    proxy = RttProxy(
        up_host, int(up_port), args.delay_ms, host, int(port), on_close=log, eof_hold_ms=args.eof_hold_ms
    ).start()
    print(f"listening {proxy.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
