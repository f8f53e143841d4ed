"""Cold start: a new Python process imports the Lambda handler and serves its first request, ours vs naive.

    python bench/cold_start.py [--runs 5] [--delays 0,5]

Each run is a fresh interpreter (like a new Lambda execution environment) that imports the handler and invokes
it with an authenticated `GET /api/v1/tasks?tag=x` (API Gateway HTTP API 2.0 event), then again (warm).
The database sits behind scripts/rtt_proxy.py in its own process, adding the one-way delay. Reported: p50 over
the runs of the import time, the first (cold) invocation, the second (warm) one, and the process total.
Exits non-zero only when something fails to run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import PYTHON, ROOT, bench_database_url, ensure_bench_user, migrate, p50, run, table  # noqa: E402

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "naive":
    from bench.naive.handler import handler
else:
    from bench._common import lambda_handler
    handler = lambda_handler()
t1 = time.perf_counter()
from bench._common import LambdaContext, bench_token, http_api_event
event = http_api_event("GET", "/api/v1/tasks", {"tag": "x"}, token=bench_token())
t2 = time.perf_counter()
first = handler(event, LambdaContext())
t3 = time.perf_counter()
second = handler(event, LambdaContext())
t4 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_ms": (t3 - t2) * 1000, "second_ms": (t4 - t3) * 1000,
                  "status": [first["statusCode"], second["statusCode"]]}))
"""


def start_proxy(url: str, delay_ms: float) -> tuple[subprocess.Popen, str]:
    from sqlalchemy.engine import make_url

    target = make_url(url)
    proxy = subprocess.Popen(
        [
            PYTHON,
            str(ROOT / "scripts" / "rtt_proxy.py"),
            "--upstream",
            f"{target.host}:{target.port}",
            "--delay-ms",
            str(delay_ms),
            "--eof-hold-ms",
            "0",
            "--log",
            os.devnull,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = proxy.stdout.readline() if proxy.stdout else ""
    if not line.startswith("listening"):
        proxy.kill()
        raise SystemExit("the proxy did not start")
    port = int(line.split()[1])
    return proxy, target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def one_run(kind: str, url: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_URL_DIRECT": url,
        "ENVIRONMENT": "local",
        "DB_POOL": "null",
        "PYTHONPATH": str(ROOT),
    }
    started = time.perf_counter()
    done = subprocess.run([PYTHON, "-c", CHILD, kind], capture_output=True, text=True, env=env, cwd=ROOT)
    total = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"cold start run ({kind}) failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_ms"] = total
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delays", default="0,5", help="one-way delays in ms, comma-separated")
    args = parser.parse_args(argv)

    url = bench_database_url()
    migrate(url)
    run(ensure_bench_user(url))
    rows = []
    for delay in [float(d) for d in args.delays.split(",")]:
        proxy, proxied = start_proxy(url, delay)
        try:
            figures = {}
            for _ in range(args.runs):  # interleaved, so both see the same background load
                for kind in ("app", "naive"):
                    figures.setdefault(kind, []).append(one_run(kind, proxied))
        finally:
            proxy.kill()
        ours = {k: p50([r[k] for r in figures["app"]]) for k in ("import_ms", "first_ms", "second_ms", "process_ms")}
        for kind, label in (("app", "ours"), ("naive", "naive")):
            runs = figures[kind]
            med = {k: p50([r[k] for r in runs]) for k in ("import_ms", "first_ms", "second_ms", "process_ms")}
            statuses = sorted({s for r in runs for s in r["status"]})
            rows.append(
                [
                    f"{delay:g}",
                    label,
                    "/".join(map(str, statuses)),
                    med["import_ms"],
                    med["first_ms"],
                    med["second_ms"],
                    med["process_ms"],
                    "" if kind == "app" else f"{ours['first_ms'] / med['first_ms']:.2f}",
                ]
            )
    print(
        table(
            [
                "one-way ms",
                "handler",
                "status",
                "import ms",
                "1st invoke ms",
                "2nd invoke ms",
                "process ms",
                "ours/naive 1st",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
