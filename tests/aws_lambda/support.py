"""Real AWS event payloads (tests/lambda_events/, see SOURCES.md), adapted to reach this API's routes.

Each payload keeps everything AWS put in it (authorizer blocks, mTLS, stage variables, odd headers); only the
method, path, query string, headers and body are changed, in the fields that payload format actually uses.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

EVENTS_DIR = Path(__file__).resolve().parents[1] / "lambda_events"

# Every payload, with the format it represents (as Mangum infers it: see SOURCES.md).
EVENT_FILES = sorted(path.name for path in EVENTS_DIR.glob("*.json"))


class FakeContext:
    """The attributes of the Lambda context object that Mangum and the app may read."""

    function_name = "task-api-dev-api"
    memory_limit_in_mb = 1024
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def event_format(event: dict[str, Any]) -> str:
    """`http-v2` (HTTP API 2.0 and Function URLs), `http-v1` (HTTP API 1.0), `rest` (REST API) or `alb`."""
    context = event.get("requestContext", {})
    if "elb" in context:
        return "alb"
    if event.get("version") == "2.0":
        return "http-v2"
    if "version" in event:
        return "http-v1"
    return "rest"


def stage_prefix(event: dict[str, Any]) -> str:
    """The named stage API Gateway puts in front of HTTP API paths (`/beta`), or ''."""
    if event_format(event) != "http-v2":
        return ""
    stage = event.get("requestContext", {}).get("stage", "$default")
    raw_path = event.get("rawPath", "")
    if stage != "$default" and raw_path.startswith(f"/{stage}/"):
        return f"/{stage}"
    return ""


def adapt(
    name_or_event: str | dict[str, Any],
    method: str,
    path: str,
    *,
    query: dict[str, str | list[str]] | None = None,
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
    base64_body: bool = False,
    keep_stage: bool = True,
) -> dict[str, Any]:
    """A copy of the event sent to `path` (plus the event's own stage prefix if `keep_stage`)."""
    event = copy.deepcopy(load_event(name_or_event) if isinstance(name_or_event, str) else name_or_event)
    kind = event_format(event)
    full_path = (stage_prefix(event) if keep_stage else "") + path
    query = query or {}
    multi = {key: value if isinstance(value, list) else [value] for key, value in query.items()}

    # Headers: drop what described the original body, add ours (lower-case, as HTTP API sends them).
    extra = {key.lower(): value for key, value in (headers or {}).items()}
    if body is not None and "content-type" not in extra:
        extra["content-type"] = "application/json"
    for field in ("headers", "multiValueHeaders"):
        if event.get(field) is None and field == "headers":
            event[field] = {}
        if event.get(field) is None:
            continue
        for key in list(event[field]):
            if key.lower() in {"content-type", "content-length"} or key.lower() in extra:
                del event[field][key]
        for key, value in extra.items():
            event[field][key] = [value] if field == "multiValueHeaders" else value

    if kind == "http-v2":
        event["rawPath"] = full_path
        event["rawQueryString"] = urlencode(multi, doseq=True)
        event["queryStringParameters"] = {key: ",".join(values) for key, values in multi.items()} or None
        http = event["requestContext"]["http"]
        http["method"], http["path"] = method, full_path
        if event.get("queryStringParameters") is None:
            event.pop("queryStringParameters", None)
    elif kind == "alb":
        event["httpMethod"], event["path"] = method, full_path
        # ALB passes query parameters as they were in the URL, percent-encoded (it does not decode them), and
        # keeps only the last value of a repeated key unless the target group has multi-value headers on.
        encoded = {quote(k, safe=""): [quote(v, safe="") for v in values] for k, values in multi.items()}
        if "multiValueHeaders" in event:
            event["multiValueQueryStringParameters"] = encoded
            event.pop("queryStringParameters", None)
        else:
            event["queryStringParameters"] = {key: values[-1] for key, values in encoded.items()}
    else:
        event["httpMethod"], event["path"] = method, full_path
        event["queryStringParameters"] = {key: values[-1] for key, values in multi.items()} or None
        if "multiValueQueryStringParameters" in event:
            event["multiValueQueryStringParameters"] = multi or None
        if kind in {"rest", "http-v1"}:
            context = event["requestContext"]
            context["httpMethod"] = method
            if "path" in context:
                context["path"] = f"/{context.get('stage', '')}{path}" if kind == "rest" else path

    raw = body.encode() if isinstance(body, str) else body
    if raw is None:
        event["body"] = None if kind != "alb" else ""
        event["isBase64Encoded"] = False
    elif base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = raw.decode(), False
    return event


def keeps_repeated_query_keys(name_or_event: str | dict[str, Any]) -> bool:
    """False only for an ALB target group without multi-value headers: it keeps the last value of a key."""
    event = load_event(name_or_event) if isinstance(name_or_event, str) else name_or_event
    return event_format(event) != "alb" or "multiValueHeaders" in event


def form(**fields: str) -> str:
    return urlencode(fields)


def response_json(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body) if body else None


def response_header(response: dict[str, Any], name: str) -> str | None:
    """A response header from either `headers` or `multiValueHeaders` (ALB and REST use both)."""
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return ", ".join(values)
    return None


async def open_app_connections(db) -> int:
    """Connections the app holds open (the tests' own connections have no application_name)."""
    # A closed connection's backend needs a moment to leave pg_stat_activity after the client's Terminate;
    # a leaked one never leaves. Poll briefly rather than read once.
    from app.config import settings

    count = -1
    for _ in range(40):
        count = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            settings.DB_APPLICATION_NAME,
        )
        if count == 0:
            break
        await asyncio.sleep(0.05)
    return count
