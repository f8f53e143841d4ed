"""The current user: read, update, delete (with cascade and immediate loss of access)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.security import create_access_token
from tests.support.api import PASSWORD, create_task, error_fields, make_account

ME = "/api/v1/users/me"
LOGIN = "/api/v1/auth/token"


def issued_ago(user_id: uuid.UUID, seconds: int) -> dict[str, str]:
    """Headers with a token issued `seconds` ago (tokens carry whole seconds: this one predates a change now)."""
    token = create_access_token(user_id, now=datetime.now(UTC) - timedelta(seconds=seconds))
    return {"Authorization": f"Bearer {token}"}


async def test_read_me_never_shows_the_password_hash(client, db):
    account = await make_account(db, "ada@example.com")
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(account.id) and body["email"] == "ada@example.com"
    assert "hashed_password" not in body and "$argon2" not in response.text


async def test_update_and_clear_the_full_name(client, db):
    account = await make_account(db)
    other = await make_account(db)
    response = await client.patch(ME, json={"full_name": "  Ada King "}, headers=account.headers)
    assert response.status_code == 200 and response.json()["full_name"] == "Ada King"
    response = await client.patch(ME, json={"full_name": None}, headers=account.headers)
    assert response.status_code == 200 and response.json()["full_name"] is None
    unchanged = await client.patch(ME, json={}, headers=account.headers)
    assert unchanged.status_code == 200 and unchanged.json()["full_name"] is None
    assert await db.fetchval("SELECT full_name FROM users WHERE id = $1", other.id) is None


async def test_change_password_with_the_current_one(client, db):
    account = await make_account(db, "ada@example.com")
    response = await client.patch(
        ME, json={"password": "a brand new one", "current_password": PASSWORD}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    old = await client.post(LOGIN, data={"username": "ada@example.com", "password": PASSWORD})
    new = await client.post(LOGIN, data={"username": "ada@example.com", "password": "a brand new one"})
    assert (old.status_code, new.status_code) == (401, 200)


async def test_wrong_current_password_is_400_and_changes_nothing(client, db):
    account = await make_account(db)
    before = await db.fetchval("SELECT hashed_password FROM users")
    response = await client.patch(
        ME,
        json={"password": "a brand new one", "current_password": "not it", "full_name": "X"},
        headers=account.headers,
    )
    assert response.status_code == 400
    assert "current_password" in response.json()["detail"]
    assert await db.fetchrow("SELECT hashed_password, full_name FROM users") == (before, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "a brand new one"}, "current_password"),
        ({"password": "short", "current_password": PASSWORD}, "password"),
        ({"password": None, "current_password": PASSWORD}, "password"),
        ({"full_name": "x" * 201}, "full_name"),
        ({"full_name": "A\x00da"}, "full_name"),
        ({"full_name": "   "}, "full_name"),
        ({"email": "new@example.com"}, "email"),
    ],
)
async def test_update_rejects_bad_input_naming_the_field(client, db, body, field):
    account = await make_account(db)
    assert error_fields(await client.patch(ME, json=body, headers=account.headers)) == {field}


async def test_delete_me_cascades_and_the_token_stops_working(client, db):
    account = await make_account(db)
    other = await make_account(db)
    task = await create_task(client, account, title="Mine")
    await create_task(client, other, title="Theirs")
    response = await client.delete(ME, headers=account.headers)
    assert response.status_code == 204 and response.content == b""
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", account.id) == 0
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", other.id) == 1
    for method, path, body in [
        ("GET", ME, None),
        ("PATCH", ME, {"full_name": "x"}),
        ("DELETE", ME, None),
        ("GET", "/api/v1/tasks", None),
        ("POST", "/api/v1/tasks", {"title": "After deletion"}),
        ("GET", f"/api/v1/tasks/{task['id']}", None),
        ("PATCH", f"/api/v1/tasks/{task['id']}", {"title": "x"}),
        ("DELETE", f"/api/v1/tasks/{task['id']}", None),
        ("GET", "/api/v1/tags", None),
    ]:
        response = await client.request(method, path, json=body, headers=account.headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_a_password_change_ends_the_sessions_issued_before_it(client, db):
    """A stolen token stops working once its owner changes the password; logging in again works at once."""
    account = await make_account(db, "ada@example.com")
    earlier = issued_ago(account.id, 5)
    other_session = issued_ago(account.id, 3)
    task = await client.post("/api/v1/tasks", json={"title": "Mine"}, headers=earlier)
    assert task.status_code == 201

    changed = await client.patch(
        ME, json={"password": "a brand new one", "current_password": PASSWORD}, headers=earlier
    )
    assert changed.status_code == 200, changed.text

    for headers in (earlier, other_session):
        for method, path in (
            ("GET", ME),
            ("GET", "/api/v1/tasks"),
            ("GET", f"/api/v1/tasks/{task.json()['id']}"),
            ("GET", "/api/v1/tags"),
            ("DELETE", ME),
        ):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "password changed" in response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM users") == 1  # the stale token deleted nothing

    login = await client.post(LOGIN, data={"username": "ada@example.com", "password": "a brand new one"})
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get(ME, headers=fresh)).status_code == 200
    assert (await client.get("/api/v1/tasks", headers=fresh)).json()["items"][0]["title"] == "Mine"


async def test_a_name_change_keeps_the_sessions(client, db):
    account = await make_account(db)
    earlier = issued_ago(account.id, 5)
    assert (await client.patch(ME, json={"full_name": "Ada"}, headers=earlier)).status_code == 200
    assert (await client.get(ME, headers=earlier)).status_code == 200
    assert await db.fetchval("SELECT tokens_valid_from FROM users WHERE id = $1", account.id) is None
