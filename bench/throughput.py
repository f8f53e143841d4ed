"""Throughput of the long-running server: uvicorn with DB_POOL=queue, authenticated list, 32 clients.

    python bench/throughput.py [--clients 32] [--seconds 5] [--rounds 3]

Serves `GET /api/v1/tasks?tag=x` with uvicorn (one worker process) and drives it from a separate process with
a small keep-alive HTTP/1.1 client (asyncio streams, one connection per simulated client), so the load
generator costs little CPU. The same for the naive reference (bench/naive), with its NullPool as written and
with a QueuePool, for a like-for-like comparison. Reports requests per second, p50 and p99 latency, errors,
the server process's CPU time per request (from /proc, so it excludes the load generator and PostgreSQL) and
how many database sessions each server opened per 100 requests (PostgreSQL's own count, pg_stat_database), which
shows a pool that closes and reopens connections under load.

Exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import PYTHON, ROOT, bench_database_url, ensure_bench_user, migrate, p50, run, table  # noqa: E402

SERVERS = {
    "ours (DB_POOL=queue)": ("app.main:app", {"DB_POOL": "queue"}),
    "naive, NullPool": ("bench.naive.app:app", {}),
    "naive, QueuePool": ("bench.naive.app:app", {"NAIVE_POOL": "queue"}),
}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), without the load generator's or the database's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sessions_opened(url: str) -> int:
    """How many sessions the server has started on the bench database so far (PostgreSQL 14+)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(app: str, env: dict[str, str], url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={
            **os.environ,
            "DATABASE_URL": url,
            "DATABASE_URL_DIRECT": url,
            "ENVIRONMENT": "local",
            "PYTHONPATH": str(ROOT),
            **env,
        },
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"uvicorn {app} exited with {server.returncode}") from None
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"uvicorn {app} did not start")


async def load(port: int, path: str, token: str, clients: int, seconds: float, warmup: float) -> dict:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (now := time.perf_counter()) < stop_at:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                done = time.perf_counter()
                if now >= measure_from:
                    latencies.append(done - now)
                    if status != 200:
                        errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "errors": errors,
        "requests": len(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per server and round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="go round the servers this many times (the machine's load drifts); figures combined",
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: port,token,clients,seconds,warmup
    args = parser.parse_args(argv)
    if args.load:
        port, token = args.load.split(",", 1)
        print(
            json.dumps(
                asyncio.run(load(int(port), "/api/v1/tasks?tag=x", token, args.clients, args.seconds, args.warmup))
            )
        )
        return 0

    from bench._common import bench_token

    url = bench_database_url()
    migrate(url)
    run(ensure_bench_user(url))
    token = bench_token()
    rows: list[list] = []
    rounds: dict[str, list[dict]] = {label: [] for label in SERVERS}
    for _ in range(args.rounds):
        for label, (app, env) in SERVERS.items():
            server, port = start_server(app, env, url)
            try:
                cpu_before, sessions_before = process_cpu_seconds(server.pid), run(sessions_opened(url))
                done = subprocess.run(
                    [
                        PYTHON,
                        str(Path(__file__).resolve()),
                        "--load",
                        f"{port},{token}",
                        "--clients",
                        str(args.clients),
                        "--seconds",
                        str(args.seconds),
                        "--warmup",
                        str(args.warmup),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                if done.returncode != 0:
                    raise SystemExit(f"load generator failed:\n{done.stderr[-2000:]}")
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                # Warm-up requests included in both (the load generator counts only the measured ones).
                served = measured["requests"] * (args.seconds + args.warmup) / args.seconds
                measured["cpu_ms"] = (process_cpu_seconds(server.pid) - cpu_before) * 1000 / max(served, 1)
                measured["sessions"] = run(sessions_opened(url)) - sessions_before - 1  # our own count's session
                measured["served"] = served
                rounds[label].append(measured)
            finally:
                server.terminate()
                server.wait(10)
    results = {
        label: {
            "rps": sum(r["requests"] for r in runs) / (args.seconds * len(runs)),
            "p50_ms": p50([r["p50_ms"] for r in runs]),
            "p99_ms": max(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "cpu_ms": p50([r["cpu_ms"] for r in runs]),
            "sessions_per_100": 100 * sum(r["sessions"] for r in runs) / max(sum(r["served"] for r in runs), 1),
        }
        for label, runs in rounds.items()
    }
    ours = results["ours (DB_POOL=queue)"]["rps"]
    for label, result in results.items():
        rows.append(
            [
                label,
                result["rps"],
                result["p50_ms"],
                result["p99_ms"],
                result["errors"],
                result["cpu_ms"],
                result["sessions_per_100"],
                f"{ours / result['rps']:.2f}" if result["rps"] else "-",
            ]
        )
    print(
        f"GET /api/v1/tasks?tag=x, {args.clients} concurrent keep-alive clients, {args.rounds} rounds of "
        f"{args.seconds:g} s per server (after a warm-up), uvicorn with one worker:\n"
    )
    print(
        table(
            [
                "server",
                "requests/s",
                "p50 ms (median round)",
                "p99 ms (worst round)",
                "errors",
                "server CPU ms/request (median round)",
                "sessions opened per 100 requests",
                "ours / this",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
