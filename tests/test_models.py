"""Invariants the database enforces by itself, whoever writes: uniqueness, cascades, CHECKs, triggers, indexes."""

import asyncio
import uuid

import asyncpg
import pytest


async def make_user(db, email="ada@example.com") -> uuid.UUID:
    return await db.fetchval("INSERT INTO users (email, hashed_password) VALUES ($1, 'x') RETURNING id", email)


async def make_task(db, user_id, **fields) -> uuid.UUID:
    columns = {"title": "A task", **fields}
    names = ", ".join(["user_id", *columns])
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 2))
    return await db.fetchval(
        f"INSERT INTO tasks ({names}) VALUES ({placeholders}) RETURNING id", user_id, *columns.values()
    )


async def test_email_is_unique_ignoring_case(db):
    await make_user(db, "Ada@Example.com")
    with pytest.raises(asyncpg.UniqueViolationError):
        await make_user(db, "ada@EXAMPLE.COM")


async def test_deleting_a_user_deletes_their_tasks(db):
    user_id = await make_user(db)
    other = await make_user(db, "bob@example.com")
    await make_task(db, user_id)
    await make_task(db, user_id)
    await make_task(db, other)
    await db.execute("DELETE FROM users WHERE id = $1", user_id)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user_id) == 0
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_defaults(db):
    user_id = await make_user(db)
    task_id = await make_task(db, user_id)
    row = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    assert (row["status"], row["priority"], row["tags"], row["version"]) == ("todo", "medium", [], 1)
    assert row["created_at"].tzinfo is not None and row["completed_at"] is None


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"status": "blocked"}, "ck_tasks_status_valid"),
        ({"priority": "critical"}, "ck_tasks_priority_valid"),
        ({"title": "   "}, "ck_tasks_title_length"),
        ({"title": ""}, "ck_tasks_title_length"),
        ({"title": "x" * 201}, "ck_tasks_title_length"),
        ({"description": "x" * 10001}, "ck_tasks_description_length"),
        ({"version": 0}, "ck_tasks_version_positive"),
        ({"status": "done"}, "ck_tasks_completed_at_matches_status"),
    ],
)
async def test_check_constraints(db, fields, constraint):
    user_id = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await make_task(db, user_id, **fields)
    assert caught.value.constraint_name == constraint


async def test_task_needs_an_existing_user(db):
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await make_task(db, uuid.uuid4())


async def test_updated_at_is_bumped_by_a_raw_update(db):
    user_id = await make_user(db)
    task_id = await make_task(db, user_id)
    before = await db.fetchrow("SELECT created_at, updated_at FROM tasks WHERE id = $1", task_id)
    await asyncio.sleep(0.01)
    await db.execute("UPDATE tasks SET title = 'Renamed' WHERE id = $1", task_id)
    after = await db.fetchrow("SELECT created_at, updated_at FROM tasks WHERE id = $1", task_id)
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]
    user_before = await db.fetchval("SELECT updated_at FROM users WHERE id = $1", user_id)
    await asyncio.sleep(0.01)
    await db.execute("UPDATE users SET full_name = 'Ada' WHERE id = $1", user_id)
    assert await db.fetchval("SELECT updated_at FROM users WHERE id = $1", user_id) > user_before


async def test_tags_are_text_array_with_a_gin_index_chosen_for_containment(db):
    assert (
        await db.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'tasks'::regclass AND attname = 'tags'"
        )
        == "text[]"
    )
    assert "USING gin (tags)" in await db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tasks_tags_gin'"
    )
    user_id = await make_user(db)
    for i in range(200):
        await make_task(db, user_id, tags=["x"] if i % 50 == 0 else ["other", f"t{i}"])
    await db.execute("ANALYZE tasks")
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN SELECT id FROM tasks WHERE tags @> ARRAY['x']"))
    assert "ix_tasks_tags_gin" in plan, plan
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE tags @> ARRAY['x']") == 4


async def test_per_user_listing_indexes_exist(db):
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await db.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
    }
    assert "(user_id, status, created_at, id)" in indexes["ix_tasks_user_status_created"]
    assert "(user_id, priority, created_at, id)" in indexes["ix_tasks_user_priority_created"]
    assert "(user_id, created_at, id)" in indexes["ix_tasks_user_created"]


async def test_jsonb_columns_come_back_decoded_through_the_app_engine(db):
    # The app's dialect keeps SQLAlchemy's per-connection json/jsonb codecs (asyncpg knows pg_catalog's types
    # without asking the server, so they cost no round trip): idempotency_keys.response is read as a dict.
    from sqlalchemy import text

    from app.db import engine

    columns = await db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type IN ('json', 'jsonb')"
    )
    assert [tuple(row) for row in columns] == [("idempotency_keys", "response")]
    async with engine.connect() as connection:
        value = (await connection.execute(text("""SELECT '{"a": [1, "b"]}'::jsonb"""))).scalar_one()
    assert value == {"a": [1, "b"]}
