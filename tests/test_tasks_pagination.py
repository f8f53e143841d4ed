"""Keyset pagination: every sort order both ways, ties, missing due dates, concurrent inserts, cursors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.models.task import PRIORITY_RANK, TaskSort
from tests.support.api import create_task, error_fields, insert_task, make_account

TASKS = "/api/v1/tasks"
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# Generated in PostgreSQL: many ties on every sort key, a fifth of the tasks without a due date.
GENERATE = """
INSERT INTO tasks (user_id, title, status, priority, due_date, completed_at, tags, created_at, updated_at)
SELECT $1, 'Task ' || g,
       s.status,
       (ARRAY['low', 'medium', 'high', 'urgent'])[1 + (g * 7) % 4],
       CASE WHEN g % 5 = 0 THEN NULL ELSE $2::timestamptz + ((g * 13) % 40) * interval '1 hour' END,
       CASE WHEN s.status = 'done' THEN $2::timestamptz END,
       CASE WHEN g % 2 = 0 THEN ARRAY['even'] ELSE ARRAY['odd'] END,
       $2::timestamptz + (g / 3) * interval '1 second',
       $2::timestamptz + ((g * 7) % 50) * interval '1 minute'
FROM generate_series(1, $3) AS g
CROSS JOIN LATERAL (SELECT (ARRAY['todo', 'in_progress', 'done'])[1 + g % 3] AS status) AS s
"""


async def all_rows(db, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, priority, due_date, created_at, updated_at, tags, status FROM tasks WHERE user_id = $1",
        user_id,
    )
    return [dict(row) for row in rows]


def expected_order(rows: list[dict[str, Any]], sort: TaskSort) -> list[uuid.UUID]:
    """The order the contract promises, computed independently of the SQL."""

    def key(row: dict[str, Any]) -> Any:
        if sort.key == "priority":
            return PRIORITY_RANK[row["priority"]]
        return row[sort.key]

    if sort.key == "due_date":
        dated = sorted(
            (r for r in rows if r["due_date"] is not None),
            key=lambda r: (r["due_date"], r["id"]),
            reverse=sort.descending,
        )
        undated = sorted((r for r in rows if r["due_date"] is None), key=lambda r: r["id"], reverse=sort.descending)
        ordered = dated + undated
    else:
        ordered = sorted(rows, key=lambda r: (key(r), r["id"]), reverse=sort.descending)
    return [row["id"] for row in ordered]


async def walk(client, account, params: dict[str, Any], limit: int) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(TASKS, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen += [uuid.UUID(task["id"]) for task in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == limit
    raise AssertionError("the walk did not end")


@pytest.fixture
async def many(db):
    account = await make_account(db)
    other = await make_account(db)
    await db.execute(GENERATE, account.id, BASE, 300)
    await db.execute(GENERATE, other.id, BASE, 40)
    return account, await all_rows(db, account.id)


@pytest.mark.parametrize("sort", list(TaskSort))
async def test_every_sort_order_walks_every_task_once_in_order(client, many, sort):
    account, rows = many
    seen = await walk(client, account, {"sort": sort.value}, limit=37)
    assert seen == expected_order(rows, sort)


@pytest.mark.parametrize("sort", [TaskSort.due_date_desc, TaskSort.priority, TaskSort.updated_at])
async def test_walks_with_filters(client, many, sort):
    account, rows = many
    matching = [r for r in rows if "even" in r["tags"] and r["status"] != "done"]
    params = {"sort": sort.value, "tag": "even", "status": ["todo", "in_progress"]}
    assert await walk(client, account, params, limit=9) == expected_order(matching, sort)


@pytest.mark.parametrize("sort", [TaskSort.created_at_desc, TaskSort.due_date])
async def test_walk_while_tasks_are_inserted(client, many, sort):
    account, rows = many
    inserted: list[uuid.UUID] = []

    async def insert_meanwhile() -> None:
        for i in range(15):
            task = await create_task(
                client, account, title=f"New {i}", due_date=(BASE + timedelta(hours=i)).isoformat()
            )
            inserted.append(uuid.UUID(task["id"]))
            await asyncio.sleep(0)

    seen, _ = await asyncio.gather(walk(client, account, {"sort": sort.value}, limit=25), insert_meanwhile())
    assert len(seen) == len(set(seen)), "a task was returned twice"
    assert {row["id"] for row in rows} <= set(seen), "a task that existed before the walk was skipped"
    assert set(seen) <= {row["id"] for row in rows} | set(inserted)


async def test_changing_the_page_size_mid_walk_is_allowed(client, many):
    account, rows = many
    first = (await client.get(TASKS, params={"limit": 10}, headers=account.headers)).json()
    second = await client.get(TASKS, params={"limit": 50, "cursor": first["next_cursor"]}, headers=account.headers)
    ids = [uuid.UUID(t["id"]) for t in first["items"] + second.json()["items"]]
    assert ids == expected_order(rows, TaskSort.created_at_desc)[:60]


async def test_cursors_are_bound_to_their_query_and_signed(client, db):
    account = await make_account(db)
    other = await make_account(db)
    for i in range(5):
        await insert_task(db, account.id, f"Task {i}", tags=["a"])
    cursor = (await client.get(TASKS, params={"limit": 2, "tag": "a"}, headers=account.headers)).json()["next_cursor"]
    body, signature = cursor.split(".")
    tampered_body = ("B" if body[0] != "B" else "C") + body[1:]
    tampered_signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    bad = {
        "payload edited": ({"tag": "a", "cursor": f"{tampered_body}.{signature}"}, account),
        "signature edited": ({"tag": "a", "cursor": f"{body}.{tampered_signature}"}, account),
        "other sort": ({"tag": "a", "sort": "created_at", "cursor": cursor}, account),
        "other filters": ({"tag": "b", "cursor": cursor}, account),
        "filters dropped": ({"cursor": cursor}, account),
        "other user": ({"tag": "a", "cursor": cursor}, other),
        "not base64": ({"tag": "a", "cursor": "!!!.???"}, account),
        "no signature": ({"tag": "a", "cursor": body}, account),
    }
    for name, (params, who) in bad.items():
        response = await client.get(TASKS, params={**params, "limit": 2}, headers=who.headers)
        assert error_fields(response) == {"cursor"}, name
        assert "cursor" in response.json()["detail"][0]["msg"], name
    good = await client.get(TASKS, params={"tag": "A ", "limit": 2, "cursor": cursor}, headers=account.headers)
    assert good.status_code == 200 and len(good.json()["items"]) == 2
