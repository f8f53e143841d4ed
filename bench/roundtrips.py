"""Round trips, bytes and latency per endpoint through the Lambda handler, warm and cold, ours and naive.

    python bench/roundtrips.py [--delays 0,5] [--repeat 7] [--only NAME ...]

Every invocation goes through the Mangum handler with an API Gateway HTTP API (2.0) event and opens a fresh
connection (NullPool), through scripts/rtt_proxy.py, which adds the one-way delay and counts the round trips the
request waits for (the TCP connect included) and the bytes each way.

- warm: a process that has served the endpoint once already; the figures of the following invocations.
- cold: a new process, its very first invocation (imports excluded from the latency: they are the same with or
  without a database; bench/imports.py measures them).

Prints one table per delay; exits non-zero only when something fails to run, never because a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import PYTHON, ROOT, bench_database_url, ensure_bench_user, migrate, p50, run, table  # noqa: E402


def _proxied_env(url: str, delay_ms: float):
    """Start a proxy to `url`'s server; point DATABASE_URL at it (before `app` is imported)."""
    from sqlalchemy.engine import make_url

    from scripts.rtt_proxy import RttProxy

    target = make_url(url)
    proxy = RttProxy(target.host or "127.0.0.1", target.port or 5432, delay_ms).start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    os.environ.update(
        DATABASE_URL=proxied,
        DATABASE_URL_DIRECT=proxied,
        ENVIRONMENT="local",
        DB_POOL="null",
        DB_APPLICATION_NAME="bench",
    )
    return proxy


def _handler_for(kind: str):
    if kind == "naive":
        from bench.naive.handler import handler

        return handler
    from bench._common import lambda_handler

    return lambda_handler()


EOF_HOLD = 0.25  # seconds; see scripts/rtt_proxy.py: for the counting invocations only, never the timed ones
# (generous: a cold process on a loaded machine may take a while to get round to closing its socket)


def _invoke(proxy, endpoint, direct_url: str, counted: bool) -> dict[str, Any]:
    from bench._common import LambdaContext
    from scripts.rtt_proxy import total

    proxy.eof_hold = EOF_HOLD if counted else 0.0
    ctx = run(endpoint.prepare(direct_url)) if endpoint.prepare else {}
    event = endpoint.event(ctx)
    handler = _handler_for(endpoint.handler)
    mark = proxy.mark()
    started = time.perf_counter()
    response = handler(event, LambdaContext())
    elapsed = (time.perf_counter() - started) * 1000
    stats = total(proxy.wait_idle(mark))
    return {
        **stats,
        "ms": elapsed,
        "status": response["statusCode"],
        "body": response.get("body", "")[:300] if response["statusCode"] >= 400 else "",
    }


def worker(mode: str, delay_ms: float, names: list[str], repeat: int, direct_url: str) -> list[dict[str, Any]]:
    proxy = _proxied_env(direct_url, delay_ms)
    from bench.endpoints import available, by_name

    results = []
    for name in names:
        endpoint = by_name(name)
        if not available(endpoint):
            results.append({"name": name, "missing": True})
            continue
        if mode in ("cold-count", "cold-time"):
            results.append({"name": name, **_invoke(proxy, endpoint, direct_url, counted=mode == "cold-count")})
            continue
        _invoke(proxy, endpoint, direct_url, counted=False)  # the first invocation of this process: the cold one
        counted = _invoke(proxy, endpoint, direct_url, counted=True)
        timed = [_invoke(proxy, endpoint, direct_url, counted=False)["ms"] for _ in range(repeat)]
        results.append({**counted, "name": name, "ms": p50(timed)})
    return results


def spawn_worker(mode: str, delay_ms: float, names: list[str], repeat: int, url: str) -> list[dict[str, Any]]:
    command = [
        PYTHON,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        "--delay",
        str(delay_ms),
        "--repeat",
        str(repeat),
        "--url",
        url,
        "--names",
        json.dumps(names),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker {mode} {names} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(url: str, delays: list[float], repeat: int, names: list[str]) -> dict[float, dict[str, dict]]:
    """{delay: {endpoint: {"warm": result, "cold": result}}}"""
    figures: dict[float, dict[str, dict]] = {}
    for delay in delays:
        warm = spawn_worker("warm", delay, names, repeat, url)
        by_name_ = {r["name"]: {"warm": r} for r in warm}
        for name in names:
            if by_name_[name]["warm"].get("missing"):
                continue
            cold = spawn_worker("cold-count", delay, [name], 1, url)[0]
            cold["ms"] = spawn_worker("cold-time", delay, [name], 1, url)[0]["ms"]
            by_name_[name]["cold"] = cold
        figures[delay] = by_name_
    return figures


def report(figures: dict[float, dict[str, dict]]) -> str:
    from bench.endpoints import by_name

    out = []
    zero = min(figures)
    for delay, per_endpoint in figures.items():
        naive = per_endpoint.get("GET /tasks?tag=x (naive)", {})
        rows = []
        for name, result in per_endpoint.items():
            warm, cold = result["warm"], result.get("cold")
            if warm.get("missing"):
                rows.append([name, "not built yet", "", "", "", "", "", "", ""])
                continue
            row = [
                name,
                warm["status"] if warm["status"] == cold["status"] else f"{warm['status']}/{cold['status']}",
                warm["round_trips"],
                by_name(name).floor if by_name(name).handler != "naive" else "-",
                cold["round_trips"],
                f"{warm['bytes_up']}/{warm['bytes_down']}",
                warm["ms"],
                cold["ms"],
            ]
            if name.startswith("GET /tasks?tag=x") and naive and not naive["warm"].get("missing"):
                row.append(
                    f"{warm['round_trips'] / naive['warm']['round_trips']:.2f} rt, "
                    f"{warm['ms'] / naive['warm']['ms']:.2f} ms"
                )
            else:
                row.append("")
            rows.append(row)
        title = f"One-way delay {delay:g} ms (round-trip time {2 * delay:g} ms)"
        out.append(
            f"### {title}\n\n"
            + table(
                [
                    "endpoint",
                    "status",
                    "warm RTs",
                    "floor",
                    "cold RTs",
                    "bytes up/down (warm)",
                    "warm ms (p50)",
                    "cold ms",
                    "vs naive (warm)",
                ],
                rows,
            )
        )
    failures = [
        f"{name} ({result['warm']['status']}): {result['warm'].get('body', '')}"
        for name, result in figures[zero].items()
        if not result["warm"].get("missing") and result["warm"]["status"] >= 400
    ]
    if failures:
        out.append("Requests that did not succeed:\n  " + "\n  ".join(failures))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", default="0,5", help="one-way delays in ms, comma-separated")
    parser.add_argument("--repeat", type=int, default=7, help="warm invocations per endpoint (p50 reported)")
    parser.add_argument("--only", action="append", help="endpoint name(s) to measure (default: all)")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--worker", choices=["warm", "cold-count", "cold-time"], help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        results = worker(args.worker, args.delay, json.loads(args.names), args.repeat, args.url)
        print(json.dumps(results, default=str))
        return 0

    from bench.endpoints import ENDPOINTS

    url = bench_database_url()
    migrate(url)
    run(ensure_bench_user(url))
    names = args.only or [e.name for e in ENDPOINTS]
    delays = [float(d) for d in args.delays.split(",")]
    figures = measure(url, delays, args.repeat, names)
    print(report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in figures.items()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
