"""Load development data. Idempotent: run it any number of times and the same rows are there.

    python scripts/seed_dev.py                        # the development user and their tasks
    python scripts/seed_dev.py --users 10 --tasks 100000   # + 10 bench users x 100,000 tasks (a million)

The development user is test@example.com with password `devpassword` (local use only). Bulk data is generated
inside PostgreSQL with one INSERT ... SELECT per user, which is much faster than sending rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import _bootstrap

DEV_EMAIL = "test@example.com"
DEV_PASSWORD = "devpassword"
BENCH_EMAIL = "bench-{}@example.com"
BENCH_PASSWORD = "benchpassword"
SEED_NAMESPACE = uuid.UUID("6f1f8f4e-2a8b-4c1e-9d3a-5b7c0e9a1d42")
BULK_TAGS = ["work", "home", "urgent", "errand", "reading", "finance", "health", "travel", "x", "later"]


def dev_tasks(now: datetime) -> list[dict]:
    """Five-plus tasks covering overdue, due soon, done, every priority and several tags."""
    day = timedelta(days=1)
    return [
        {
            "title": "File the quarterly tax return",
            "priority": "urgent",
            "status": "todo",
            "due": now - 2 * day,
            "tags": ["finance", "overdue"],
            "description": "Overdue: it was due two days ago.",
        },
        {
            "title": "Prepare the sprint demo",
            "priority": "high",
            "status": "in_progress",
            "due": now + day,
            "tags": ["work", "demo"],
            "description": "Due tomorrow.",
        },
        {
            "title": "Renew the passport",
            "priority": "medium",
            "status": "todo",
            "due": now + 3 * day,
            "tags": ["travel", "errand"],
            "description": None,
        },
        {
            "title": "Read 'Designing Data-Intensive Applications'",
            "priority": "low",
            "status": "todo",
            "due": None,
            "tags": ["reading"],
            "description": "No due date.",
        },
        {
            "title": "Book the dentist",
            "priority": "medium",
            "status": "done",
            "due": now - 5 * day,
            "tags": ["health", "errand"],
            "description": "Done last week.",
        },
        {
            "title": "Water the plants",
            "priority": "low",
            "status": "done",
            "due": now - day,
            "tags": ["home"],
            "description": None,
        },
    ]


async def connect():
    from app.config import settings
    from app.db import connect_to

    return await connect_to(settings.database_direct)


async def upsert_user(connection, email: str, password: str, full_name: str) -> uuid.UUID:
    """Insert the user, or keep the existing row (re-hashing only if the password no longer matches)."""
    from app.security import hash_password, verify_password

    row = await connection.fetchrow("SELECT id, hashed_password FROM users WHERE lower(email) = lower($1)", email)
    if row is not None:
        if not verify_password(password, row["hashed_password"]):
            await connection.execute(
                "UPDATE users SET hashed_password = $2 WHERE id = $1", row["id"], hash_password(password)
            )
        return row["id"]
    user_id = uuid.uuid5(SEED_NAMESPACE, email.lower())
    await connection.execute(
        "INSERT INTO users (id, email, hashed_password, full_name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        user_id,
        email.lower(),
        hash_password(password),
        full_name,
    )
    return user_id


async def seed_dev_user(connection) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    user_id = await upsert_user(connection, DEV_EMAIL, DEV_PASSWORD, "Test User")
    tasks = dev_tasks(now)
    async with connection.transaction():
        for task in tasks:
            # A stable id per title makes the seed idempotent: re-running refreshes the same rows.
            task_id = uuid.uuid5(SEED_NAMESPACE, f"{DEV_EMAIL}/{task['title']}")
            completed_at = now if task["status"] == "done" else None
            await connection.execute(
                """
                INSERT INTO tasks (id, user_id, title, description, status, priority, due_date, completed_at, tags)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (id) DO UPDATE SET
                    title = EXCLUDED.title, description = EXCLUDED.description, status = EXCLUDED.status,
                    priority = EXCLUDED.priority, due_date = EXCLUDED.due_date,
                    completed_at = COALESCE(tasks.completed_at, EXCLUDED.completed_at), tags = EXCLUDED.tags
                WHERE (tasks.title, tasks.description, tasks.status, tasks.priority, tasks.due_date, tasks.tags)
                    IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.description, EXCLUDED.status, EXCLUDED.priority,
                                      EXCLUDED.due_date, EXCLUDED.tags)
                """,
                task_id,
                user_id,
                task["title"],
                task["description"],
                task["status"],
                task["priority"],
                task["due"],
                completed_at,
                task["tags"],
            )
    return len(tasks)


# Generated server-side: varied status, priority, due dates (some overdue), 0-3 tags, creation times spread
# over a year so keyset pagination and the indexes see realistic data.
BULK_INSERT = """
INSERT INTO tasks (user_id, title, description, status, priority, due_date, completed_at, tags, created_at)
SELECT $1,
       'Task ' || g,
       CASE WHEN g % 3 = 0 THEN 'Generated description for task ' || g END,
       s.status,
       (ARRAY['low', 'medium', 'high', 'urgent'])[1 + (g * 7) % 4],
       CASE WHEN g % 4 = 0 THEN NULL ELSE now() + ((g % 61) - 30) * interval '1 day' END,
       CASE WHEN s.status = 'done' THEN now() END,
       array_remove(ARRAY[{tag_choices}], NULL),
       now() - (g * interval '37 seconds')
