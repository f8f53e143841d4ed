"""CloudWatch metrics, as Embedded Metric Format members of the request's log line, and the database time.

EMF (CloudWatch's specification): a JSON log line whose `_aws` member says which of its top-level members are
metrics (name, unit) and which are dimensions; CloudWatch Logs extracts the metrics from the line, no API call,
no agent. Here the request line of app/observability.py is that line, so its existing `duration_ms` is the
latency metric and its `route` the route dimension: nothing is written twice. Per request:

- namespace METRICS_NAMESPACE, dimensions `service` (SERVICE_NAME) and `route` (the route template, never the
  path: bounded cardinality), plus `service` alone for service-wide figures. A request no route matched (a 404
  for an unknown path) counts in the service-wide figures only, so no dimension is ever empty;
- `duration_ms`, `db_ms` (Milliseconds); `responses_2xx` ... `responses_5xx` (Count, 1 for the response's
  class and 0 for the others, so the Average of `responses_5xx` is the 5xx rate);
- `ColdStart` (Powertools' name for it, so existing dashboards and alarms apply) and `SnapStartRestore`
  (Count, 0 or 1), per service only: a cold start is the sandbox's, not a route's.

`db_ms` is the time the request waited for the database: opening its connection (app.db.open_connection, the
TCP, TLS and SCRAM round trips when there is no kept connection, retries included) plus its statements (from
sending one to having its rows, SQLAlchemy's public cursor events, registered on the Engine class so that
every engine, tests' and benches' too, is covered). `db_connect_ms` and `db_statements` say how it splits.

Stdlib and SQLAlchemy only: this is imported on every cold start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

STATUS_CLASSES = ("responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx")
RESPONSE_METRICS = ("duration_ms", "db_ms", *STATUS_CLASSES)
SANDBOX_METRICS = ("ColdStart", "SnapStartRestore")
_UNITS = {"duration_ms": "Milliseconds", "db_ms": "Milliseconds"}


class DatabaseTime:
    """One request's time waiting for the database. A request's statements run one after the other."""

    __slots__ = ("connect_seconds", "statement_seconds", "statements", "_started", "_connecting")

    def __init__(self) -> None:
        self.connect_seconds = 0.0
        self.statement_seconds = 0.0
        self.statements = 0
        self._started = 0.0
        self._connecting = False

    @property
    def ms(self) -> float:
        return round((self.connect_seconds + self.statement_seconds) * 1000, 2)

    @property
    def connect_ms(self) -> float:
        return round(self.connect_seconds * 1000, 2)


database_time_var: ContextVar[DatabaseTime | None] = ContextVar("database_time", default=None)


@contextmanager
def connecting() -> Iterator[None]:
    """Counts the block as connection time (app.db.open_connection). SQLAlchemy's first connection of a process
    runs a few statements of its own inside it: they are connection time, not counted twice as statements."""
    timer = database_time_var.get()
    if timer is None:
        yield
        return
    started, timer._connecting = time.perf_counter(), True
    try:
        yield
    finally:
        timer.connect_seconds += time.perf_counter() - started
        timer._connecting = False


def _statement_started(*_: Any) -> None:
    timer = database_time_var.get()
    if timer is not None and not timer._connecting:
        timer._started = time.perf_counter()


def _statement_ended(*_: Any) -> None:
    timer = database_time_var.get()
    if timer is not None and timer._started:
        timer.statement_seconds += time.perf_counter() - timer._started
        timer.statements += 1
        timer._started = 0.0


# A failed statement ends in handle_error instead of after_cursor_execute; its time was the database's too.
# Public so that a benchmark can take them off to measure what they cost (bench/observability.py).
STATEMENT_EVENTS = (
    ("before_cursor_execute", _statement_started),
    ("after_cursor_execute", _statement_ended),
    ("handle_error", _statement_ended),
)
for _name, _listener in STATEMENT_EVENTS:
    event.listen(Engine, _name, _listener)


def _directive(namespace: str, dimensions: list[list[str]], metrics: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "Dimensions": dimensions,
        "Metrics": [{"Name": name, "Unit": _UNITS.get(name, "Count")} for name in metrics],
    }


class EmfWriter:
    """The `_aws` member and the metric values of one request line. The directives are built once."""

    def __init__(self, namespace: str, service: str) -> None:
        self.service = service
        sandbox = _directive(namespace, [["service"]], SANDBOX_METRICS)
        self._with_route = [_directive(namespace, [["service", "route"], ["service"]], RESPONSE_METRICS), sandbox]
        self._without_route = [_directive(namespace, [["service"]], RESPONSE_METRICS), sandbox]

    def fields(self, *, route: str | None, status: int, cold_start: bool, restored: bool) -> dict[str, Any]:
        """`_aws`, `service` and the members that are only metrics; `duration_ms`, `db_ms` and `route` are the
        line's own (the caller puts them there)."""
        fields: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": self._with_route if route is not None else self._without_route,
            },
            "service": self.service,
        }
        klass = min(max(status // 100, 2), 5)  # 1xx cannot end a request; anything odd counts as its nearest
        for index, name in enumerate(STATUS_CLASSES, start=2):
            fields[name] = 1 if index == klass else 0
        fields["ColdStart"] = 1 if cold_start else 0
        fields["SnapStartRestore"] = 1 if restored else 0
        return fields
