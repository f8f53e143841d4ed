"""Every benchmark in a mode that takes seconds (tiny sizes, one round), printing its tables: `make bench-smoke`.

It proves that each benchmark still runs against the code as it is now; it checks no figure (figures from a
smoke run mean nothing). A benchmark script this file does not know fails the run, so that a new benchmark
cannot be left out of the smoke run by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Arguments that make each benchmark small; the bench database for the smoke run is a server of its own
# (BENCH_SMOKE in bench/_common.py), which also shrinks bench/scale.py's data sets.
SMOKE_ARGS: dict[str, list[str]] = {
    "request_log.py": ["--requests", "20", "--rounds", "1"],
    "imports.py": ["--repeat", "1"],
    "wakeup.py": ["--failures", "0,1", "--repeat", "1", "--budget", "1"],
    "login_timing.py": ["--samples", "2", "--warmup", "1"],
    # Two endpoints, ours and the naive reference: each endpoint costs fresh processes for its cold counts.
    "roundtrips.py": [
        "--delays",
        "0",
        "--repeat",
        "1",
        "--only",
        "GET /tasks?tag=x",
        "--only",
        "GET /tasks?tag=x (naive)",
    ],
    "cold_start.py": ["--runs", "1", "--delays", "0"],
    "scale.py": ["--samples", "1", "--rounds", "1"],
    "throughput.py": ["--clients", "2", "--seconds", "0.5", "--warmup", "0.2", "--rounds", "1"],
    "load.py": ["--requests", "40", "--concurrency", "4"],
    "cpu.py": ["--requests", "20", "--rounds", "1", "--profile-requests", "20"],
    "warm.py": ["--invocations", "10", "--rounds", "2", "--trip-invocations", "5"],
    "observability.py": ["--invocations", "10", "--rounds", "1", "--pieces", "200", "--no-callgrind"],
    "kill.py": ["--invocations", "40", "--kills", "4"],
    "idempotency.py": ["--invocations", "5", "--rounds", "1", "--trip-invocations", "3"],
    "tls.py": ["--delay-ms", "0", "--repeat", "1"],
    "snapstart.py": ["--runs", "1"],
    "fresh_connection.py": ["--repeats", "5", "--rounds", "1"],
    # Both suites on one small file (the first run also exports the old commit and installs its venv).
    "suite_time.py": ["--paths", "tests/test_health.py", "--rounds", "1"],
}
# Scripts under bench/ that are tools rather than benchmarks.
NOT_BENCHMARKS = {"smoke.py"}


def benchmark_scripts() -> list[str]:
    return sorted(
        path.name
        for path in BENCH.glob("*.py")
        if path.name not in NOT_BENCHMARKS and 'if __name__ == "__main__":' in path.read_text()
    )


def stop_smoke_server() -> None:
    """The smoke run's server is not kept (the real bench server is, for the next `make bench`)."""
    sys.path.insert(0, str(ROOT))
    from app.dev.embedded import EmbeddedPostgres, running_port
    from bench._common import BENCH_DATA_DIR

    port = running_port(BENCH_DATA_DIR)
    if port:
        EmbeddedPostgres(BENCH_DATA_DIR, port).stop()


def main() -> int:
    unknown = sorted(set(benchmark_scripts()) - set(SMOKE_ARGS))
    if unknown:
        print(
            f"bench/smoke.py has no smoke arguments for {', '.join(unknown)}: add them to SMOKE_ARGS", file=sys.stderr
        )
        return 2
    os.environ["BENCH_SMOKE"] = "1"  # for the benchmarks, and for stop_smoke_server's bench._common
    failed, took = [], []
    try:
        for script, args in SMOKE_ARGS.items():
            print(f"\n=== bench/{script} {' '.join(args)}", flush=True)
            started = time.monotonic()
            done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT)
            took.append((script, time.monotonic() - started, done.returncode))
            if done.returncode != 0:
                failed.append(script)
    finally:
        stop_smoke_server()
    print("\n=== smoke run")
    for script, seconds, code in took:
        print(f"  {script:<18} {seconds:6.1f} s  {'ok' if code == 0 else f'exit {code}'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
