"""Responses built from query rows (app/api/documents.py) are exactly what the response models would send.

The routes send rows as JSON without validating them into their response model first; these tests parse each
body with the model the route declares and check that the model's own serializer (what FastAPI sends for a
returned model) gives back the same bytes, for values that exercise every field's format.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, TypeAdapter

from app.models.task import TagCount, TaskPage, TaskRead
from app.models.user import UserRead
from tests.support.api import create_task, insert_task, make_account


def assert_as_model_sends(body: bytes, model: type[BaseModel] | TypeAdapter) -> None:
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    assert adapter.dump_json(adapter.validate_json(body)) == body


async def test_task_documents_are_what_the_models_send(client, db):
    account = await make_account(db)
    # Whole seconds (no fraction in the JSON), a fraction, an offset other than UTC, no due date at all.
    await insert_task(db, account.id, "whole", created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    await create_task(
        client,
        account,
        title='Quotes " and \\ and emoji \U0001f600 and é',
        description="line\nbreak",
        due_date="2026-12-01T18:00:00.123456+01:00",
        tags=["Errand", "home"],
        status="done",
        priority="urgent",
    )
    listed = await client.get("/api/v1/tasks", headers=account.headers, params={"limit": 1})
    assert listed.status_code == 200
    assert listed.json()["next_cursor"] is not None
    assert_as_model_sends(listed.content, TaskPage)
    full = await client.get("/api/v1/tasks", headers=account.headers)
    assert len(full.json()["items"]) == 2
    assert_as_model_sends(full.content, TaskPage)
    for item in full.json()["items"]:
        one = await client.get(f"/api/v1/tasks/{item['id']}", headers=account.headers)
        assert one.headers["content-type"] == "application/json"
        assert one.headers["etag"] == f'"{item["version"]}"'
        assert_as_model_sends(one.content, TaskRead)
    changed = await client.patch(
        f"/api/v1/tasks/{item['id']}", headers=account.headers, json={"due_date": None, "tags": []}
    )
    assert changed.status_code == 200
    assert_as_model_sends(changed.content, TaskRead)


async def test_user_and_tag_documents_are_what_the_models_send(client, db):
    account = await make_account(db)
    await create_task(client, account, tags=["b", "a"])
    await create_task(client, account, tags=["b"])
    me = await client.get("/api/v1/users/me", headers=account.headers)
    assert_as_model_sends(me.content, UserRead)
    named = await client.patch("/api/v1/users/me", headers=account.headers, json={"full_name": "Ada \U0001f600"})
    assert named.json()["full_name"] == "Ada \U0001f600"
    assert_as_model_sends(named.content, UserRead)
    tags = await client.get("/api/v1/tags", headers=account.headers)
    assert tags.json() == [{"tag": "b", "count": 2}, {"tag": "a", "count": 1}]
    assert_as_model_sends(tags.content, TypeAdapter(list[TagCount]))
