"""A warm Lambda process through a database outage: every database-backed endpoint, invoked through the real
handler with real AWS payloads, answers 503 with Retry-After and a JSON detail while nothing listens on the
database's port, and the same process (same engine, same event loop) serves again once it listens.

(test_handler.py covers the cold start with the database unreachable, in a fresh process.)
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

import app.db
from app.errors import DATABASE_UNAVAILABLE
from tests.aws_lambda.support import adapt, form, response_header, response_json
from tests.support.api import make_account
from tests.support.fake_postgres import endpoint_for, url_through
from tests.support.outage import SERVING_STATUSES, app_sessions, use_engine
from tests.support.routes import EXAMPLES, PathIds, arranged_ids, url_of

CONNECT_TIMEOUT = 0.5  # the smallest DB_CONNECT_TIMEOUT allowed: invocations run one after another
HANG_GUARD = CONNECT_TIMEOUT + 1.5
V2 = "powertools__apiGatewayProxyV2Event.json"
FORMATS = [V2, "awslambdago__apigw-request.json", "powertools__albMultiValueQueryStringEvent.json"]


def endpoint_events(headers: dict[str, str], ids: PathIds) -> dict[str, dict]:
    """Every database-backed route's example request (tests/support/routes.py) as an HTTP API event."""
    email = f"lambda-{uuid.uuid4().hex[:8]}@example.com"
    events = {}
    for (method, path), example in EXAMPLES.items():
        if not example.database:
            continue
        options = example.options(email)
        body, event_headers = None, dict(headers)
        if "json" in options:
            body = json.dumps(options["json"])
        elif "data" in options:
            body = form(**options["data"])
            event_headers["content-type"] = "application/x-www-form-urlencoded"
        events[example.name] = adapt(
            V2, method, url_of(path, ids), headers=event_headers, query=options.get("params"), body=body
        )
    return events


@pytest.fixture
def switchable(database_url):
    """A port in front of the test database that can stop listening (refused) and listen again."""
    endpoint = endpoint_for(database_url)
    yield endpoint
    endpoint.stop()


async def test_a_warm_process_answers_503_during_an_outage_and_serves_again_after(
    invoke, client, db, database_url, monkeypatch, switchable
):
    account = await make_account(db)
    ids = await arranged_ids(client, account.headers)  # through the test's engine, before the Lambda's is swapped in
    engine = use_engine(monkeypatch, url_through(database_url, switchable), DB_CONNECT_TIMEOUT=CONNECT_TIMEOUT)
    events = endpoint_events(account.headers, ids)
    try:
        assert (await invoke(events["tasks-list"]))["statusCode"] == 200

        switchable.pause()
        outage = {}
        for name, event in events.items():
            started = time.monotonic()
            outage[name] = await invoke(event)
            assert time.monotonic() - started < HANG_GUARD, name
        for name in FORMATS[1:]:  # REST v1 and ALB payloads too
            outage[name] = await invoke(adapt(name, "GET", "/api/v1/tasks", headers=account.headers))
        for name, response in outage.items():
            assert response["statusCode"] == 503, (name, response)
            assert response_header(response, "retry-after") == "2", name
            assert response_header(response, "content-type") == "application/json", name
            body = response_json(response)
            assert (body.get("detail") or body.get("reason")) == DATABASE_UNAVAILABLE, (name, body)

        switchable.resume()
        assert app.db.engine is engine
        statuses = {name: (await invoke(event))["statusCode"] for name, event in events.items()}
        assert statuses == SERVING_STATUSES
        assert await app_sessions(db, settle=True) == []
    finally:
        await engine.dispose()
