"""Registration, login and access tokens."""

from __future__ import annotations

import uuid

import pytest

from app.security import create_access_token
from tests.support.api import PASSWORD, error_fields, make_account

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/token"


async def test_register_returns_a_working_token_and_stores_the_email_lower_cased(client, db):
    response = await client.post(
        REGISTER, json={"email": "Ada@Example.COM", "password": "long enough", "full_name": "  Ada  "}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    assert me.json()["full_name"] == "Ada"
    row = await db.fetchrow("SELECT email, hashed_password FROM users")
    assert row["email"] == "ada@example.com"
    assert row["hashed_password"].startswith("$argon2") and "long enough" not in row["hashed_password"]


async def test_duplicate_email_ignoring_case_is_409(client, db):
    await make_account(db, "ada@example.com")
    response = await client.post(REGISTER, json={"email": "ADA@example.com", "password": "long enough"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "long enough"}, "email"),
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "a\x00b@example.com", "password": "long enough"}, "email"),
        ({"email": "ada@example.com"}, "password"),
        ({"email": "ada@example.com", "password": "short"}, "password"),
        ({"email": "ada@example.com", "password": "x" * 129}, "password"),
        ({"email": "ada@example.com", "password": "long\x00enough"}, "password"),
        ({"email": "ada@example.com", "password": 12345678}, "password"),
        ({"email": "ada@example.com", "password": "long enough", "full_name": "x" * 201}, "full_name"),
        ({"email": "ada@example.com", "password": "long enough", "full_name": "A\x00da"}, "full_name"),
        ({"email": "ada@example.com", "password": "long enough", "is_admin": True}, "is_admin"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(client, db, body, field):
    response = await client.post(REGISTER, json=body)
    assert error_fields(response) == {field}
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_login_with_the_oauth2_form(client, db):
    account = await make_account(db, "ada@example.com")
    response = await client.post(LOGIN, data={"username": "ADA@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["id"] == str(account.id)


async def test_unknown_email_and_wrong_password_get_the_same_401(client, db):
    await make_account(db, "ada@example.com")
    wrong_password = await client.post(LOGIN, data={"username": "ada@example.com", "password": "not the one"})
    unknown_email = await client.post(LOGIN, data={"username": "bob@example.com", "password": PASSWORD})
    for response in (wrong_password, unknown_email):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert wrong_password.json() == unknown_email.json() == {"detail": "Incorrect email or password."}


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"username": "ada@example.com"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": "ada\x00@example.com", "password": PASSWORD}, "username"),
        ({"username": "ada@example.com", "password": "pass\x00word"}, "password"),
        (
            {"username": "ada@example.com", "password": PASSWORD, "grant_type": "client_credentials"},
            "grant_type",
        ),
    ],
)
async def test_login_rejects_a_malformed_form_naming_the_field(client, db, form, field):
    assert error_fields(await client.post(LOGIN, data=form)) == {field}


# Forged, stale and malformed tokens, and wrong header forms, on every route: tests/test_auth_attacks.py.


async def test_a_bad_token_is_rejected_before_any_database_connection(client, monkeypatch):
    """The token dependency runs first: with the database unreachable, a bad token still gets 401, not 503."""
    from app import db as app_db
    from app.config import normalize_database_url

    unreachable = normalize_database_url("postgresql://nobody:nothing@127.0.0.1:9/none")
    impatient = app_db.settings.model_copy(update={"DB_CONNECT_TIMEOUT": 0.5})
    monkeypatch.setattr(app_db, "engine", app_db.create_engine(unreachable, impatient))
    response = await client.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    with_valid_token = await client.get(
        "/api/v1/tasks", headers={"Authorization": f"Bearer {create_access_token(uuid.uuid4())}"}
    )
    assert with_valid_token.status_code == 503  # proves the patched engine is the one requests use


async def test_validation_errors_never_echo_passwords(client, db):
    secret = "shortpw"
    responses = [
        await client.post(REGISTER, json={"email": "ada@example.com", "password": "sh\x00rt" + secret}),
        await client.post(REGISTER, json={"email": "ada@example.com", "password": secret}),
        await client.post(REGISTER, json=[{"email": "ada@example.com", "password": secret}]),
        await client.post(LOGIN, data={"username": "ada@example.com", "password": secret + "\x00"}),
    ]
    account = await make_account(db)
    responses.append(
        await client.patch(
            "/api/v1/users/me", json={"password": secret, "current_password": secret}, headers=account.headers
        )
    )
    for response in responses:
        assert response.status_code == 422
        assert secret not in response.text
        assert "[redacted]" in response.text
