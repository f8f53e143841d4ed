"""Warm Lambda invocations: CPU, instructions and round trips per `GET /api/v1/tasks?tag=x&limit=20` (20 rows).

    python bench/warm.py [--invocations 200] [--rounds 5] [--trip-invocations 20]
    python bench/warm.py --callgrind [--invocations 20]     # instructions per invocation, under valgrind

In one process, as a warm Lambda sandbox runs them: app.handler.handler called with HTTP API 2.0 events on the
thread's one event loop (Mangum keeps it), for `null`, `single` and `queue` against the server, and `single`
through PgBouncer 1.24 (scripts/build_pgbouncer.sh) configured like Neon's pooler. Against floors on the same
loop:
- a bare asyncpg connect + close with SCRAM (what a connection per invocation cannot avoid);
- the app's own statement on an open connection with its prepared statement cached, the rows to JSON;
- asyncpg alone doing what a `null` invocation must: connect, the statement, the rows to JSON, close;
- `GET /api/v1/health` through the handler: Mangum and FastAPI with no database;
- and, for the record, SCRAM's key derivation alone (PBKDF2-SHA-256, 4096 iterations), part of every connect.

CPU: `time.process_time()` over `--invocations` invocations after a warm-up, in `--rounds` rounds; within a
round every variant runs once, in an order that rotates from round to round, so that a change in the machine's
load hits them all. Medians of the rounds are printed, and the target ratios are taken within each round. The
connections are direct (no proxy thread in the process whose CPU is measured); round trips are counted in a
separate pass through scripts/rtt_proxy.py (no delay).

`--callgrind` runs the same variants under `valgrind --tool=callgrind` and prints instructions per invocation
(deterministic up to how often the event loop finds the socket not ready yet): every measured stretch is
bracketed by `os.getpgrp()`, a call nothing else in the process makes, and callgrind dumps its counters before
each call (`--dump-before=getpgrp`), so each dump holds exactly one variant's invocations.
Instructions are repeatable but weigh C and Python code differently from time: valgrind's CPU has no SHA
extensions, so OpenSSL's PBKDF2 (SCRAM) counts ~28 M instructions per connect under callgrind for ~0.8 ms
natively, which makes the connect floor look far larger in instructions than in CPU time; compare the PBKDF2 row
in both modes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
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
    lambda_handler,
    migrate,
    table,
)

WARMUP = 10
LIST_QUERY = {"tag": "x", "limit": 20}
SINGLE_VIA = "single via PgBouncer 1.24"
MODES = ("null", "single", "queue")
CONNECT = "floor: asyncpg connect + close (SCRAM)"
STATEMENT = "floor: cached statement, 20 rows to JSON"
NULL_FLOOR = "floor: asyncpg connect, the statement, rows to JSON, close"
HEALTH = "floor: GET /health through the handler (no database)"
# PostgreSQL's default scram_iterations: the key derivation every SCRAM login pays, in C (OpenSSL). Shown on its
# own because valgrind's CPU has no SHA extensions, so OpenSSL counts many more instructions there than it
# spends time natively: it weighs far more in the connect floor's instructions than in its CPU time.
PBKDF2 = "(part of every connect: SCRAM's PBKDF2, 4096 iterations)"


def proxied(url: str, proxy) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def app_engine(url: str, mode: str, pooler: bool):
    import app.db
    from app.config import normalize_database_url, settings

    cfg = settings.model_copy(update={"DB_POOL": mode})
    return app.db.create_engine(normalize_database_url(url, force_pooler=pooler), cfg)


def app_statement(url: str) -> tuple[str, Any]:
    """The SQL text and parameters the app sends for the list request (captured from one invocation)."""
    from sqlalchemy import event

    import app.db

    seen: list[tuple[str, Any]] = []
    engine = app_engine(url, "null", False)
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda c, cur, sql, params, ctx, many: seen.append((sql, params))
    )
    previous, app.db.engine = app.db.engine, engine
    try:
        request = http_api_event("GET", "/api/v1/tasks", query=LIST_QUERY, token=bench_token())
        assert lambda_handler()(request, LambdaContext())["statusCode"] == 200
    finally:
        app.db.engine = previous
    (statement,) = seen
    return statement


class Variants:
    """Each variant as a callable doing one invocation (or one floor's unit of work) on the thread's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, pooler_url: str | None) -> None:
        import asyncpg

        import app.db

        self.loop = loop
        self.handler, self.context = lambda_handler(), LambdaContext()
        self.event = http_api_event("GET", "/api/v1/tasks", query=LIST_QUERY, token=bench_token())
        self.health_event = http_api_event("GET", "/api/v1/health")
        self.engines = {mode: app_engine(url, mode, False) for mode in MODES}
        if pooler_url is not None:
            self.engines[SINGLE_VIA] = app_engine(pooler_url, "single", True)
        sql, params = app_statement(url)
        self.previous_engine = app.db.engine
        self.open_connection = loop.run_until_complete(asyncpg.connect(url))
        prepared = loop.run_until_complete(self.open_connection.prepare(sql))

        async def connect_close() -> None:
            connection = await asyncpg.connect(url)
            await connection.close()

        async def statement() -> None:
            rows = await prepared.fetch(*params)
            # The page's statement asks for one row past the page (is there a next page?) and sends 20.
            json.dumps([dict(row) for row in rows[:20]], default=str)

        async def connect_statement_close() -> None:
            connection = await asyncpg.connect(url)
            rows = await connection.fetch(sql, *params)
            json.dumps([dict(row) for row in rows[:20]], default=str)
            await connection.close()

        self.all: dict[str, Callable[[], None]] = {name: self.invoke(name) for name in self.engines}
        self.all[CONNECT] = lambda: loop.run_until_complete(connect_close())
        self.all[STATEMENT] = lambda: loop.run_until_complete(statement())
        self.all[NULL_FLOOR] = lambda: loop.run_until_complete(connect_statement_close())
        self.all[HEALTH] = self.health
        self.all[PBKDF2] = lambda: hashlib.pbkdf2_hmac("sha256", b"password", b"0123456789abcdef", 4096)

    def invoke(self, name: str) -> Callable[[], None]:
        import app.db

        engine = self.engines[name]

        def run() -> None:
            app.db.engine = engine  # looked up at call time by the request's connection dependency
            response = self.handler(self.event, self.context)
            assert response["statusCode"] == 200, response

        return run

    def health(self) -> None:
        assert self.handler(self.health_event, self.context)["statusCode"] == 200

    def close(self) -> None:
        import app.db

        app.db.engine = self.previous_engine
        for engine in self.engines.values():
            self.loop.run_until_complete(engine.dispose())
        self.loop.run_until_complete(self.open_connection.close())


