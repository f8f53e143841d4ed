"""The Task API's core flow through app.handler.handler, carried by real AWS payloads of every format:
register (JSON, also base64), token login (OAuth2 form, also base64), create tasks, list them with query
strings, users/me behind a stage prefix; no connection left open; a cold 503 when the database is gone.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.aws_lambda.support import (
    adapt,
    form,
    keeps_repeated_query_keys,
    open_app_connections,
    response_header,
    response_json,
)

V2 = "powertools__apiGatewayProxyV2Event.json"  # HTTP API 2.0 with cookies, authorizer, mTLS
REST = "awslambdago__apigw-request.json"  # REST API, stage testStage, multi-value everything
HTTP_V1 = "powertools__apiGatewayProxyEvent.json"  # HTTP API payload 1.0
URL_B64 = "awslambdago-lambdaurl__function-url-domain-only-request-with-base64-encoded-body.json"
V2_B64 = "awsdocs__event-v2.json"  # isBase64Encoded with no body, stage `default`
ALB_MULTI = "powertools__albMultiValueQueryStringEvent.json"
ALB_SINGLE = "awslambdago__alb-lambda-target-request-headers-only.json"
FORM = {"content-type": "application/x-www-form-urlencoded"}
PASSWORD = "correct horse battery staple"


def email() -> str:
    return f"lambda-{uuid.uuid4().hex[:10]}@example.com"


async def register(invoke, name: str = V2, *, base64_body: bool = False, address: str | None = None) -> str:
    body = json.dumps({"email": address or email(), "password": PASSWORD, "full_name": "Ada Lovelace"})
    response = await invoke(
        adapt(name, "POST", "/api/v1/auth/register", body=body, base64_body=base64_body, keep_stage=False)
    )
    assert response["statusCode"] == 201, response
    token = response_json(response)
    assert token["token_type"] == "bearer"
    return token["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("name", [V2, REST, HTTP_V1, ALB_MULTI, ALB_SINGLE])
async def test_register_with_a_json_body(invoke, db, name):
    token = await register(invoke, name)
    response = await invoke(adapt(name, "GET", "/api/v1/users/me", headers=bearer(token), keep_stage=False))
    assert response["statusCode"] == 200, response
    assert response_json(response)["full_name"] == "Ada Lovelace"
    assert await open_app_connections(db) == 0


@pytest.mark.parametrize("name", [V2_B64, URL_B64, V2])
async def test_register_with_a_base64_encoded_body(invoke, name):
    await register(invoke, name, base64_body=True)


@pytest.mark.parametrize(
    ("name", "base64_body"),
    [(REST, False), (V2, False), (URL_B64, True), (ALB_MULTI, True), (HTTP_V1, True)],
)
async def test_token_login_with_the_oauth2_form(invoke, db, name, base64_body):
    address = email()
    await register(invoke, address=address)
    body = form(username=address.upper(), password=PASSWORD, grant_type="password")
    login = adapt(name, "POST", "/api/v1/auth/token", body=body, headers=FORM, base64_body=base64_body)
    response = await invoke(login)
    assert response["statusCode"] == 200, response
    assert response_json(response)["token_type"] == "bearer"

    wrong = adapt(name, "POST", "/api/v1/auth/token", body=form(username=address, password="nope-nope"), headers=FORM)
    response = await invoke(wrong)
    assert response["statusCode"] == 401
    assert response_header(response, "www-authenticate") == "Bearer"
    assert await open_app_connections(db) == 0


@pytest.fixture
async def seeded(invoke):
    """A user with four tasks, created through the handler; returns the token."""
    token = await register(invoke)
    for task in (
        {"title": "Buy milk & eggs", "tags": ["home", "errand"], "priority": "high"},
        {"title": "File taxes", "tags": ["home", "paperwork"], "priority": "urgent", "status": "in_progress"},
        {"title": "Renew passport", "tags": ["travel", "errand"], "priority": "low"},
        {"title": "Write report", "tags": ["work"], "priority": "medium", "status": "done"},
    ):
        response = await invoke(adapt(V2, "POST", "/api/v1/tasks", body=json.dumps(task), headers=bearer(token)))
        assert response["statusCode"] == 201, response
        created = response_json(response)
        assert response_header(response, "location") == f"/api/v1/tasks/{created['id']}"
        assert created["tags"] == task["tags"]
    return token


LISTS = [
    V2,
    REST,
    HTTP_V1,
    ALB_MULTI,
    ALB_SINGLE,
    "dotnet__rawtarget-escaped-reserved-in-query-httpapi-v2.json",
]


@pytest.mark.parametrize("name", LISTS)
async def test_list_tasks_with_query_strings(invoke, seeded, name):
    async def titles(**query) -> list[str]:
        event = adapt(name, "GET", "/api/v1/tasks", query=query, headers=bearer(seeded), keep_stage=False)
        response = await invoke(event)
        assert response["statusCode"] == 200, response
        return [task["title"] for task in response_json(response)["items"]]

    assert await titles(sort="priority") == [
        "Renew passport",
        "Write report",
        "Buy milk & eggs",
        "File taxes",
    ]
    assert await titles(tag="errand", sort="-priority") == ["Buy milk & eggs", "Renew passport"]
    assert await titles(q="milk & eggs") == ["Buy milk & eggs"]
    assert await titles(status="in_progress") == ["File taxes"]
    if keeps_repeated_query_keys(name):
        assert await titles(any_tag=["travel", "work"], sort="priority") == [
            "Renew passport",
            "Write report",
        ]
        assert await titles(status=["todo", "done"], tag="home") == ["Buy milk & eggs"]


async def test_cursor_pagination_through_the_handler(invoke, seeded):
    seen, cursor = [], None
    for _ in range(4):
        query = {"limit": "3", "sort": "priority", **({"cursor": cursor} if cursor else {})}
        response = await invoke(adapt(REST, "GET", "/api/v1/tasks", query=query, headers=bearer(seeded)))
        assert response["statusCode"] == 200, response
        page = response_json(response)
        seen += [task["title"] for task in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["Renew passport", "Write report", "Buy milk & eggs", "File taxes"]


async def test_without_a_token_the_answer_is_401(invoke):
    response = await invoke(adapt(V2, "GET", "/api/v1/tasks"))
    assert response["statusCode"] == 401


@pytest.mark.parametrize("name", ["dotnet__values-get-all-httpapi-v2-with-stage.json", V2_B64])
async def test_users_me_behind_a_stage_prefix(invoke, handler_for_base_path, name):  # noqa: F811
    token = await register(invoke)
    event = adapt(name, "GET", "/api/v1/users/me", headers=bearer(token))
    prefix = event["rawPath"].removesuffix("/api/v1/users/me")
    assert prefix in {"/beta", "/default"}
    response = await invoke(event, handler_for_base_path(prefix))
    assert response["statusCode"] == 200, response
    assert response_json(response)["email"].startswith("lambda-")
