"""The CPU a warm Lambda invocation spends on observability, against the invocation itself (issue 26's target:
<= 5% of a warm DB_POOL=single list invocation).

    python bench/observability.py [--invocations 300] [--rounds 7] [--pieces 20000] [--no-callgrind]

In one process, as a warm sandbox runs them: Mangum handlers (as app/handler.py builds them) over three builds
of the app, called with HTTP API 2.0 events for `GET /api/v1/tasks?tag=x&limit=20` (20 rows) on one
DB_POOL=single engine, with the Lambda context in the scope:

- bare: no RequestLogMiddleware, and SQLAlchemy's database-time listeners (app/metrics.py) taken off: the
  invocation with no observability at all;
- request line: the middleware with EMF_METRICS=off (request id, route template, invocation fields, database
  time, one JSON line);
- request line + EMF: as deployed (EMF_METRICS=auto under Lambda): the same line carrying the metrics.

Every line is formatted by the app's JsonFormatter and written to /dev/null at INFO (LOG_LEVEL's default), so
formatting and the write are in the figures. CPU is `time.process_time()` over `--invocations` invocations
after a warm-up; each round runs every variant once, in an order that rotates between rounds; the share is
taken within each round, (variant - bare) / bare, and its median printed.

Instructions (`valgrind --tool=callgrind`, unless `--no-callgrind`): the same three variants in a child process,
`--callgrind-invocations` each after a warm-up, every measured stretch bracketed by `os.getpgrp()` calls that
make callgrind dump its counters (as bench/warm.py does). A count does not move with the machine's load, which
a difference of two CPU times on a shared machine does.

The pieces: the same work without the app around it, per call, many calls (a steadier figure on a busy machine
than a difference of two invocations): the invocation fields, the EMF members, and formatting the line with and
without them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    ROOT,
    LambdaContext,
    bench_database_url,
    bench_token,
    ensure_bench_user,
    http_api_event,
    migrate,
    table,
)

WARMUP = 10
TARGET_SHARE = 5.0  # percent of the bare invocation
LIST_QUERY = {"tag": "x", "limit": 20}
VARIANTS = ("bare", "request line", "request line + EMF")


def log_to_devnull() -> None:
    from app.observability import JsonFormatter

    root = logging.getLogger()
    root.handlers[:] = []
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    sink.setFormatter(JsonFormatter())
    root.addHandler(sink)
    root.setLevel(logging.INFO)
    logging.getLogger("app.requests").setLevel(logging.NOTSET)


def handler_for(variant: str):
    """A Mangum handler over a fresh app whose request-log middleware is what `variant` says."""
    from mangum import Mangum
    from starlette.middleware import Middleware

    from app.main import create_app
    from app.observability import RequestLogMiddleware

    app = create_app()
    middleware = []
    for entry in app.user_middleware:
        if entry.cls is not RequestLogMiddleware:
            middleware.append(entry)
        elif variant != "bare":
            middleware.append(Middleware(RequestLogMiddleware, emf="on" if variant.endswith("EMF") else "off"))
    app.user_middleware = middleware
    return Mangum(app, lifespan="off")


_listening = [True]  # app.metrics registers them at import


def database_time_listeners(on: bool) -> None:
    """On or off for the variant about to run; a no-op (one comparison) when they already are."""
    if _listening[0] == on:
        return
    _listening[0] = on
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from app.metrics import STATEMENT_EVENTS

    for name, listener in STATEMENT_EVENTS:
        if on and not event.contains(Engine, name, listener):
            event.listen(Engine, name, listener)
        elif not on and event.contains(Engine, name, listener):
            event.remove(Engine, name, listener)


def invocations(url: str) -> dict[str, Callable[[], None]]:
    import app.db
    from app.config import normalize_database_url, settings

    cfg = settings.model_copy(update={"DB_POOL": "single"})
    app.db.engine = app.db.create_engine(normalize_database_url(url, force_pooler=False), cfg)
    event = http_api_event("GET", "/api/v1/tasks", query=LIST_QUERY, token=bench_token())
    context = LambdaContext()
    work = {}
    for variant in VARIANTS:
        handler = handler_for(variant)

        def run(handler: Any = handler, variant: str = variant) -> None:
            database_time_listeners(on=variant != "bare")
            response = handler(event, context)
            assert response["statusCode"] == 200, response

        work[variant] = run
    return work


def cpu_rounds(work: dict[str, Callable[[], None]], count: int, rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per invocation of every variant, one figure per round; the order rotates."""
    names = list(work)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            for _ in range(WARMUP):
                work[name]()
            started = time.process_time()
            for _ in range(count):
                work[name]()
            figures[name].append((time.process_time() - started) / count * 1e6)
    return figures


