"""What CloudWatch gets from the api function, read from the output of the real Lambda bootstrap (awslambdaric)
serving every real event payload: one valid EMF record per invocation (the request's log line), the
`cold_start` flag, the X-Ray trace id the runtime sets for each invocation, and no secret.

The output is parsed as CloudWatch Logs would see it: each line on its own, an EMF record being a line that is
a JSON object with `_aws` in it (tests/support/emf.py checks them against the specification).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pytest

from tests.aws_lambda.fake_runtime_api import FakeRuntimeApi
from tests.aws_lambda.support import EVENT_FILES, adapt
from tests.aws_lambda.test_bootstrap import bootstrap, stop
from tests.support.api import insert_task, make_account
from tests.support.emf import emf_problems
from tests.support.leaks import Secrets

pytest.importorskip("awslambdaric", reason="awslambdaric is in the dev extras: make install")

# Values a client sends that must never reach a log line: a query parameter's value, and a forged token.
QUERY_VALUE = f"query-value-{uuid.uuid4().hex}"
OTHER_QUERY_VALUE = f"api-key-{uuid.uuid4().hex}"


def trace_header(number: int) -> tuple[str, str]:
    """An X-Ray trace header as Lambda sends it, and its Root: a new trace id for each invocation."""
    root = f"1-{int(time.time()):08x}-{number:024x}"
    return f"Root={root};Parent={number:016x};Sampled=1", root


def parsed_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.fixture(scope="module")
def served(database_url, tmp_path_factory) -> dict[str, Any]:
    """Every payload, four requests each (a read, a task by id, a 404 with a query, a 401 with a forged token),
    through one bootstrap process: a sandbox's first invocation and its warm ones."""
    import asyncio

    import asyncpg

    async def arrange() -> tuple[Any, uuid.UUID]:
        connection = await asyncpg.connect(database_url)
        try:
            account = await make_account(connection)
            task_id = await insert_task(connection, account.id, "Observed task", tags=["home"])
        finally:
            await connection.close()
        return account, task_id

    account, task_id = asyncio.run(arrange())
    forged = account.token[:-4] + ("AAAA" if not account.token.endswith("AAAA") else "BBBB")
    requests = []
    for name in EVENT_FILES:
        requests += [
            (name, "GET", "/api/v1/tasks", {"tag": QUERY_VALUE, "limit": "5"}, account.headers, 200),
            (name, "GET", f"/api/v1/tasks/{task_id}", {}, account.headers, 200),
            (name, "GET", "/api/v1/no-such-route", {"api_key": OTHER_QUERY_VALUE}, {}, 404),
            (name, "GET", "/api/v1/tasks", {}, {"Authorization": f"Bearer {forged}"}, 401),
        ]
    invocations = []
    started_ms = int(time.time() * 1000)
    log = tmp_path_factory.mktemp("bootstrap") / "output.txt"
    with log.open("w") as sink, FakeRuntimeApi() as api, bootstrap("app.handler.handler", api, sink) as process:
        for number, (name, method, path, query, headers, status) in enumerate(requests, start=1):
            event = adapt(name, method, path, query=query, headers=headers, keep_stage=False)
            header, root = trace_header(number)
            invocations.append(
                {"id": api.invoke(event, trace_id=header), "root": root, "status": status, "event": event}
            )
        try:
            api.wait_for([i["id"] for i in invocations], timeout=120)
        finally:
            stop(process)
    output = log.read_text()
    ended_ms = int(time.time() * 1000)
    assert api.errors == {} and api.init_errors == [], output[-3000:]
    for invocation in invocations:
        invocation["response"] = api.results[invocation["id"]]
    return {
        "invocations": invocations,
        "output": output,
        "lines": parsed_lines(output),
        "window_ms": (started_ms, ended_ms),
        "secrets": [account.token, forged, QUERY_VALUE, OTHER_QUERY_VALUE],
    }


def request_line(served: dict[str, Any], invocation: dict[str, Any]) -> dict[str, Any]:
    (line,) = [
        line
        for line in served["lines"]
        if line.get("logger") == "app.requests" and line["request_id"] == invocation["id"]
    ]
    return line


