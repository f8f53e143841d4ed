"""Single tasks: create, read, update, delete; validation, ETags, If-Match, isolation. Races: test_concurrency.py."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.support.api import create_task, error_fields, make_account

TASKS = "/api/v1/tasks"


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


async def test_create_normalises_and_answers_201_with_location_and_etag(client, db):
    account = await make_account(db)
    response = await client.post(
        TASKS,
        json={
            "title": "  Renew the passport ",
            "description": "Photos first",
            "priority": "high",
            "due_date": "2026-12-01T18:00:00+01:00",
            "tags": [" Travel", "errand", "TRAVEL", "errand ", "home"],
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert response.headers["ETag"] == '"1"'
    assert task["title"] == "Renew the passport"
    assert task["tags"] == ["travel", "errand", "home"]
    assert parse(task["due_date"]) == parse("2026-12-01T17:00:00Z")
    assert (task["status"], task["priority"], task["version"], task["completed_at"]) == (
        "todo",
        "high",
        1,
        None,
    )
    assert set(task) == {
        "id",
        "title",
        "description",
        "status",
        "priority",
        "due_date",
        "tags",
        "completed_at",
        "created_at",
        "updated_at",
        "version",
    }
    stored = await db.fetchrow("SELECT user_id, tags FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert stored["user_id"] == account.id and stored["tags"] == ["travel", "errand", "home"]
    fetched = await client.get(response.headers["Location"], headers=account.headers)
    assert fetched.json() == task


async def test_defaults_and_done_at_creation(client, db):
    account = await make_account(db)
    plain = await create_task(client, account)
    assert (plain["status"], plain["priority"], plain["tags"], plain["due_date"]) == (
        "todo",
        "medium",
        [],
        None,
    )
    done = await create_task(client, account, status="done")
    assert done["completed_at"] is not None


LONG_TAGS = [f"tag{i}" for i in range(21)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"title": None}, "title"),
        ({"title": 5}, "title"),
        ({"title": "ok", "description": "x" * 10_001}, "description"),
        ({"title": "ok", "description": "a\x00b"}, "description"),
        ({"title": "ok", "status": "blocked"}, "status"),
        ({"title": "ok", "priority": "critical"}, "priority"),
        ({"title": "ok", "due_date": "tomorrow"}, "due_date"),
        ({"title": "ok", "due_date": "2026-12-01T17:00:00"}, "due_date"),
        ({"title": "ok", "due_date": "0001-01-01T00:00:00+05:00"}, "due_date"),
        ({"title": "ok", "tags": "errand"}, "tags"),
        ({"title": "ok", "tags": LONG_TAGS}, "tags"),
        ({"title": "ok", "tags": ["x" * 51]}, "tags"),
        ({"title": "ok", "tags": ["   "]}, "tags"),
        ({"title": "ok", "tags": ["a\x00"]}, "tags"),
        ({"title": "ok", "tags": [1]}, "tags"),
        ({"title": "ok", "version": 7}, "version"),
        ({"title": "ok", "user_id": str(uuid.uuid4())}, "user_id"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(client, db, body, field):
    account = await make_account(db)
    response = await client.post(TASKS, json=body, headers=account.headers)
    assert error_fields(response) == {field}
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_naive_due_date_asks_for_an_offset(client, db):
    account = await make_account(db)
    response = await client.post(TASKS, json={"title": "x", "due_date": "2026-12-01T17:00:00"}, headers=account.headers)
    assert response.status_code == 422
    assert "timezone offset" in response.json()["detail"][0]["msg"]


async def test_tags_up_to_twenty_after_deduplication(client, db):
    account = await make_account(db)
    tags = [f"t{i}" for i in range(20)] + ["T0", " t1 "]
    assert (await create_task(client, account, tags=tags))["tags"] == [f"t{i}" for i in range(20)]


async def test_get_one_with_etag_and_errors(client, db):
    account = await make_account(db)
    task = await create_task(client, account)
    response = await client.get(f"{TASKS}/{task['id']}", headers=account.headers)
    assert response.status_code == 200 and response.headers["ETag"] == '"1"'
    assert (await client.get(f"{TASKS}/{uuid.uuid4()}", headers=account.headers)).status_code == 404
    assert error_fields(await client.get(f"{TASKS}/not-a-uuid", headers=account.headers)) == {"task_id"}


async def test_another_users_task_is_indistinguishable_from_a_missing_one(client, db):
    owner = await make_account(db)
    intruder = await make_account(db)
    task = await create_task(client, owner, title="Private")
    path = f"{TASKS}/{task['id']}"
    missing = f"{TASKS}/{uuid.uuid4()}"
    for method, body in [("GET", None), ("PATCH", {"title": "Mine now"}), ("DELETE", None)]:
        theirs = await client.request(method, path, json=body, headers=intruder.headers)
        nothing = await client.request(method, missing, json=body, headers=intruder.headers)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json() == nothing.json()
    with_if_match = await client.patch(path, json={"title": "x"}, headers={**intruder.headers, "If-Match": '"9"'})
    assert with_if_match.status_code == 404
    listed = await client.get(TASKS, headers=intruder.headers)
    assert listed.json()["items"] == []
    assert (await client.get(path, headers=owner.headers)).json() == task


async def test_patch_is_partial_and_null_clears_nullable_fields(client, db):
    account = await make_account(db)
    task = await create_task(
        client,
        account,
        title="T",
        description="D",
        due_date="2026-12-01T17:00:00Z",
        tags=["a"],
        priority="low",
    )
    path = f"{TASKS}/{task['id']}"
    response = await client.patch(path, json={"priority": "urgent"}, headers=account.headers)
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'
    updated = response.json()
    assert updated["priority"] == "urgent" and updated["version"] == 2
    assert {k: updated[k] for k in ("title", "description", "due_date", "tags")} == {
        k: task[k] for k in ("title", "description", "due_date", "tags")
    }
    assert parse(updated["updated_at"]) > parse(task["updated_at"])
    cleared = (await client.patch(path, json={"description": None, "due_date": None}, headers=account.headers)).json()
    assert (cleared["description"], cleared["due_date"], cleared["version"]) == (None, None, 3)
    retagged = await client.patch(path, json={"tags": ["B", "b", " c"], "title": " New "}, headers=account.headers)
    assert (retagged.json()["tags"], retagged.json()["title"], retagged.json()["version"]) == (
        ["b", "c"],
        "New",
        4,
    )
    assert await db.fetchval("SELECT tags FROM tasks") == ["b", "c"]


async def test_empty_patch_changes_nothing(client, db):
    account = await make_account(db)
    task = await create_task(client, account)
    response = await client.patch(f"{TASKS}/{task['id']}", json={}, headers=account.headers)
    assert response.status_code == 200 and response.json() == task
    stale = await client.patch(f"{TASKS}/{task['id']}", json={}, headers={**account.headers, "If-Match": '"5"'})
    assert stale.status_code == 412


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"status": None}, "status"),
        ({"priority": None}, "priority"),
        ({"tags": None}, "tags"),
        ({"title": ""}, "title"),
        ({"description": "x" * 10_001}, "description"),
        ({"status": "blocked"}, "status"),
        ({"due_date": "2026-12-01 17:00"}, "due_date"),
        ({"tags": ["ok", "\x00"]}, "tags"),
        ({"completed_at": "2026-12-01T17:00:00Z"}, "completed_at"),
        ({"version": 9}, "version"),
    ],
)
async def test_patch_rejects_bad_input_naming_the_field(client, db, body, field):
    account = await make_account(db)
    task = await create_task(client, account, title="Keep")
    response = await client.patch(f"{TASKS}/{task['id']}", json=body, headers=account.headers)
    assert error_fields(response) == {field}
    assert await db.fetchval("SELECT version FROM tasks") == 1


async def test_status_transitions_set_and_clear_completed_at(client, db):
    account = await make_account(db)
    task = await create_task(client, account)
    path = f"{TASKS}/{task['id']}"
    done = (await client.patch(path, json={"status": "done"}, headers=account.headers)).json()
    assert done["completed_at"] is not None
    again = (await client.patch(path, json={"status": "done", "title": "Still done"}, headers=account.headers)).json()
    assert again["completed_at"] == done["completed_at"] and again["version"] == 3
    reopened = (await client.patch(path, json={"status": "in_progress"}, headers=account.headers)).json()
    assert reopened["completed_at"] is None and reopened["version"] == 4
    untouched = (await client.patch(path, json={"title": "Other"}, headers=account.headers)).json()
    assert untouched["status"] == "in_progress" and untouched["completed_at"] is None


async def test_if_match_on_patch(client, db):
    account = await make_account(db)
    task = await create_task(client, account, title="Original")
    path = f"{TASKS}/{task['id']}"
    ok = await client.patch(path, json={"title": "First"}, headers={**account.headers, "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    stale = await client.patch(path, json={"title": "Second"}, headers={**account.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"2"' and "current version is 2" in stale.json()["detail"]
    assert await db.fetchrow("SELECT title, version FROM tasks") == ("First", 2)
    listed = await client.patch(path, json={"title": "Third"}, headers={**account.headers, "If-Match": '"7", "2"'})
    assert listed.status_code == 200
    anything = await client.patch(path, json={"title": "Fourth"}, headers={**account.headers, "If-Match": "*"})
    assert anything.status_code == 200 and anything.json()["version"] == 4


@pytest.mark.parametrize("header", ["1", 'W/"1"', '"one"', '"1', "", '"99999999999"'])
async def test_malformed_if_match_is_400(client, db, header):
    account = await make_account(db)
    task = await create_task(client, account)
    for method, body in [("PATCH", {"title": "x"}), ("DELETE", None)]:
        response = await client.request(
            method, f"{TASKS}/{task['id']}", json=body, headers={**account.headers, "If-Match": header}
        )
        assert response.status_code == 400, (method, header)
        assert "If-Match" in response.json()["detail"]
    assert await db.fetchval("SELECT version FROM tasks") == 1


async def test_delete_with_and_without_if_match(client, db):
    account = await make_account(db)
    first = await create_task(client, account)
    second = await create_task(client, account)
    stale = await client.delete(f"{TASKS}/{first['id']}", headers={**account.headers, "If-Match": '"2"'})
    assert stale.status_code == 412
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2
    matching = await client.delete(f"{TASKS}/{first['id']}", headers={**account.headers, "If-Match": '"1"'})
    assert matching.status_code == 204 and matching.content == b""
    plain = await client.delete(f"{TASKS}/{second['id']}", headers=account.headers)
    assert plain.status_code == 204
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    again = await client.delete(f"{TASKS}/{second['id']}", headers=account.headers)
    assert again.status_code == 404
    assert error_fields(await client.delete(f"{TASKS}/42", headers=account.headers)) == {"task_id"}


async def test_tags_with_counts_most_used_first_and_only_mine(client, db):
    account = await make_account(db)
    other = await make_account(db)
    assert (await client.get("/api/v1/tags", headers=account.headers)).json() == []
    await create_task(client, account, tags=["home", "errand"])
    await create_task(client, account, tags=["errand", "work"])
    await create_task(client, account, tags=["errand", "home"])
    await create_task(client, account)
    await create_task(client, other, tags=["secret", "errand"])
    response = await client.get("/api/v1/tags", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == [
        {"tag": "errand", "count": 3},
        {"tag": "home", "count": 2},
        {"tag": "work", "count": 1},
    ]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (rb'{"title": "x\ud800y"}', "title"),
        (rb'{"title": "ok", "description": "\udfff"}', "description"),
        (rb'{"title": "ok", "tags": ["ok", "\ud800"]}', "tags"),
    ],
)
async def test_lone_surrogates_are_422_not_500(client, db, raw, field):
    """`\\ud800` is valid JSON but cannot be encoded as UTF-8: it must never reach the driver."""
    account = await make_account(db)
    headers = {**account.headers, "Content-Type": "application/json"}
    assert error_fields(await client.post(TASKS, content=raw, headers=headers)) == {field}
    task = await create_task(client, account, title="Keep")
    assert error_fields(await client.patch(f"{TASKS}/{task['id']}", content=raw, headers=headers)) == {field}


async def test_emoji_and_other_astral_characters_are_fine(client, db):
    account = await make_account(db)
    task = await create_task(client, account, title="Ship it \U0001f680", tags=["\U0001f3e0 home"])
    assert (task["title"], task["tags"]) == ("Ship it \U0001f680", ["\U0001f3e0 home"])