def cpu_rounds(variants: Variants, names: list[str], invocations: int, rounds: int) -> dict[str, list[float]]:
    """CPU ms per invocation of every variant, one figure per round; the order rotates between rounds."""
    figures: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            work = variants.all[name]
            for _ in range(WARMUP):
                work()
            started = time.process_time()
            for _ in range(invocations):
                work()
            figures[name].append((time.process_time() - started) / invocations * 1000)
    return figures


def round_trips(loop: asyncio.AbstractEventLoop, url: str, pooler_url: str | None, invocations: int) -> dict:
    """Round trips per warm invocation of each mode, through the counting proxy (a separate pass)."""
    import app.db
    from scripts.rtt_proxy import RttProxy

    targets = [(mode, url, False) for mode in MODES]
    if pooler_url is not None:
        targets.append((SINGLE_VIA, pooler_url, True))
    handler, context = lambda_handler(), LambdaContext()
    event = http_api_event("GET", "/api/v1/tasks", query=LIST_QUERY, token=bench_token())
    trips: dict[str, float] = {}
    for name, target_url, pooler in targets:
        from sqlalchemy.engine import make_url

        target = make_url(target_url)
        proxy = RttProxy(target.host or "127.0.0.1", target.port or 5432).start()
        engine = app_engine(proxied(target_url, proxy), "single" if name == SINGLE_VIA else name, pooler)
        previous, app.db.engine = app.db.engine, engine
        try:
            for _ in range(WARMUP):
                assert handler(event, context)["statusCode"] == 200
            loop.run_until_complete(asyncio.sleep(0.05))  # the last close reaches the proxy before counting
            before = proxy.round_trips_so_far()
            for _ in range(invocations):
                handler(event, context)
            loop.run_until_complete(asyncio.sleep(0.05))
            trips[name] = (proxy.round_trips_so_far() - before) / invocations
        finally:
            loop.run_until_complete(engine.dispose())
            app.db.engine = previous
            proxy.stop()
    return trips


