"""The harness: a real pgbouncer in transaction mode, and a prepared-statement probe that sees leaks."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.pooler import pgbouncer as pgb

pytestmark = pytest.mark.pooler


def test_runs_in_transaction_mode(pgbouncer):
    config = {row["key"]: row["value"] for row in pgbouncer.admin("SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == str(pgb.POOL_SIZE)
    assert pgb.version(pgb.find_binary()).startswith("PgBouncer 1.")


async def test_clients_share_server_connections(pgbouncer):
    """Transaction pooling: one server connection serves many clients in turn, and a client holding a
    transaction keeps its own server connection until it ends."""
    first = await asyncpg.connect(pgbouncer.url(), statement_cache_size=0)
    second = await asyncpg.connect(pgbouncer.url(), statement_cache_size=0)
    try:
        await first.execute("BEGIN")
        held = await first.fetchval("SELECT pg_backend_pid()")
        other = await second.fetchval("SELECT pg_backend_pid()")
        assert held != other
        await first.execute("COMMIT")
        # With the transaction over, first's server connection is back in the pool: sequential statements of
        # one client may now run on any server connection, which is what breaks session state.
        seen = {await second.fetchval("SELECT pg_backend_pid()") for _ in range(10)}
        seen |= {await first.fetchval("SELECT pg_backend_pid()") for _ in range(10)}
        assert len(seen) <= pgb.POOL_SIZE
        assert {int(row["remote_pid"]) for row in pgbouncer.servers()} >= seen
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_probe_finds_a_prepared_statement_left_on_a_server_connection(fresh_pgbouncer):
    """The leftover check used by the proof is not vacuous: a named statement left behind is found."""
    client = await asyncpg.connect(fresh_pgbouncer.url())  # default: statement cache on, named statements
    try:
        await client.fetchval("SELECT 40 + $1::int", 2)
    finally:
        await client.close()
    found = await pgb.prepared_statements_on_servers(fresh_pgbouncer)
    assert found, "pgbouncer should hold the server connection the client used"
    assert any(name.startswith("__asyncpg_stmt_") for names in found.values() for name in names), found


async def test_probe_sees_none_after_unnamed_statements(fresh_pgbouncer):
    client = await asyncpg.connect(fresh_pgbouncer.url(), statement_cache_size=0)
    try:
        assert await client.fetchval("SELECT 40 + $1::int", 2) == 42
    finally:
        await client.close()
    found = await pgb.prepared_statements_on_servers(fresh_pgbouncer)
    assert found and all(names == [] for names in found.values()), found


async def test_scram_client_login_as_on_neon(pgbouncer_binary, database_url):
    bouncer = pgb.start(database_url, binary=pgbouncer_binary, auth_type="scram-sha-256")
    try:
        client = await asyncpg.connect(bouncer.url(), statement_cache_size=0)
        try:
            assert await client.fetchval("SELECT current_user") == bouncer.user
        finally:
            await client.close()
        with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
            await asyncpg.connect(bouncer.url().replace(f":{bouncer.password}@", ":wrong-password@"))
    finally:
        bouncer.stop()