def per_call_us(function: Callable[[], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls):
            function()
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


def pieces(calls: int) -> list[tuple[str, float]]:
    """Microseconds per call of the observability pieces on their own (best of 5 runs)."""
    from app.invocation import invocation_fields
    from app.metrics import EmfWriter
    from app.observability import FIELDS, JsonFormatter

    os.environ["_X_AMZN_TRACE_ID"] = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
    scope = {
        "aws.context": LambdaContext(),
        "aws.event": {"requestContext": {"requestId": "JKJaXmPLvHcESHA="}},
        "headers": [(b"x-amzn-trace-id", b"Root=1-667058bd-3265707259baa0695cdc20c5")],
    }
    writer = EmfWriter("TaskAPI", "task-api")
    line = {
        "method": "GET",
        "route": "/api/v1/tasks",
        "status": 200,
        "duration_ms": 1.23,
        "db_ms": 0.45,
        "db_connect_ms": 0.0,
        "db_statements": 1,
        "query_params": ["tag", "limit"],
    }
    formatter = JsonFormatter()

    def record(fields: dict[str, Any]) -> logging.LogRecord:
        made = logging.LogRecord("app.requests", logging.INFO, __file__, 0, "GET /api/v1/tasks 200", None, None)
        setattr(made, FIELDS, fields)
        return made

    plain = record(line)
    with_emf = record({**line, **writer.fields(route="/api/v1/tasks", status=200, cold_start=False, restored=False)})
    return [
        ("invocation fields (app/invocation.py)", per_call_us(lambda: invocation_fields(scope, "task-api"), calls)),
        (
            "EMF members (app/metrics.py EmfWriter.fields)",
            per_call_us(
                lambda: writer.fields(route="/api/v1/tasks", status=200, cold_start=False, restored=False), calls
            ),
        ),
        ("format the request line, no EMF", per_call_us(lambda: formatter.format(plain), calls)),
        ("format the request line with EMF", per_call_us(lambda: formatter.format(with_emf), calls)),
    ]


def instructions_child(url: str, count: int) -> None:
    """Under callgrind: each variant's invocations between two os.getpgrp() calls."""
    log_to_devnull()
    work = invocations(url)
    for name in VARIANTS:
        for _ in range(WARMUP):
            work[name]()
        os.getpgrp()
        for _ in range(count):
            work[name]()
        os.getpgrp()


def callgrind(url: str, count: int) -> dict[str, float]:
    """Instructions per invocation of every variant, in thousands, from a child process under callgrind."""
    with tempfile.TemporaryDirectory(prefix="observability-callgrind-") as folder:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getpgrp",
            f"--callgrind-out-file={folder}/out.%p",
            sys.executable,
            str(Path(__file__).resolve()),
            "--instructions-child",
            url,
            "--callgrind-invocations",
            str(count),
        ]
        subprocess.run(command, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        dumps = sorted(Path(folder).glob("out.*.*"), key=lambda path: int(path.name.rsplit(".", 1)[1]))
        counts = [int(re.search(r"^summary: (\d+)", path.read_text(), re.M).group(1)) for path in dumps]  # type: ignore[union-attr]
    if len(counts) != 2 * len(VARIANTS):
        raise SystemExit(f"expected {2 * len(VARIANTS)} callgrind dumps, got {len(counts)}")
    # Dump 1 ends before the first getpgrp (start-up); then, per variant, its invocations and the next warm-up.
    return {name: counts[1 + 2 * index] / count / 1e3 for index, name in enumerate(VARIANTS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=300, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pieces", type=int, default=20000, help="calls per piece and run")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    parser.add_argument("--callgrind-invocations", type=int, default=30)
    parser.add_argument("--instructions-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("app.db").setLevel(logging.ERROR)  # single without a pooler warns, once per engine
    if args.instructions_child:
        instructions_child(args.instructions_child, args.callgrind_invocations)
        return 0

    url = bench_database_url()
    migrate(url)
    asyncio.run(ensure_bench_user(url))
    log_to_devnull()
    work = invocations(url)
    figures = cpu_rounds(work, args.invocations, args.rounds)
    database_time_listeners(on=True)

    bare = figures["bare"]
    rows = []
    for name in VARIANTS:
        shares = [100 * (value - base) / base for value, base in zip(figures[name], bare, strict=True)]
        spread = " ".join(f"{v:.0f}" for v in figures[name])
        share = "-" if name == "bare" else f"{statistics.median(shares):.1f}%"
        rows.append((name, statistics.median(figures[name]), share, spread))
    print(
        f"\nCPU per warm invocation, DB_POOL=single, GET /api/v1/tasks?tag=x&limit=20 (20 rows): median of "
        f"{args.rounds} rounds of {args.invocations} invocations per variant\n"
    )
    print(table(("variant", "CPU us/invocation", "observability share (median of rounds)", "rounds"), rows))
    full = [100 * (v - b) / b for v, b in zip(figures["request line + EMF"], bare, strict=True)]
    met = sum(share <= TARGET_SHARE for share in full)
    print(f"\ntarget: request line + EMF <= {TARGET_SHARE:.0f}% of bare: met in {met}/{len(full)} rounds")

    print(f"\nthe pieces alone, us per call (best of 5 runs of {args.pieces} calls)\n")
    measured = pieces(args.pieces)
    base = statistics.median(bare)
    print(
        table(("piece", "us/call", "% of a bare invocation"), [(n, v, f"{100 * v / base:.2f}%") for n, v in measured])
    )

    if not args.no_callgrind:
        counts = callgrind(url, args.callgrind_invocations)
        print(f"\ninstructions per invocation (callgrind, {args.callgrind_invocations} invocations per variant)\n")
        rows = [
            (name, counts[name], "-" if name == "bare" else f"{100 * (counts[name] / counts['bare'] - 1):.1f}%")
            for name in VARIANTS
        ]
        print(table(("variant", "k instructions/invocation", "observability share"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
