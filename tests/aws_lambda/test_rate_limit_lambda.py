"""The login rate limit through app.handler.handler with real API Gateway payloads: the client is the
connection's sourceIp (Mangum's scope["client"]), not anything the client writes in a header."""

from __future__ import annotations

import copy

import pytest

from tests.aws_lambda.support import adapt, form, load_event, response_header, response_json

HTTP_API = "powertools-ts-apigw-http__iam-auth.json"  # payload 2.0, sourceIp 15.248.3.126
REST = "awslambdago__apigw-request.json"  # REST API, identity.sourceIp 192.168.196.186
LIMIT = 2
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
async def limited(db, monkeypatch):
    import app.api.routes.auth as auth_routes
    from app.api.rate_limit import RecentlyLimited
    from app.config import settings

    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_ATTEMPTS", LIMIT)
    monkeypatch.setattr(settings, "AUTH_RATE_LIMIT_WINDOW_SECONDS", 60)
    monkeypatch.setattr(auth_routes, "recently_limited", RecentlyLimited())
    await db.execute("DELETE FROM auth_attempts")
    yield
    await db.execute("DELETE FROM auth_attempts")


def from_address(name: str, source_ip: str) -> dict:
    """The real payload as API Gateway would send it for a connection from `source_ip`."""
    event = copy.deepcopy(load_event(name))
    context = event["requestContext"]
    if "http" in context:
        context["http"]["sourceIp"] = source_ip
    else:
        context["identity"]["sourceIp"] = source_ip
    return event


def login(event: dict, email: str, *, spoofed_for: str | None = None) -> dict:
    headers = {**FORM, **({"x-forwarded-for": spoofed_for} if spoofed_for else {})}
    body = form(username=email, password="wrong password")
    return adapt(event, "POST", "/api/v1/auth/token", headers=headers, body=body, keep_stage=False)


@pytest.mark.parametrize(("name", "address"), [(HTTP_API, "15.248.3.126"), (REST, "192.168.196.186")])
async def test_the_limit_follows_the_source_ip_of_the_real_payload(invoke, db, name, address):
    original = load_event(name)
    for i in range(LIMIT):
        response = await invoke(login(original, f"guess{i}@example.com"))
        assert response["statusCode"] == 401, response
    # Another X-Forwarded-For on each attempt does not make a new client: the key is the connection's address.
    limited = await invoke(login(original, "guess-more@example.com", spoofed_for="198.51.100.77"))
    assert limited["statusCode"] == 429, limited
    assert 1 <= int(response_header(limited, "Retry-After")) <= 60
    assert "retry in" in response_json(limited)["detail"]
    assert await db.fetchval("SELECT count FROM auth_attempts WHERE client_key = $1", f"ip:{address}") == LIMIT + 1

    elsewhere = await invoke(login(from_address(name, "203.0.113.99"), "guess-again@example.com"))
    assert elsewhere["statusCode"] == 401, elsewhere
    assert await db.fetchval("SELECT count FROM auth_attempts WHERE client_key = 'ip:203.0.113.99'") == 1
