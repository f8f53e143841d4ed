"""The mixed load (tests/pooler/mixed_load.py) against a real uvicorn behind a real pgbouncer, with the server's
memory watched: the one procedure behind tests/pooler/test_load.py (asserts) and bench/load.py (prints).

The server is one uvicorn process (so its RSS is the whole server); the client runs in the caller's process, so
the server's CPU and memory are its own. A thread samples the server's RSS and pgbouncer's pool while the load
runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.pooler import pgbouncer as pgb
from tests.pooler.mixed_load import SIGN_IN, LoadReport, lost_writes, run_load
from tests.pooler.workers import uvicorn_server

RSS_EVERY = 0.25  # seconds between RSS samples
POOLS_EVERY = 1.0  # seconds between SHOW POOLS (a psql process each time)
MB = 1024 * 1024


@dataclass
class LoadRun:
    report: LoadReport
    pool: str
    rss: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), bytes) of the server process
    server_connections: list[int] = field(default_factory=list)  # pgbouncer's server connections, per sample
    clients_waiting: list[int] = field(default_factory=list)  # pgbouncer clients waiting for one, per sample
    queries: int = 0  # statements pgbouncer forwarded during the run
    lost: dict[str, str] = field(default_factory=dict)

    def rss_at(self, moment: float) -> int:
        """The last sample taken at or before `moment` (the first one if none was)."""
        before = [rss for at, rss in self.rss if at <= moment]
        return before[-1] if before else self.rss[0][1]

    @property
    def rss_start(self) -> int:
        return self.rss_at(self.report.started)

    @property
    def rss_half(self) -> int:
        """After the warm-up: when half of the requests had been answered."""
        return self.rss_at(self.report.time_at(0.5))

    @property
    def rss_end(self) -> int:
        return self.rss_at(self.report.finished)

    @property
    def growth_second_half(self) -> int:
        """How far RSS rose above its half-way value at any sample of the second half (the peak, not the last
        value, so a leak cannot hide behind a collection that happened to run just before the end)."""
        half, end = self.report.time_at(0.5), self.report.finished
        # A run shorter than the sampling interval (bench-smoke's) has no sample inside its second half: then the
        # end value, read from the samples around it, is the only one there is.
        peak = max((rss for at, rss in self.rss if half <= at <= end), default=self.rss_end)
        return peak - self.rss_half

    def figures(self) -> dict[str, object]:
        report = self.report
        return {
            "pool": self.pool,
            "requests": report.completed,
            "errors": report.error_count,
            "errors by type": dict(report.errors) or "none",
            "seconds": round(report.seconds, 1),
            "requests/s": round(report.completed / report.seconds, 1),
            "p50 ms": report.percentile_ms(50),
            "p95 ms": report.percentile_ms(95),
            "p99 ms": report.percentile_ms(99),
            "p50/p95/p99 ms without sign-in": "/".join(
                str(report.percentile_ms(p, without=SIGN_IN)) for p in (50, 95, 99)
            ),
            "RSS start MB": round(self.rss_start / MB, 1),
            "RSS half MB": round(self.rss_half / MB, 1),
            "RSS end MB": round(self.rss_end / MB, 1),
            "RSS peak MB": round(max(rss for _, rss in self.rss) / MB, 1),
            "growth 2nd half MB": round(self.growth_second_half / MB, 1),
            "pgbouncer server conns (max)": max(self.server_connections, default=0),
            "pgbouncer clients waiting (max)": max(self.clients_waiting, default=0),
            "statements via pgbouncer": self.queries,
            "lost writes": len(self.lost),
            "steps": dict(sorted(report.by_step.items())),
        }


class Sampler(threading.Thread):
    def __init__(self, pid: int, bouncer: pgb.PgBouncer, run: LoadRun) -> None:
        super().__init__(daemon=True)
        self.process, self.bouncer, self.run_ = psutil.Process(pid), bouncer, run
        self.stopping = threading.Event()

    def sample_rss(self) -> None:
        self.run_.rss.append((time.time(), self.process.memory_info().rss))

    def sample_pools(self) -> None:
        row = next((r for r in self.bouncer.admin("SHOW POOLS") if r["database"] == self.bouncer.database), None)
        if row is not None:
            servers = sum(int(row[key]) for key in row if key.startswith("sv_"))
            self.run_.server_connections.append(servers)
            self.run_.clients_waiting.append(int(row["cl_waiting"]))

    def run(self) -> None:
        next_pools = 0.0
        while True:
            self.sample_rss()
            if time.monotonic() >= next_pools:
                self.sample_pools()
                next_pools = time.monotonic() + POOLS_EVERY
            if self.stopping.wait(RSS_EVERY):
                self.sample_rss()
                return


async def run_mixed_load(
    env: dict[str, str],
    bouncer: pgb.PgBouncer,
    direct_url: str,
    workdir: Path,
    *,
    total: int,
    concurrency: int,
) -> LoadRun:
    """Start uvicorn with `env` (its DATABASE_URL: `bouncer`), send the load, and return what was measured.

    `direct_url` is the database itself, for checking afterwards that every write the API reported is there.
    """
    # Logins are few (one per virtual user), but all from 127.0.0.1: the per-IP login limit is off for the run.
    env = {**env, "AUTH_RATE_LIMIT_ATTEMPTS": "0"}
    run = LoadRun(LoadReport(total, concurrency), pool=env.get("DB_POOL", "null"))
    queries_before = bouncer.stats().get("total_query_count", 0)
    with uvicorn_server(env, workdir / "uvicorn.log", workers=1) as server:
        sampler = Sampler(server.pid, bouncer, run)
        sampler.start()
        try:
            run.report = await run_load(server.url, total, concurrency)
        finally:
            sampler.stopping.set()
            sampler.join(timeout=10)
    run.queries = bouncer.stats().get("total_query_count", 0) - queries_before
    run.lost = await lost_writes(direct_url, run.report)
    return run
