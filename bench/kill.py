"""Kill bench: DB_POOL=single in a warm Lambda process while the server side keeps closing its connection.

    python bench/kill.py [--invocations 1000] [--kills 100] [--seed 1]

Invocations of app.handler.handler (HTTP API 2.0 events, one event loop kept, as in a warm sandbox), half reads
(`GET /api/v1/tasks?tag=x`) and half writes (`POST /api/v1/tasks`, each with a title of its own), in two runs:
- through PgBouncer 1.24 (scripts/build_pgbouncer.sh) in transaction mode like Neon's pooler, with a short
  client_idle_timeout; between random pairs of invocations one of: pg_terminate_backend of the pooler's server
  sessions, a pooler restart, a PostgreSQL restart, or a wait past the pooler's idle timeout;
- straight to PostgreSQL: pg_terminate_backend of the app's session, or a PostgreSQL restart;
- both again ("keyed") with an Idempotency-Key on every write, a client that sends a write answered 503 again
  with the same key (up to 5 times), and kills that may also land while a write runs (pg_terminate_backend a
  few milliseconds into it, from another thread). There every key must end answered 201, stored exactly once,
  under the id the answer named: 0 lost, 0 duplicated.

Then it checks, from the table: every read answered 200; every write answered 201 is there exactly once; no
write was answered anything but 201 or 503, and none (503 included) is there twice. The bench runs its own
embedded PostgreSQL in `.data/kill-pg` (restarted here, so never the other benches' server).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import random
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    BENCH_USER_ID,
    ROOT,
    LambdaContext,
    bench_token,
    ensure_bench_user,
    http_api_event,
    lambda_handler,
    migrate,
    table,
)

DATA_DIR = ROOT / ".data" / "kill-pg"
DURING_WRITE = "pg_terminate_backend during a write"
RETRIES = 5  # a keyed write answered 503 is sent again, with the same key, up to this many times
IDLE_TIMEOUT = 0.5  # the pooler's client_idle_timeout, seconds


class LogCounter(logging.Handler):
    """Counts app.db's lines about what it did: a dead idle connection replaced, a statement sent again."""

    MARKERS = {
        "closed while idle": "replaced before use",
        "sending it again": "resent (never sent)",
        "reading again": "read again",
        "not sent again": "write not resent",
        "keyed write; sending it again": "keyed write resent",
    }

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for marker, label in self.MARKERS.items():
            if marker in message:
                self.counts[label] += 1


class Server:
    """The bench's own PostgreSQL, restartable on the same port."""

    def __init__(self) -> None:
        import os

        from app.dev.embedded import ensure_running, free_port

        os.environ.setdefault("EMBEDDED_PG_FAST", "1")
        self.server = ensure_running(DATA_DIR, port=free_port(), database="kill")
        self.url = self.server.url("kill")

    def restart(self) -> None:
        from app.dev.embedded import ensure_running

        port = self.server.port
        self.server.stop()
        self.server = ensure_running(DATA_DIR, port=port, database="kill")

    async def terminate_sessions(self) -> int:
        """pg_terminate_backend of every other client session on the bench database (the app's, the pooler's)."""
        import asyncpg

        connection = await asyncpg.connect(self.url)
        try:
            return await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        finally:
            await connection.close()