FROM generate_series(1, $2) AS g
CROSS JOIN LATERAL (SELECT (ARRAY['todo', 'in_progress', 'done'])[1 + (g * 13) % 3] AS status) AS s
""".format(
    # Tag i of $3 (1-based) on about one task in six: a plain CASE per tag (no subquery per row).
    tag_choices=", ".join(
        f"CASE WHEN (hashint4(g) >> {2 * i}) & 7 = 0 OR ({i} = 1 + g % 10 AND g % 2 = 0) THEN ($3::text[])[{i}] END"
        for i in range(1, len(BULK_TAGS) + 1)
    )
)


async def seed_bulk(connection, users: int, tasks_per_user: int) -> int:
    """Ensure bench users 1..N exist with exactly M generated tasks each.

    A big load (more new rows than the table keeps) drops the secondary indexes and the foreign key of
    `tasks`, inserts, and recreates them from their exact definitions, in one transaction: building an index
    once is several times faster than maintaining it row by row, and validating the foreign key with one join
    is much faster than a trigger per row (pg_restore loads the same way). A failure rolls everything back.
    """
    from app.security import hash_password

    hashed = hash_password(BENCH_PASSWORD)  # once: hashing a million times would take hours
    stale: list[uuid.UUID] = []
    for i in range(1, users + 1):
        email = BENCH_EMAIL.format(i)
        await connection.execute(
            "INSERT INTO users (id, email, hashed_password, full_name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            uuid.uuid5(SEED_NAMESPACE, email),
            email,
            hashed,
            f"Bench user {i}",
        )
        user_id = await connection.fetchval("SELECT id FROM users WHERE lower(email) = $1", email)
        have = await connection.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user_id)
        if have != tasks_per_user:
            stale.append(user_id)
    if not stale:
        return 0
    async with connection.transaction():
        await connection.execute("DELETE FROM tasks WHERE user_id = ANY($1::uuid[])", stale)
        kept = await connection.fetchval("SELECT count(*) FROM tasks")
        rebuild = len(stale) * tasks_per_user > kept
        indexes, foreign_keys = [], []
        if rebuild:
            indexes = await connection.fetch(
                "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS ddl FROM pg_index "
                "WHERE indrelid = 'tasks'::regclass AND NOT indisprimary AND NOT indisunique"
            )
            foreign_keys = await connection.fetch(
                "SELECT quote_ident(conname) AS name, pg_get_constraintdef(oid) AS ddl FROM pg_constraint "
                "WHERE conrelid = 'tasks'::regclass AND contype = 'f'"
            )
            await connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for index in indexes:
                await connection.execute(f"DROP INDEX {index['name']}")
            for key in foreign_keys:
                await connection.execute(f"ALTER TABLE tasks DROP CONSTRAINT {key['name']}")
        for user_id in stale:
            await connection.execute(BULK_INSERT, user_id, tasks_per_user, BULK_TAGS)
        for index in indexes:
            await connection.execute(index["ddl"])
        for key in foreign_keys:
            await connection.execute(f"ALTER TABLE tasks ADD CONSTRAINT {key['name']} {key['ddl']}")
    await connection.execute("ANALYZE tasks")
    return len(stale) * tasks_per_user


async def run(users: int, tasks_per_user: int) -> None:
    connection = await connect()
    try:
        started = time.perf_counter()
        count = await seed_dev_user(connection)
        print(f"seeded {DEV_EMAIL} (password: {DEV_PASSWORD}) with {count} tasks")
        if users and tasks_per_user:
            created = await seed_bulk(connection, users, tasks_per_user)
            print(
                f"bulk: {users} users x {tasks_per_user} tasks ({created} generated now) "
                f"in {time.perf_counter() - started:.1f} s"
            )
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=0, help="bench users to generate (bench-N@example.com)")
    parser.add_argument("--tasks", type=int, default=0, help="tasks per bench user")
    args = parser.parse_args(argv)
    if args.users < 0 or args.tasks < 0:
        parser.error("--users and --tasks must not be negative")
    _bootstrap.database_ready()
    asyncio.run(run(args.users, args.tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
