"""What an Idempotency-Key costs: round trips and CPU of keyed writes against unkeyed ones, and of a replay.

    python bench/idempotency.py [--invocations 200] [--rounds 5] [--trip-invocations 20]

Warm Lambda invocations of app.handler.handler (HTTP API 2.0 events on the thread's one event loop, as Mangum
keeps it) with DB_POOL=single against the bench database:
- `POST /api/v1/tasks` without a key, and with a new key each time (the write records its key);
- the same keyed POST sent again (a replay: nothing is written, the stored answer is sent);
- `PATCH /api/v1/tasks/{id}` without a key, and with a new key each time.

CPU: `time.process_time()` over `--invocations` invocations after a warm-up, in `--rounds` rounds whose order
rotates, so that the machine's load hits every variant alike; the ratios are taken within each round (target:
keyed <= 1.3x unkeyed). Round trips: a separate pass through scripts/rtt_proxy.py (target: the same count).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    BENCH_USER_ID,
    LambdaContext,
    bench_database_url,
    bench_token,
    ensure_bench_user,
    http_api_event,
    lambda_handler,
    migrate,
    table,
)
from bench.warm import WARMUP, cpu_rounds, proxied  # noqa: E402 (the same rotating rounds and proxy URL)

POST, POST_KEYED, REPLAY = "POST (no key)", "POST, new key", "POST replayed (same key)"
PATCH, PATCH_KEYED = "PATCH (no key)", "PATCH, new key"
PAIRS = ((POST_KEYED, POST), (PATCH_KEYED, PATCH), (REPLAY, POST))


def app_engine(url: str):
    import app.db
    from app.config import normalize_database_url, settings

    return app.db.create_engine(
        normalize_database_url(url, force_pooler=True), settings.model_copy(update={"DB_POOL": "single"})
    )


class Variants:
    """Each variant as a callable doing one invocation; every write's body and key are its own."""

    def __init__(self, task_id: str) -> None:
        self.handler, self.context, self.token = lambda_handler(), LambdaContext(), bench_token()
        self.counter = itertools.count()
        self.replayed = self.event("POST", "/api/v1/tasks", {"title": "replayed"}, key=str(uuid.uuid4()))
        self.task_path = f"/api/v1/tasks/{task_id}"
        assert self.handler(self.replayed, self.context)["statusCode"] == 201  # the first: the one replayed
        self.all: dict[str, Callable[[], None]] = {
            POST: lambda: self.send("POST", "/api/v1/tasks", 201, key=None),
            POST_KEYED: lambda: self.send("POST", "/api/v1/tasks", 201, key=str(uuid.uuid4())),
            REPLAY: self.replay,
            PATCH: lambda: self.send("PATCH", self.task_path, 200, key=None),
            PATCH_KEYED: lambda: self.send("PATCH", self.task_path, 200, key=str(uuid.uuid4())),
        }

    def event(self, method: str, path: str, body: dict, key: str | None) -> dict:
        event = http_api_event(method, path, body=body, token=self.token)
        if key is not None:
            event["headers"]["idempotency-key"] = f'"{key}"'
        return event

    def send(self, method: str, path: str, status: int, key: str | None) -> None:
        body = {"title": f"bench {next(self.counter)}", "tags": ["bench", "idempotency"]}
        response = self.handler(self.event(method, path, body, key), self.context)
        assert response["statusCode"] == status, response

    def replay(self) -> None:
        response = self.handler(self.replayed, self.context)
        assert response["statusCode"] == 201 and response["headers"].get("idempotent-replayed") == "true", response


def round_trips(url: str, task_id: str, invocations: int) -> dict[str, float]:
    from sqlalchemy.engine import make_url

    import app.db
    from scripts.rtt_proxy import RttProxy

    loop = asyncio.get_event_loop()
    target = make_url(url)
    trips: dict[str, float] = {}
    for name in (POST, POST_KEYED, REPLAY, PATCH, PATCH_KEYED):
        proxy = RttProxy(target.host or "127.0.0.1", target.port or 5432).start()
        engine = app_engine(proxied(url, proxy))
        previous, app.db.engine = app.db.engine, engine
        try:
            work = Variants(task_id).all[name]
            for _ in range(WARMUP):
                work()
            loop.run_until_complete(asyncio.sleep(0.05))
            before = proxy.round_trips_so_far()
            for _ in range(invocations):
                work()
            loop.run_until_complete(asyncio.sleep(0.05))
            trips[name] = (proxy.round_trips_so_far() - before) / invocations
        finally:
            loop.run_until_complete(engine.dispose())
            app.db.engine = previous
            proxy.stop()
    return trips


async def bench_task(url: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("DELETE FROM tasks WHERE user_id = $1 AND 'idempotency' = ANY(tags)", BENCH_USER_ID)
        await connection.execute("DELETE FROM idempotency_keys WHERE user_id = $1", BENCH_USER_ID)
        task_id = await connection.fetchval(
            "INSERT INTO tasks (user_id, title, tags) VALUES ($1, 'patched', '{idempotency}') RETURNING id",
            BENCH_USER_ID,
        )
    finally:
        await connection.close()
    return str(task_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=200, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trip-invocations", type=int, default=20, help="invocations counted through the proxy")
    args = parser.parse_args()

    url = bench_database_url()
    migrate(url)
    asyncio.run(ensure_bench_user(url))
    lambda_handler()  # Mangum takes the thread's loop; every invocation below runs on it
    loop = asyncio.get_event_loop()
    task_id = loop.run_until_complete(bench_task(url))

    import app.db

    engine = app_engine(url)
    previous, app.db.engine = app.db.engine, engine
    try:
        variants = Variants(task_id)
        figures = cpu_rounds(variants, list(variants.all), args.invocations, args.rounds)
    finally:
        loop.run_until_complete(engine.dispose())
        app.db.engine = previous
    trips = round_trips(url, task_id, args.trip_invocations)
    loop.run_until_complete(bench_task(url))  # leave the bench user's list as it was

    print(f"\nDB_POOL=single, warm; median of {args.rounds} rounds of {args.invocations} invocations per variant\n")
    rows = [
        (name, statistics.median(values), trips[name], " ".join(f"{v:.2f}" for v in values))
        for name, values in figures.items()
    ]
    print(table(["what", "CPU ms/invocation (median)", "round trips", "rounds"], rows))
    ratio_rows = []
    for numerator, denominator in PAIRS:
        per_round = [a / b for a, b in zip(figures[numerator], figures[denominator], strict=True)]
        bound = "<= 1.30" if numerator != REPLAY else "-"
        same_trips = "yes" if trips[numerator] == trips[denominator] else "NO"
        ratio_rows.append(
            (
                f"{numerator} / {denominator}",
                statistics.median(per_round),
                bound,
                same_trips,
                " ".join(f"{r:.2f}" for r in per_round),
            )
        )
    print()
    print(table(["CPU ratio (within a round)", "median", "target", "same round trips", "per round"], ratio_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
