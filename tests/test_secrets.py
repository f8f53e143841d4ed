"""Secrets (the database password, SECRET_KEY, password hashes) never reach a log line or a response.

The whole suite runs with a distinctive password and key (tests/conftest.py), and the autouse `leak_watch`
fails any test whose log records or responses contain them. These tests prove the watch bites, and walk the
error paths where a secret is most likely to slip out.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import app.db as db_module
from app.api.deps import ConnectionDep
from app.config import normalize_database_url, settings
from app.db import create_engine
from app.dev.embedded import free_port
from app.security import create_access_token
from tests.aws_lambda.conftest import invoke, lambda_thread  # noqa: F401 - fixtures
from tests.aws_lambda.support import adapt
from tests.conftest import APP_PASSWORD, APP_ROLE, SECRET_KEY
from tests.support.api import make_account, password_hash
from tests.support.leaks import MIN_DISTINCTIVE, LeakWatch


def test_the_session_runs_with_distinctive_credentials(leak_watch):
    """The app itself signs with the distinctive key and connects with the distinctive password, and the
    watch looks for both (with TEST_DATABASE_URL, its password as given, if it is long enough to look for)."""
    assert settings.secret_key == SECRET_KEY == leak_watch.secrets.literals["SECRET_KEY"]
    password = settings.database.url.password or ""
    if "TEST_DATABASE_URL" not in os.environ:
        assert (settings.database.url.username, password) == (APP_ROLE, APP_PASSWORD)
    if len(password) >= MIN_DISTINCTIVE:
        assert leak_watch.secrets.literals["the database password"] == password


async def test_the_watch_catches_each_secret_in_logs_and_responses(leak_watch: LeakWatch):
    logger = logging.getLogger("app.test")
    logger.debug("url %s", settings.database.url.render_as_string(hide_password=False))
    logger.info("key %s", settings.secret_key)
    try:
        raise ValueError(f"hash {password_hash()}")
    except ValueError:
        logger.warning("failed", exc_info=True)  # in the exception message only
    logger.info("token %s", create_access_token(uuid.uuid4()))

    async def leaky(scope, receive, send):  # any test's own client is watched, not only `client`'s
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-key", SECRET_KEY.encode())]})
        await send({"type": "http.response.body", "body": b"nothing here"})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=leaky), base_url="http://t") as http:
        await http.get("/leak")

    found, leak_watch.findings = leak_watch.findings, []  # seen: do not fail this test for them
    assert "SECRET_KEY in the response to GET /leak" in found
    assert "SECRET_KEY in a log record of app.test (INFO)" in found
    assert "a password hash in a log record of app.test (WARNING)" in found
    assert "an access token in a log record of app.test (INFO)" in found
    if "the database password" in leak_watch.secrets.literals:
        assert "the database password in a log record of app.test (DEBUG)" in found
    assert not any(settings.secret_key in finding for finding in found)  # findings never repeat the secret


@pytest.fixture
def app_engine(monkeypatch):
    """Point the app's engine (routes and readiness probe) at another URL."""

    def use(url: str) -> None:
        engine = create_engine(normalize_database_url(url))
        monkeypatch.setattr(db_module, "engine", engine)

    return use


async def test_a_wrong_database_password_is_a_503_that_shows_no_password(
    client, db, database_url, app_engine, leak_watch
):
    wrong = f"wrong-pw-{uuid.uuid4().hex}"
    leak_watch.secrets.literals["the wrong database password"] = wrong
    app_engine(make_url(database_url).set(password=wrong).render_as_string(hide_password=False))
    account = await make_account(db)
    tasks = await client.get("/api/v1/tasks", headers=account.headers)
    ready = await client.get("/api/v1/health/db")
    # Retrying cannot fix a refused login: both say so (app/errors.py), without naming the role or password.
    assert tasks.status_code == 503 and tasks.json()["detail"].startswith("The service cannot log in to its database")
    assert ready.status_code == 503 and ready.json()["reason"] == tasks.json()["detail"]
    assert tasks.headers["Retry-After"] == ready.headers["Retry-After"] == "30"
    for response in (tasks, ready):
        assert wrong not in response.text and APP_ROLE not in response.text
    assert leak_watch.findings == []  # and nothing in any log record (the watch would also fail the test)


async def test_health_with_the_database_down_shows_no_password(client, app_engine, leak_watch):
    dead_password = f"dead-pw-{uuid.uuid4().hex}"
    leak_watch.secrets.literals["the dead database's password"] = dead_password
    app_engine(f"postgresql://{APP_ROLE}:{dead_password}@127.0.0.1:{free_port()}/app")
    response = await client.get("/api/v1/health/db")
    assert response.status_code == 503
    assert dead_password not in response.text and "127.0.0.1" not in response.text
    assert leak_watch.findings == []


@pytest.fixture
def app_with_a_failing_statement():
    """The real app plus a route whose statement fails with the SECRET_KEY as a bound parameter: the driver's
    message ("invalid input syntax for type integer: ...") and SQLAlchemy's "[parameters: ...]" both hold it."""
    from app.main import create_app

    probe = create_app()

    @probe.get("/probe/cast")
    async def cast(connection: ConnectionDep) -> int:
        return (await connection.execute(text("SELECT CAST(:value AS int)"), {"value": settings.secret_key})).scalar()

    return probe


async def test_a_500_from_a_failed_statement_shows_neither_the_message_nor_its_parameters(
    app_with_a_failing_statement, leak_watch
):
    transport = httpx.ASGITransport(app=app_with_a_failing_statement)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/probe/cast")  # scanned by leak_watch like every httpx response
    assert response.status_code == 500
    assert settings.secret_key not in response.text
    assert leak_watch.findings == []  # the request line names the error type only; no record holds its message


async def test_the_watch_sees_lambda_responses(invoke, leak_watch):  # noqa: F811
    def leaky_handler(event, context):
        return {"statusCode": 200, "body": base64.b64encode(SECRET_KEY.encode()).decode(), "isBase64Encoded": True}

    await invoke(adapt("powertools__apiGatewayProxyV2Event.json", "GET", "/api/v1/health"), leaky_handler)
    found, leak_watch.findings = leak_watch.findings, []
    assert found == ["SECRET_KEY in the Lambda response to /api/v1/health"]