def run_phase(
    name: str, server: Server, url: str, pooler, kinds: list[str], args, rng: random.Random, keyed: bool = False
) -> dict:
    """One run. `keyed`: every write carries an Idempotency-Key, and the client sends it again, with the same
    key, after each 503 (up to RETRIES times); a kill may also land while a write runs ("during a write")."""
    import app.db
    from app.config import normalize_database_url, settings

    cfg = settings.model_copy(update={"DB_POOL": "single"})
    engine = app.db.create_engine(normalize_database_url(url, force_pooler=pooler is not None), cfg)
    previous, app.db.engine = app.db.engine, engine
    handler, context, token = lambda_handler(), LambdaContext(), bench_token()
    loop = asyncio.get_event_loop()
    kill_at = set(rng.sample(range(1, args.invocations), args.kills))
    kills: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[tuple[str, int]] = collections.Counter()
    writes: dict[str, int] = {}
    answered_ids: dict[str, str] = {}
    retries = 0
    failures: list[str] = []
    counter = LogCounter()
    db_logger = logging.getLogger("app.db")
    db_logger.addHandler(counter)
    level, db_logger.level = db_logger.level, logging.INFO
    started = time.monotonic()
    try:
        for index in range(args.invocations):
            during = None
            if index in kill_at:
                kind = rng.choice(kinds)
                kills[kind] += 1
                if kind == DURING_WRITE:
                    # From another thread, a few milliseconds into the next write: before, during or just after
                    # its statement, the client cannot tell which.
                    during = threading.Timer(rng.uniform(0, 0.004), lambda: asyncio.run(server.terminate_sessions()))
                elif kind == "pg_terminate_backend":
                    loop.run_until_complete(server.terminate_sessions())
                elif kind == "pooler restart":
                    pooler.restart()
                elif kind == "postgres restart":
                    server.restart()
                elif kind == "pooler idle timeout":
                    time.sleep(IDLE_TIMEOUT * 3)
            if rng.random() < 0.5 and during is None:
                event = http_api_event("GET", "/api/v1/tasks", query={"tag": "x", "limit": 20}, token=token)
                status = handler(event, context)["statusCode"]
                outcomes[("read", status)] += 1
                if status != 200:
                    failures.append(f"read {index} answered {status}")
            else:
                title = f"kill-{name}-{uuid.uuid4().hex}"
                event = http_api_event("POST", "/api/v1/tasks", body={"title": title, "tags": ["kill"]}, token=token)
                if keyed:
                    event["headers"]["idempotency-key"] = f'"{uuid.uuid4()}"'
                if during is not None:
                    during.start()
                response = handler(event, context)
                for _ in range(RETRIES if keyed else 0):
                    if response["statusCode"] != 503:
                        break
                    retries += 1
                    time.sleep(0.05)  # the client's back-off before sending the same request again
                    response = handler(event, context)
                if during is not None:
                    during.join()
                status = response["statusCode"]
                outcomes[("write", status)] += 1
                writes[title] = status
                if status == 201:
                    answered_ids[title] = json.loads(response["body"])["id"]
                if status not in (201, 503):
                    failures.append(f"write {index} answered {status}")
    finally:
        db_logger.removeHandler(counter)
        db_logger.setLevel(level)
        loop.run_until_complete(engine.dispose())
        app.db.engine = previous
    elapsed = time.monotonic() - started
    stored_ids = loop.run_until_complete(titles(server.url, f"kill-{name}-"))
    stored = {title: len(ids) for title, ids in stored_ids.items()}
    for title, status in writes.items():
        count = stored.get(title, 0)
        if status == 201 and count == 1 and stored_ids[title] != [answered_ids[title]]:
            failures.append("a write answered 201 with one id is stored with another")
        if keyed and status != 201:
            failures.append(f"a keyed write still answered {status} after {RETRIES} retries (lost)")
        if status == 201 and count != 1:
            failures.append(f"a write answered 201 is in the table {count} times")
        if count > 1:
            failures.append(f"a write answered {status} is in the table {count} times")
    return {
        "name": name,
        "kills": kills,
        "outcomes": outcomes,
        "unknown_saved": sum(1 for t, s in writes.items() if s == 503 and stored.get(t, 0) == 1),
        "failures": failures,
        "seconds": elapsed,
        "app": counter.counts,
        "retries": retries,
    }


async def titles(url: str, prefix: str) -> dict[str, list[str]]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT title, array_agg(id::text) AS ids FROM tasks WHERE user_id = $1 AND title LIKE $2 GROUP BY title",
            BENCH_USER_ID,
            prefix + "%",
        )
    finally:
        await connection.close()
    return {row["title"]: list(row["ids"]) for row in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    from tests.pooler import pgbouncer as pgb

    rng = random.Random(args.seed)
    server = Server()
    migrate(server.url)
    asyncio.run(ensure_bench_user(server.url))
    lambda_handler()  # Mangum takes the thread's loop now; every invocation runs on it
    results = []
    binary = pgb.find_current_binary()
    if binary is None:
        print("PgBouncer 1.24 is not built (scripts/build_pgbouncer.sh): the pooler run is left out", file=sys.stderr)
    else:
        bouncer = pgb.start(server.url, binary=binary, settings={"client_idle_timeout": str(IDLE_TIMEOUT)})
        try:
            kinds = ["pg_terminate_backend", "pooler restart", "postgres restart", "pooler idle timeout"]
            results.append(run_phase("pgbouncer-1.24", server, bouncer.url(), bouncer, kinds, args, rng))
            keyed_kinds = ["pg_terminate_backend", "pooler restart", DURING_WRITE]
            results.append(
                run_phase("pgbouncer-1.24 keyed", server, bouncer.url(), bouncer, keyed_kinds, args, rng, keyed=True)
            )
        finally:
            bouncer.stop()
    results.append(
        run_phase("direct", server, server.url, None, ["pg_terminate_backend", "postgres restart"], args, rng)
    )
    keyed_kinds = ["pg_terminate_backend", DURING_WRITE]
    results.append(run_phase("direct keyed", server, server.url, None, keyed_kinds, args, rng, keyed=True))
    server.server.stop()

    rows = []
    for result in results:
        outcomes = result["outcomes"]
        rows.append(
            (
                result["name"],
                sum(outcomes.values()),
                sum(result["kills"].values()),
                ", ".join(f"{kind} {n}" for kind, n in sorted(result["kills"].items())),
                json.dumps({f"{what} {status}": n for (what, status), n in sorted(outcomes.items())}),
                ", ".join(f"{what} {n}" for what, n in sorted(result["app"].items())) or "-",
                result["unknown_saved"],
                result["retries"],
                len(result["failures"]),
                result["seconds"],
            )
        )
    print(f"\nDB_POOL=single, {args.invocations} invocations and {args.kills} kills per run (seed {args.seed})\n")
    headers = (
        "run",
        "invocations",
        "kills",
        "kinds",
        "answers (final)",
        "the app",
        "503 writes saved",
        "client retries",
        "failures",
        "seconds",
    )
    print(table(headers, rows))
    failures = [failure for result in results for failure in result["failures"]]
    for failure in failures[:20]:
        print("FAILED:", failure)
    print("\nall checks held" if not failures else f"\n{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
