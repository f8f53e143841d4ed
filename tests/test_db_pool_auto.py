"""DB_POOL=auto, the default: one kept connection per process behind a pooler, a fresh one per request otherwise.

The choice is app.config.choose_pool's; app.db.create_engine builds the pool it names and logs the choice, with
its reason, on the engine's first connection (logging is configured by then).
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool

import app.db
from app.config import Settings, choose_pool, normalize_database_url, settings

NEON_POOLED = "postgresql://alex:pw@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"
NEON_DIRECT = NEON_POOLED.replace("-pooler", "")


def test_auto_is_the_default(monkeypatch):
    monkeypatch.delenv("DB_POOL", raising=False)
    assert Settings(_env_file=None).DB_POOL == "auto"


def test_auto_keeps_one_connection_behind_neons_pooler():
    choice = choose_pool("auto", normalize_database_url(NEON_POOLED))
    assert choice.mode == "single"
    assert "-pooler host" in choice.reason


def test_auto_keeps_one_connection_when_db_pooler_says_so():
    target = normalize_database_url("postgresql://u:p@pgbouncer.internal:6432/d", force_pooler=True)
    choice = choose_pool("auto", target)
    assert choice.mode == "single"
    assert "DB_POOLER=true" in choice.reason


def test_auto_opens_a_fresh_connection_per_request_on_a_direct_endpoint():
    choice = choose_pool("auto", normalize_database_url(NEON_DIRECT))
    assert choice.mode == "null"
    assert "not a pooler" in choice.reason


@pytest.mark.parametrize("mode", ["null", "single", "queue"])
def test_an_explicit_setting_wins_over_the_url(mode):
    for url in (NEON_POOLED, NEON_DIRECT):
        assert choose_pool(mode, normalize_database_url(url)) == (mode, f"DB_POOL={mode} was set")


def test_unknown_values_are_refused(monkeypatch):
    monkeypatch.setenv("DB_POOL", "sometimes")
    with pytest.raises(ValueError, match="DB_POOL"):
        Settings(_env_file=None)


def test_the_engine_builds_the_pool_auto_chose():
    cfg = settings.model_copy(update={"DB_POOL": "auto"})
    kept = app.db.create_engine(normalize_database_url(NEON_POOLED), cfg)
    fresh = app.db.create_engine(normalize_database_url(NEON_DIRECT), cfg)
    assert isinstance(kept.pool, QueuePool) and kept.pool.size() == 1
    assert isinstance(fresh.pool, NullPool)


async def test_the_first_connection_logs_the_choice_and_why(database_url, caplog):
    cfg = settings.model_copy(update={"DB_POOL": "auto"})
    engine_target = normalize_database_url(database_url, force_pooler=True)
    engine = app.db.create_engine(engine_target, cfg)
    try:
        with caplog.at_level(logging.INFO, logger="app.db"):
            for _ in range(2):
                async with engine.connect() as connection:
                    assert await connection.scalar(text("select 1")) == 1
    finally:
        await engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.db" and r.getMessage().startswith("DB_POOL=")]
    # Once per engine, however many connections follow.
    assert lines == [f"DB_POOL=single: {choose_pool('auto', engine_target).reason}"]
    assert "DB_POOLER=true" in lines[0]
