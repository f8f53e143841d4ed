"""DB_POOL=single through a real transaction pooler, both PgBouncers: Debian's 1.18 (keeps no prepared
statements) and 1.24 configured like Neon's pooler (max_prepared_statements).

Through 1.24 a warm read reuses its named prepared statement: the pooler sees Bind/Execute and no Parse. Through
1.18 a Bind can land on a server connection that never saw the Parse; the app then falls back to unnamed
statements by itself, and nothing is executed twice (shown with a write).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from tests.aws_lambda.support import adapt, response_json
from tests.pooler import pgbouncer as pgb
from tests.pooler.conftest import running_pgbouncer
from tests.support.api import insert_task, make_account
from tests.support.outage import use_engine

pytestmark = pytest.mark.pooler  # needs PgBouncer 1.24 too: the preview job (`-m "not pooler"`) has no build

V2 = "powertools__apiGatewayProxyV2Event.json"
FALLBACK_LOG = "does not keep prepared statements"


@pytest.fixture
def bouncer(any_pgbouncer_binary: str, database_url: str) -> Iterator[pgb.PgBouncer]:
    """A pgbouncer of the test's own (it starts with no server connections), 1.18 or 1.24."""
    yield from running_pgbouncer(any_pgbouncer_binary, database_url)


@pytest.fixture
def single_engine(monkeypatch, bouncer, lambda_thread):
    engine = use_engine(monkeypatch, bouncer.url(), pooler=True, DB_POOL="single")
    yield engine
    lambda_thread.submit(lambda: asyncio.get_event_loop().run_until_complete(engine.dispose())).result(timeout=10)


@pytest.fixture(scope="module")
def lambda_thread():
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1, initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop()))
    yield executor
    executor.shutdown()


@pytest.fixture
def invoke(lambda_thread):
    from app.handler import handler
    from tests.aws_lambda.support import FakeContext

    async def run(event: dict) -> dict:
        return await asyncio.get_running_loop().run_in_executor(lambda_thread, handler, event, FakeContext())

    return run


def list_event(headers: dict[str, str]) -> dict:
    return adapt(V2, "GET", "/api/v1/tasks", headers=headers, query={"tag": "x", "limit": "20"})


def create_event(headers: dict[str, str], title: str) -> dict:
    return adapt(V2, "POST", "/api/v1/tasks", headers=headers, body=json.dumps({"title": title}))


async def drop_server_connections(db, bouncer: pgb.PgBouncer) -> None:
    """End the pooler's server sessions: the prepared statements on them are gone with them."""
    pids = [int(row["remote_pid"]) for row in bouncer.servers()]
    assert pids
    for pid in pids:
        await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    for _ in range(200):
        if not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = any($1::int[])", pids):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the pooler's server sessions did not end")


async def test_a_warm_read_reuses_its_prepared_statement(invoke, db, bouncer, single_engine, caplog):
    account = await make_account(db)
    await insert_task(db, account.id, "listed", tags=["x"])
    with caplog.at_level(logging.WARNING, logger="app.db"):
        for _ in range(2):  # the first prepares; the second may meet 1.18's limits and fall back
            assert (await invoke(list_event(account.headers)))["statusCode"] == 200
        before = bouncer.stats()
        for _ in range(5):
            response = await invoke(list_event(account.headers))
            assert response["statusCode"] == 200
            assert [item["title"] for item in response_json(response)["items"]] == ["listed"]
        after = bouncer.stats()
    if pgb.tracks_prepared_statements(bouncer.binary):
        # Five Binds, no Parse: the statement prepared by the first invocation is reused by the pooler.
        assert after["total_bind_count"] - before["total_bind_count"] == 5
        assert after["total_client_parse_count"] == before["total_client_parse_count"]
        assert FALLBACK_LOG not in caplog.text
    else:
        # 1.18 counts no Parse/Bind; five answers is what it can show. Nothing failed.
        assert after["total_query_count"] - before["total_query_count"] >= 5


async def test_a_pooler_that_lost_the_prepared_statement_never_runs_a_write_twice(
    invoke, db, bouncer, single_engine, caplog
):
    account = await make_account(db)
    with caplog.at_level(logging.WARNING, logger="app.db"):
        assert (await invoke(create_event(account.headers, "one")))["statusCode"] == 201
        # The named INSERT now exists (if anywhere) only on server sessions that end here. The client connection
        # to the pooler stays open, so the next Bind of the same statement goes to a new server session.
        await drop_server_connections(db, bouncer)
        assert (await invoke(create_event(account.headers, "two")))["statusCode"] == 201
        assert (await invoke(create_event(account.headers, "three")))["statusCode"] == 201
    titles = sorted(row["title"] for row in await db.fetch("SELECT title FROM tasks WHERE user_id = $1", account.id))
    assert titles == ["one", "three", "two"]  # each write exactly once
    if pgb.tracks_prepared_statements(bouncer.binary):
        assert FALLBACK_LOG not in caplog.text  # 1.24 prepares it again on the new server session by itself
    else:
        assert FALLBACK_LOG in caplog.text  # 1.18: Bind of an unknown statement, nothing ran, sent unnamed
