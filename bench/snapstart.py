"""SnapStart: CPU before the first response in a restored sandbox against today's cold start; init on 3.11 vs 3.13.

    python bench/snapstart.py [--runs 5] [--python313 PATH] [--python311 PATH]

All CPU is the process's own (time.process_time), so the machine's other load counts little.

- cold: a fresh interpreter imports app.handler and serves its first request (authenticated
  `GET /api/v1/tasks?tag=x`, API Gateway HTTP API 2.0 event, real database): CPU from the first line of the
  script (interpreter start-up excluded) to the response.
- restored: one process imports app.handler and runs the before-snapshot hooks (awslambdaric's runner, as the
  Lambda runtime does), then fork()s a child per run: the child runs the after-restore hooks and serves the same
  request; its CPU is counted from the fork to the response (a forked child starts at zero CPU time). Lambda
  restores a VM snapshot rather than forking, but what the Python process has left to do is the same.
- init: `import app.handler` alone, and with the before-snapshot hooks (what SnapStart runs once per version),
  on each Python given (the .venv and .venv313 interpreters by default).

Target: restored / cold <= 0.15, from one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, bench_database_url, ensure_bench_user, migrate, p50, run, table  # noqa: E402

COLD = r"""
import time
c0 = time.process_time()
from bench._common import LambdaContext, bench_token, http_api_event, lambda_handler
handler = lambda_handler()
c1 = time.process_time()
event = http_api_event("GET", "/api/v1/tasks", {"tag": "x"}, token=bench_token())
response = handler(event, LambdaContext())
c2 = time.process_time()
import json
print(json.dumps({"import_ms": (c1 - c0) * 1000, "first_ms": (c2 - c1) * 1000, "status": response["statusCode"]}))
"""

RESTORED = r"""
import json, os, sys, time
runs = int(sys.argv[1])
from awslambdaric import lambda_runtime_hooks_runner
from bench._common import LambdaContext, bench_token, http_api_event, lambda_handler
handler = lambda_handler()
token = bench_token()
lambda_runtime_hooks_runner.run_before_snapshot()
for _ in range(runs):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        import asyncio
        asyncio.set_event_loop(asyncio.new_event_loop())  # fork shares the epoll instance; a restored VM does not
        c0 = time.process_time()
        lambda_runtime_hooks_runner.run_after_restore()
        event = http_api_event("GET", "/api/v1/tasks", {"tag": "x"}, token=token)
        response = handler(event, LambdaContext())
        c1 = time.process_time()
        os.write(write, json.dumps({"first_ms": (c1 - c0) * 1000, "status": response["statusCode"]}).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        print(pipe.read(), flush=True)
    os.waitpid(pid, 0)
"""

INIT = r"""
import time
c0 = time.process_time()
import app.handler
c1 = time.process_time()
from awslambdaric import lambda_runtime_hooks_runner
lambda_runtime_hooks_runner.run_before_snapshot()
c2 = time.process_time()
import json
print(json.dumps({"import_ms": (c1 - c0) * 1000, "hooks_ms": (c2 - c1) * 1000}))
"""


def python_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_URL_DIRECT": url,
        "ENVIRONMENT": "local",
        "DB_POOL": "null",
        "PYTHONPATH": str(ROOT),
    }


def run_script(python: str, script: str, url: str, *args: str) -> list[dict]:
    done = subprocess.run(
        [python, "-c", script, *args], capture_output=True, text=True, env=python_env(url), cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python313", default=str(ROOT / ".venv313" / "bin" / "python"))
    parser.add_argument("--python311", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()

    url = bench_database_url()
    migrate(url)
    run(ensure_bench_user(url))
    python = sys.executable
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs, CPU ms (p50)\n")

    cold = [run_script(python, COLD, url)[0] for _ in range(args.runs)]
    restored = run_script(python, RESTORED, url, str(args.runs))
    statuses = {r["status"] for r in cold + restored}
    cold_total = p50([r["import_ms"] + r["first_ms"] for r in cold])
    restored_total = p50([r["first_ms"] for r in restored])
    rows = [
        ["cold start: import app.handler", round(p50([r["import_ms"] for r in cold]), 1)],
        ["cold start: first invocation", round(p50([r["first_ms"] for r in cold]), 1)],
        ["cold start: both (per run)", round(cold_total, 1)],
        ["restored: after-restore hooks + first invocation", round(restored_total, 1)],
    ]
    print(table(["GET /api/v1/tasks?tag=x", "CPU ms"], rows))
    print(f"\nrestored / cold = {restored_total / cold_total:.3f} (target <= 0.15); statuses {sorted(statuses)}\n")

    interpreters = {label: path for label, path in (("3.11", args.python311), ("3.13", args.python313))}
    samples: dict[str, list[dict]] = {label: [] for label in interpreters if Path(interpreters[label]).exists()}
    for _ in range(args.runs):  # interleaved, so both see the same background load
        for label in samples:
            samples[label] += run_script(interpreters[label], INIT, url)
    init_rows = [
        [
            label,
            round(p50([s["import_ms"] for s in samples[label]]), 1) if label in samples else "missing",
            round(p50([s["hooks_ms"] for s in samples[label]]), 1) if label in samples else "",
            path,
        ]
        for label, path in interpreters.items()
    ]
    print(table(["Python", "import app.handler", "before-snapshot hooks", "interpreter"], init_rows))


if __name__ == "__main__":
    main()
