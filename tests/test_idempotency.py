"""Idempotency-Key on POST /tasks and PATCH /tasks/{id}: replay, mismatch, malformed keys, per-user and
per-operation scope, expiry and purge, and concurrent duplicates, against the real database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.api.problems import IDEMPOTENCY_KEY_HELP, KEY_REUSED
from app.config import settings
from app.purge_handler import purge
from tests.support.api import create_task, make_account

TASKS = "/api/v1/tasks"
KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'


def keyed(account, key: str = KEY, **more: str) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key, **more}


async def count_tasks(db, account) -> int:
    return await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", account.id)


def answer(response) -> tuple:
    """What a replay must repeat: status, body, Location and ETag."""
    return response.status_code, response.json(), response.headers.get("location"), response.headers.get("etag")


async def test_a_retried_create_is_answered_as_the_first_and_writes_once(client, db):
    account = await make_account(db)
    body = {"title": "Pay rent", "tags": ["home"], "priority": "high"}
    first = await client.post(TASKS, json=body, headers=keyed(account))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await client.post(TASKS, json=body, headers=keyed(account))
    assert answer(again) == answer(first)
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_tasks(db, account) == 1
    stored = await db.fetchrow(
        "SELECT operation, key, status_code FROM idempotency_keys WHERE user_id = $1", account.id
    )
    assert tuple(stored) == ("tasks_create", KEY.strip('"'), 201)


async def test_a_request_without_a_key_is_not_recorded(client, db):
    account = await make_account(db)
    for _ in range(2):
        assert (await client.post(TASKS, json={"title": "Twice"}, headers=account.headers)).status_code == 201
    assert await count_tasks(db, account) == 2
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_the_replay_is_the_first_answer_even_after_the_task_changed(client, db):
    account = await make_account(db)
    first = await client.post(TASKS, json={"title": "Draft"}, headers=keyed(account))
    task_url = first.headers["location"]
    assert (await client.patch(task_url, json={"title": "Final"}, headers=account.headers)).status_code == 200
    again = await client.post(TASKS, json={"title": "Draft"}, headers=keyed(account))
    assert answer(again) == answer(first)  # the stored response, not the task as it is now
    assert again.json()["title"] == "Draft" and again.headers["etag"] == '"1"'


async def test_an_unquoted_key_is_the_same_key_as_its_quoted_form(client, db):
    account = await make_account(db)
    first = await client.post(TASKS, json={"title": "Stripe style"}, headers=keyed(account, "order-1234"))
    again = await client.post(TASKS, json={"title": "Stripe style"}, headers=keyed(account, '"order-1234"'))
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    escaped = await client.post(TASKS, json={"title": "Quoted"}, headers=keyed(account, r'"say \"hi\" \\ bye"'))
    assert escaped.status_code == 201
    assert await db.fetchval("SELECT key FROM idempotency_keys WHERE key LIKE 'say%'") == r'say "hi" \ bye'


async def test_the_same_request_in_another_json_form_replays(client, db):
    account = await make_account(db)
    headers = {**keyed(account), "Content-Type": "application/json"}
    first = await client.post(TASKS, content=b'{"title": "Form", "tags": ["a"]}', headers=headers)
    again = await client.post(TASKS, content=b'{ "tags":["a"],"title":"Form" }', headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()


async def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(client, db):
    account = await make_account(db)
    assert (await client.post(TASKS, json={"title": "One"}, headers=keyed(account))).status_code == 201
    other = await client.post(TASKS, json={"title": "Another"}, headers=keyed(account))
    assert other.status_code == 422
    assert other.json() == {"detail": KEY_REUSED}
    assert await count_tasks(db, account) == 1


@pytest.mark.parametrize(
    "value",
    [
        '""',  # empty
        '"' + "k" * 256 + '"',  # too long
        "k" * 256,
        '"unterminated',
        '"a"b"',
        '"tab\there"',  # a control character
        "two words",
        '"caf\\u00e9"',  # a backslash escape sf-string does not have
        '"x";param=1',
    ],
)
async def test_a_malformed_key_is_a_400_that_says_what_a_key_looks_like(client, db, value):
    account = await make_account(db)
    response = await client.post(TASKS, json={"title": "No"}, headers=keyed(account, value))
    assert response.status_code == 400, (value, response.text)
    assert response.json() == {"detail": IDEMPOTENCY_KEY_HELP}
    assert await count_tasks(db, account) == 0


async def test_a_non_ascii_key_and_two_keys_are_400s(client, db):
    account = await make_account(db)
    non_ascii = [*account.headers.items(), ("Idempotency-Key", '"café"'.encode())]
    two = [*account.headers.items(), ("Idempotency-Key", '"a"'), ("Idempotency-Key", '"b"')]
    for headers in (non_ascii, two):
        response = await client.post(TASKS, json={"title": "No"}, headers=headers)
        assert response.status_code == 400 and response.json() == {"detail": IDEMPOTENCY_KEY_HELP}
    assert await count_tasks(db, account) == 0


async def test_a_key_is_scoped_to_its_user(client, db):
    alice, bob = await make_account(db), await make_account(db)
    hers = await client.post(TASKS, json={"title": "Same"}, headers=keyed(alice))
    his = await client.post(TASKS, json={"title": "Same"}, headers=keyed(bob))
    assert his.status_code == 201 and "idempotent-replayed" not in his.headers
    assert his.json()["id"] != hers.json()["id"]
    assert (await count_tasks(db, alice), await count_tasks(db, bob)) == (1, 1)
    # Bob's replay is his own task, and Alice's task stays invisible to him.
    again = await client.post(TASKS, json={"title": "Same"}, headers=keyed(bob))
    assert again.json()["id"] == his.json()["id"]
    assert (await client.get(hers.headers["location"], headers=bob.headers)).status_code == 404


async def test_a_key_is_scoped_to_its_operation(client, db):
    account = await make_account(db)
    created = await client.post(TASKS, json={"title": "Keyed"}, headers=keyed(account))
    patched = await client.patch(created.headers["location"], json={"title": "Renamed"}, headers=keyed(account))
    assert patched.status_code == 200 and "idempotent-replayed" not in patched.headers
    assert patched.json()["title"] == "Renamed"


async def test_a_replayed_patch_is_never_a_412_because_the_task_moved_on(client, db):
    account = await make_account(db)
    task = await create_task(client, account, title="v1")
    url = f"{TASKS}/{task['id']}"
    first = await client.patch(url, json={"status": "done"}, headers=keyed(account, **{"If-Match": '"1"'}))
    assert first.status_code == 200 and first.headers["etag"] == '"2"'
    assert (await client.patch(url, json={"title": "v3"}, headers=account.headers)).headers["etag"] == '"3"'
    again = await client.patch(url, json={"status": "done"}, headers=keyed(account, **{"If-Match": '"1"'}))
    assert answer(again) == answer(first) and again.headers["idempotent-replayed"] == "true"
    current = await db.fetchrow("SELECT version, title FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert tuple(current) == (3, "v3")  # the replay wrote nothing


async def test_a_patch_key_reused_on_another_task_or_if_match_is_a_422(client, db):
    account = await make_account(db)
    one, two = await create_task(client, account), await create_task(client, account)
    ok = await client.patch(f"{TASKS}/{one['id']}", json={"title": "x"}, headers=keyed(account))
    assert ok.status_code == 200
    other_task = await client.patch(f"{TASKS}/{two['id']}", json={"title": "x"}, headers=keyed(account))
    other_match = await client.patch(
        f"{TASKS}/{one['id']}", json={"title": "x"}, headers=keyed(account, **{"If-Match": '"2"'})
    )
    for response in (other_task, other_match):
        assert response.status_code == 422 and response.json() == {"detail": KEY_REUSED}
    assert await db.fetchval("SELECT version FROM tasks WHERE id = $1", uuid.UUID(two["id"])) == 1


async def test_a_failed_write_records_no_key(client, db):
    """A 404 or 412 wrote nothing, so the key stays free: the retry is answered by what the task is then."""
    account = await make_account(db)
    task = await create_task(client, account)
    url = f"{TASKS}/{task['id']}"
    stale = await client.patch(url, json={"title": "x"}, headers=keyed(account, **{"If-Match": '"7"'}))
    missing = await client.patch(f"{TASKS}/{uuid.uuid4()}", json={"title": "x"}, headers=keyed(account, '"k2"'))
    assert (stale.status_code, missing.status_code) == (412, 404)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_an_expired_key_counts_as_new(client, db, monkeypatch):
    monkeypatch.setattr(settings, "IDEMPOTENCY_KEY_TTL_HOURS", 2)
    account = await make_account(db)
    first = await client.post(TASKS, json={"title": "Daily"}, headers=keyed(account))
    await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '1 hour 59 minutes'")
    assert (await client.post(TASKS, json={"title": "Daily"}, headers=keyed(account))).json() == first.json()
    await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '2 hours 1 minute'")
    # Expired: a new write, even with another body, and the key now records the new one.
    fresh = await client.post(TASKS, json={"title": "Daily, later"}, headers=keyed(account))
    assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    assert await count_tasks(db, account) == 2
    replay = await client.post(TASKS, json={"title": "Daily, later"}, headers=keyed(account))
    assert replay.json()["id"] == fresh.json()["id"]


async def test_the_purge_deletes_expired_keys_only(client, db):
    account = await make_account(db)
    for index in range(5):
        headers = keyed(account, f'"key-{index}"')
        assert (await client.post(TASKS, json={"title": f"t{index}"}, headers=headers)).status_code == 201
    await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key < 'key-3'")
    assert await purge() == 3
    assert [row["key"] for row in await db.fetch("SELECT key FROM idempotency_keys ORDER BY key")] == [
        "key-3",
        "key-4",
    ]
    assert await count_tasks(db, account) == 5  # the tasks stay


async def test_twenty_concurrent_duplicates_write_one_row(client, db):
    account = await make_account(db)
    body = {"title": "Only once"}
    responses = await asyncio.gather(*(client.post(TASKS, json=body, headers=keyed(account)) for _ in range(20)))
    assert await count_tasks(db, account) == 1
    created = [response for response in responses if response.status_code == 201]
    busy = [response for response in responses if response.status_code == 409]
    assert len(created) + len(busy) == 20, [response.text for response in responses]
    assert {response.json()["id"] for response in created} == {
        str(await db.fetchval("SELECT id FROM tasks WHERE user_id = $1", account.id))
    }
    assert sum("idempotent-replayed" not in response.headers for response in created) == 1
    assert all(response.headers["retry-after"] for response in busy)


async def test_twenty_concurrent_duplicate_patches_apply_once(client, db):
    account = await make_account(db)
    task = await create_task(client, account)
    url = f"{TASKS}/{task['id']}"
    responses = await asyncio.gather(
        *(client.patch(url, json={"title": "once"}, headers=keyed(account)) for _ in range(20))
    )
    assert {response.status_code for response in responses} <= {200, 409}
    assert await db.fetchval("SELECT version FROM tasks WHERE id = $1", uuid.UUID(task["id"])) == 2
    assert {response.headers["etag"] for response in responses if response.status_code == 200} == {'"2"'}


async def test_a_deleted_user_cannot_replay(client, db):
    account = await make_account(db)
    assert (await client.post(TASKS, json={"title": "Mine"}, headers=keyed(account))).status_code == 201
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)
    assert (await client.post(TASKS, json={"title": "Mine"}, headers=keyed(account))).status_code == 401