def setup() -> tuple[str, Any]:
    """The bench database (migrated, with the bench user) and a PgBouncer 1.24 in front of it, if built."""
    url = bench_database_url()
    migrate(url)
    asyncio.run(ensure_bench_user(url))
    from tests.pooler import pgbouncer as pgb

    current = pgb.find_current_binary()
    if current is None:
        print("PgBouncer 1.24 is not built (scripts/build_pgbouncer.sh): its row is left out", file=sys.stderr)
        return url, None
    return url, pgb.start(url, binary=current)


def thread_loop() -> asyncio.AbstractEventLoop:
    lambda_handler()  # Mangum takes the thread's loop; every invocation below runs on it
    return asyncio.get_event_loop()


# --- instructions (--callgrind) ----------------------------------------------------------------------------


def measure_instructions(
    url: str, pooler_url: str | None, invocations: int, names_file: str, only: list[str] | None
) -> None:
    """Under callgrind: each variant's invocations between two os.getpgrp() calls (see the module docstring)."""
    loop = thread_loop()
    variants = Variants(loop, url, pooler_url)
    names = selected(list(variants.all), only)
    for name in names:
        work = variants.all[name]
        for _ in range(WARMUP // 2):
            work()
        os.getpgrp()
        for _ in range(invocations):
            work()
        os.getpgrp()
    variants.close()
    Path(names_file).write_text(json.dumps(names))


def selected(names: list[str], only: list[str] | None) -> list[str]:
    """The variants whose names contain one of `only` (all without it)."""
    return [name for name in names if not only or any(part in name for part in only)]


def callgrind(url: str, pooler_url: str | None, invocations: int, only: list[str] | None) -> dict[str, float]:
    """Instructions per invocation of every variant (millions), from a child process run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="warm-callgrind-") as folder:
        names_file = str(Path(folder) / "names.json")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getpgrp",
            f"--callgrind-out-file={folder}/out.%p",
            sys.executable,
            str(Path(__file__).resolve()),
            "--instructions-child",
            names_file,
            "--url",
            url,
            "--invocations",
            str(invocations),
        ]
        if pooler_url is not None:
            command += ["--pooler-url", pooler_url]
        for part in only or ():
            command += ["--only", part]
        subprocess.run(command, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        names = json.loads(Path(names_file).read_text())
        dumps = sorted(
            (path for path in Path(folder).glob("out.*.*")), key=lambda path: int(path.name.rsplit(".", 1)[1])
        )
        counts = [int(re.search(r"^summary: (\d+)", path.read_text(), re.M).group(1)) for path in dumps]  # type: ignore[union-attr]
    # Dump 1 ends before the first getpgrp (start-up); then, per variant, its invocations and the next warm-up.
    if len(counts) != 2 * len(names):
        raise SystemExit(f"expected {2 * len(names)} callgrind dumps, got {len(counts)}: is getpgrp called elsewhere?")
    return {name: counts[1 + 2 * index] / invocations / 1e6 for index, name in enumerate(names)}


# --- report ------------------------------------------------------------------------------------------------


def ratio_rows(figures: dict[str, list[float]]) -> list[tuple[str, list[float], float]]:
    """The target ratios, per round: (name, per-round values, bound)."""

    def per_round(numerator: str, denominator: str) -> list[float]:
        return [a / b for a, b in zip(figures[numerator], figures[denominator], strict=True)]

    ratios = [
        # Issue 23's targets: the app on public APIs only, round trips kept.
        ("single <= 8x the statement floor", "single", STATEMENT, 8.0),
        ("null <= 2x connect + close", "null", CONNECT, 2.0),
        ("(single / null)", "single", "null", float("nan")),
        ("(null / asyncpg's connect + statement + close)", "null", NULL_FLOOR, float("nan")),
    ]
    return [(name, per_round(a, b), bound) for name, a, b, bound in ratios if a in figures and b in figures]


def report(figures: dict[str, list[float]], trips: dict[str, float], unit: str, heading: str) -> None:
    median = {name: statistics.median(values) for name, values in figures.items()}
    statement, connect = median.get(STATEMENT, float("nan")), median.get(CONNECT, float("nan"))
    rows = []
    for name, value in median.items():
        label = f"DB_POOL={name}" if name in MODES or name == SINGLE_VIA else name
        trip = f"{trips[name]:.2f}" if name in trips else "-"
        spread = " ".join(f"{v:.2f}" for v in figures[name]) if len(figures[name]) > 1 else ""
        rows.append((label, value, trip, value / statement, value / connect, spread))
    print(f"\n{heading}\n")
    print(table(("what", unit, "round trips", "x statement floor", "x connect floor", "rounds"), rows))
    print()
    checks = []
    for name, values, bound in ratio_rows(figures):
        per_round = " ".join(f"{v:.3f}" for v in values)
        if bound != bound:  # no bound: shown for the record
            checks.append((name, statistics.median(values), "-", "-", per_round))
        else:
            met = f"{sum(v <= bound for v in values)}/{len(values)}"
            checks.append((name, statistics.median(values), bound, met, per_round))
    if "single" in trips:
        checks.append(("single: 1 round trip", trips["single"], 1.0, "yes" if trips["single"] <= 1 else "NO", ""))
    if "null" in trips:
        checks.append(("null: <= 7 round trips", trips["null"], 7.0, "yes" if trips["null"] <= 7 else "NO", ""))
    if SINGLE_VIA in trips:
        value = trips[SINGLE_VIA]
        checks.append((f"{SINGLE_VIA}: 1 round trip", value, 1.0, "yes" if value <= 1 else "NO", ""))
    print(table(("target (ratio within a round)", "median", "bound", "rounds met", "per round"), checks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=200, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trip-invocations", type=int, default=20, help="invocations counted through the proxy")
    parser.add_argument("--callgrind", action="store_true", help="instructions per invocation instead of CPU time")
    parser.add_argument(
        "--only", action="append", help="only the variants whose name contains this (repeatable; ratios need all)"
    )
    parser.add_argument("--instructions-child", metavar="NAMES_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pooler-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the proxy's tasks cancelled at its stop
    logging.getLogger("app.db").setLevel(logging.ERROR)  # single without a pooler warns, once per engine

    if args.instructions_child:
        measure_instructions(args.url, args.pooler_url, args.invocations, args.instructions_child, args.only)
        return 0

    url, bouncer = setup()
    pooler_url = bouncer.url() if bouncer is not None else None
    try:
        if args.callgrind:
            counts = callgrind(url, pooler_url, args.invocations, args.only)
            report(
                {name: [value] for name, value in counts.items()},
                {},
                "M instructions/invocation",
                f"callgrind: instructions per invocation over {args.invocations} invocations after a warm-up, "
                "GET /api/v1/tasks?tag=x&limit=20 (20 rows)",
            )
            return 0
        loop = thread_loop()
        variants = Variants(loop, url, pooler_url)
        try:
            figures = cpu_rounds(variants, selected(list(variants.all), args.only), args.invocations, args.rounds)
        finally:
            variants.close()
        trips = round_trips(loop, url, pooler_url, args.trip_invocations)
    finally:
        if bouncer is not None:
            bouncer.stop()
    report(
        figures,
        trips,
        "CPU ms/invocation (median)",
        f"CPU per invocation: median of {args.rounds} rounds of {args.invocations} invocations per variant, "
        f"GET /api/v1/tasks?tag=x&limit=20 (20 rows); round trips over {args.trip_invocations} through the proxy",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
