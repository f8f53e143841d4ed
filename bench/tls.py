"""What TLS to the database costs: building the SSL context once per process, and round trips per connection.

    python bench/tls.py [--delay-ms 5] [--repeat 9]

1. The SSLContext (app/tls.py, built on the first connection of a process): from the system trust store (OpenSSL's
   default paths, here Debian's CA bundle), from a one-certificate CA file, and without verification (require);
   and `normalize_database_url` for Neon's URL, which is all that happens at import.
2. Round trips a fresh connection waits for (asyncpg connect with the app's arguments, `SELECT 1`, then the
   app's close, which does not wait), counted by scripts/rtt_proxy.py in front of each server, and its latency at
   `--delay-ms` one-way delay:
   - plaintext: the embedded PostgreSQL (SCRAM), sslmode=disable;
   - TLS negotiated with an SSLRequest (the usual way) and direct TLS (`sslnegotiation=direct`), both through
     scripts/tls_terminator.py, which relays the same PostgreSQL (same SCRAM exchange) behind TLS, as Neon's proxy
     does. Neither PgBouncer here (1.18, 1.24) accepts direct TLS;
   - PgBouncer 1.18 requiring TLS (SSLRequest) beside the same PgBouncer without TLS, for the pooler's own figure.

Prints tables; exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_database_url, table  # noqa: E402

NEON = "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
EOF_HOLD = 0.25


def context_costs(repeat: int, ca_file: str) -> list[list[str]]:
    from app.config import normalize_database_url
    from app.tls import TlsPolicy, _build_context

    def timed(build) -> float:
        samples = []
        for _ in range(repeat):
            _build_context.cache_clear()
            started = time.perf_counter()
            build()
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    os.environ.pop("SSL_CERT_FILE", None)
    neon = f"{NEON}?sslmode=require&channel_binding=require"
    rows = [
        ["normalize_database_url(Neon's URL), at import", f"{timed(lambda: normalize_database_url(neon)):.3f}"],
        [
            "context: system trust store (verify-full)",
            f"{timed(lambda: _build_context(TlsPolicy('verify-full'), None, None)):.2f}",
        ],
        [
            "context: a CA file of one certificate",
            f"{timed(lambda: _build_context(TlsPolicy('verify-full', ca_file), None, None)):.2f}",
        ],
        [
            "context: require (no verification)",
            f"{timed(lambda: _build_context(TlsPolicy('require'), None, None)):.2f}",
        ],
    ]
    return rows


async def one_connection(url: str) -> None:
    from app.config import normalize_database_url, settings
    from app.db import connect_to

    connection = await connect_to(normalize_database_url(url), settings)
    await connection.fetchval("SELECT 1")
    connection.terminate()  # the app's close (app/db.py close_without_waiting)


def measure(name: str, upstream: tuple[str, int], url_for, delay_ms: float, repeat: int) -> list[str]:
    from sqlalchemy.engine import make_url

    from scripts.rtt_proxy import RttProxy, total

    proxy = RttProxy(upstream[0], upstream[1], delay_ms).start()
    try:
        url = url_for(proxy.port)
        proxy.eof_hold = EOF_HOLD
        mark = proxy.mark()
        asyncio.run(one_connection(url))
        counted = total(proxy.wait_idle(mark))
        proxy.eof_hold = 0.0
        latencies = []
        for _ in range(repeat):
            mark = proxy.mark()
            started = time.perf_counter()
            asyncio.run(one_connection(url))
            latencies.append((time.perf_counter() - started) * 1000)
            proxy.wait_idle(mark)
    finally:
        proxy.stop()
    host = make_url(url).host
    return [name, host or "", str(counted["round_trips"]), f"{statistics.median(latencies):.1f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    os.environ.setdefault("ENVIRONMENT", "local")

    from sqlalchemy.engine import make_url

    from app.dev.certificates import ensure_local_tls
    from scripts.tls_terminator import TlsTerminator
    from tests.pooler import pgbouncer as pgb

    folder = Path(tempfile.mkdtemp(prefix="task-api-bench-tls-"))
    ca, server = ensure_local_tls(folder, ("localhost", "127.0.0.1"))
    print(f"SSLContext and URL costs, median of {args.repeat}, ms")
    print(table(["what", "ms"], context_costs(args.repeat, str(ca.cert))))

    os.environ["SSL_CERT_FILE"] = str(ca.cert)  # the "system" store trusts the local CA, as it trusts Neon's
    base = make_url(bench_database_url())
    pg = (base.host or "127.0.0.1", base.port or 5432)
    front = TlsTerminator(pg, server).start()
    tls_bouncer = pgb.start(base.render_as_string(False), auth_type="scram-sha-256", tls=server)
    plain_bouncer = pgb.start(base.render_as_string(False), auth_type="scram-sha-256")

    def at(port: int, query: str = "", url=base, host: str = "localhost") -> str:
        text = url.set(host=host, port=port).render_as_string(False)
        return f"{text}?{query}" if query else text

    neon = "sslmode=require&channel_binding=require"
    cases = [
        ("PostgreSQL, plaintext", pg, lambda port: at(port, "sslmode=disable")),
        ("PostgreSQL behind TLS, SSLRequest (Neon's URL)", ("127.0.0.1", front.port), lambda port: at(port, neon)),
        (
            "PostgreSQL behind TLS, direct (+sslnegotiation=direct)",
            ("127.0.0.1", front.port),
            lambda port: at(port, f"{neon}&sslnegotiation=direct"),
        ),
        (
            "PgBouncer 1.18, plaintext",
            ("127.0.0.1", plain_bouncer.port),
            lambda port: at(port, "sslmode=disable", make_url(plain_bouncer.url())),
        ),
        (
            "PgBouncer 1.18, TLS by SSLRequest (Neon's URL)",
            ("127.0.0.1", tls_bouncer.port),
            lambda port: at(port, neon, make_url(tls_bouncer.url())),
        ),
    ]
    try:
        rows = [measure(name, upstream, url_for, args.delay_ms, args.repeat) for name, upstream, url_for in cases]
    finally:
        front.stop()
        tls_bouncer.stop()
        plain_bouncer.stop()
    print(f"\nOne fresh connection + SELECT 1, at {args.delay_ms:g} ms one-way delay (median of {args.repeat})")
    print(table(["server", "host", "round trips", "ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