def test_every_invocation_is_answered_as_expected(served):
    assert len(served["invocations"]) == 4 * len(EVENT_FILES)
    assert [i["response"]["statusCode"] for i in served["invocations"]] == [i["status"] for i in served["invocations"]]


def test_every_invocation_has_one_valid_emf_record(served):
    low, high = served["window_ms"]
    records = [line for line in served["lines"] if "_aws" in line]
    assert len(records) == len(served["invocations"])  # one per invocation, nothing else carries metrics
    for invocation in served["invocations"]:
        line = request_line(served, invocation)
        assert emf_problems(line) == [], line
        assert low <= line["_aws"]["Timestamp"] <= high  # epoch milliseconds, not seconds
        (responses, sandbox) = line["_aws"]["CloudWatchMetrics"]
        assert {m["Name"]: m["Unit"] for m in responses["Metrics"]} == {
            "duration_ms": "Milliseconds",
            "db_ms": "Milliseconds",
            "responses_2xx": "Count",
            "responses_3xx": "Count",
            "responses_4xx": "Count",
            "responses_5xx": "Count",
        }
        assert {m["Name"] for m in sandbox["Metrics"]} == {"ColdStart", "SnapStartRestore"}
        assert sandbox["Dimensions"] == [["service"]]
        assert line[f"responses_{invocation['status'] // 100}xx"] == 1
        assert sum(line[f"responses_{klass}xx"] for klass in range(2, 6)) == 1
        assert line["service"] == "task-api" and responses["Namespace"] == sandbox["Namespace"] == "TaskAPI"


def test_dimensions_are_the_service_and_the_route_template_never_a_path(served):
    routes = set()
    for invocation in served["invocations"]:
        line = request_line(served, invocation)
        dimension_sets = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        if invocation["status"] == 404:  # no route matched: service-wide figures only, no empty dimension
            assert line["route"] is None and dimension_sets == [["service"]]
            continue
        assert dimension_sets == [["service", "route"], ["service"]]
        routes.add(line["route"])
    assert routes == {"/api/v1/tasks", "/api/v1/tasks/{task_id}"}  # bounded: templates, not task ids


def test_database_time_is_measured_for_the_routes_that_use_the_database(served):
    for invocation in served["invocations"]:
        line = request_line(served, invocation)
        if invocation["status"] == 200:
            assert line["db_statements"] >= 1
            assert line["db_ms"] > 0 and 0 < line["db_connect_ms"] <= line["db_ms"]  # DB_POOL=null: a connect each
        else:
            assert (line["db_ms"], line["db_statements"]) == (0, 0)  # a 401 and a 404 never reach the database


def test_the_first_invocation_is_the_cold_start_and_only_it(served):
    lines = [request_line(served, invocation) for invocation in served["invocations"]]
    assert [line["cold_start"] for line in lines] == [True] + [False] * (len(lines) - 1)
    assert [line["ColdStart"] for line in lines] == [1] + [0] * (len(lines) - 1)
    assert {line["SnapStartRestore"] for line in lines} == {0}
    assert all("snapstart_restore" not in line for line in lines)


def test_each_line_carries_its_invocations_trace_id_request_id_and_correlation_id(served):
    for invocation in served["invocations"]:
        line = request_line(served, invocation)
        assert line["xray_trace_id"] == invocation["root"]
        assert line["function_request_id"] == line["request_id"] == invocation["id"]
        gateway_id = invocation["event"].get("requestContext", {}).get("requestId")
        if gateway_id:
            assert line["correlation_id"] == gateway_id


def test_no_secret_token_or_query_value_in_the_output(served):
    output = served["output"]
    assert [value for value in served["secrets"] if value in output] == []
    assert (
        Secrets.of(os.environ.get("TASK_API_TEST_APP_PASSWORD"), os.environ["SECRET_KEY"]).found_in(output, tokens=True)
        == []
    )
    for invocation in served["invocations"]:
        line = request_line(served, invocation)
        query = invocation["event"].get("queryStringParameters") or invocation["event"].get(
            "multiValueQueryStringParameters"
        )
        if query:
            assert set(line["query_params"]) == set(query)  # the names, which are ours, not the values
