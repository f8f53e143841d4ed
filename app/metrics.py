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
- `cold_starts`, `snapstart_restores` (Count, 0 or 1), per service only: a cold start is the sandbox's, not a
  route's.

`db_ms` is the time SQLAlchemy spends in statements (from sending one to having its rows), summed over the
request; `db_statements` counts them. Opening a connection is not in it: the engine has its own connect
function (app/db.py), and SQLAlchemy announces no event before it calls one. Measured with SQLAlchemy's public
cursor events, registered on the Engine class, so every engine (tests and benches make their own) is covered.

Stdlib and SQLAlchemy only: this is imported on every cold start.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

STATUS_CLASSES = ("responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx")
RESPONSE_METRICS = ("duration_ms", "db_ms", *STATUS_CLASSES)
SANDBOX_METRICS = ("cold_starts", "snapstart_restores")
_UNITS = {"duration_ms": "Milliseconds", "db_ms": "Milliseconds"}


class DatabaseTime:
    """One request's time in statements. Statements of a request run one after the other (one connection)."""

    __slots__ = ("seconds", "statements", "_started")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self._started = 0.0

    @property
    def ms(self) -> float:
        return round(self.seconds * 1000, 2)


database_time_var: ContextVar[DatabaseTime | None] = ContextVar("database_time", default=None)


def _statement_started(*_: Any) -> None:
    timer = database_time_var.get()
    if timer is not None:
        timer._started = time.perf_counter()


def _statement_ended(*_: Any) -> None:
    timer = database_time_var.get()
    if timer is not None and timer._started:
        timer.seconds += time.perf_counter() - timer._started
        timer.statements += 1
        timer._started = 0.0


# A failed statement ends in handle_error instead of after_cursor_execute; its time was the database's too.
event.listen(Engine, "before_cursor_execute", _statement_started)
event.listen(Engine, "after_cursor_execute", _statement_ended)
event.listen(Engine, "handle_error", _statement_ended)


def _directive(namespace: str, dimensions: list[list[str]], metrics: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "Dimensions": dimensions,
        "Metrics": [{"Name": name, "Unit": _UNITS.get(name, "Count")} for name in metrics],
    }


class EmfWriter:
    """The `_aws` member and the metric values of one request line. The directives are built once."""

    def __init__(self, namespace: str) -> None:
        sandbox = _directive(namespace, [["service"]], SANDBOX_METRICS)
        self._with_route = [_directive(namespace, [["service", "route"], ["service"]], RESPONSE_METRICS), sandbox]
        self._without_route = [_directive(namespace, [["service"]], RESPONSE_METRICS), sandbox]

    def fields(self, *, route: str | None, status: int, cold_start: bool, restored: bool) -> dict[str, Any]:
        """`_aws` and the members that are only metrics; `duration_ms`, `db_ms`, `service` and `route` are the
        line's own (the caller checks they are there)."""
        fields: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": self._with_route if route is not None else self._without_route,
            }
        }
        klass = min(max(status // 100, 2), 5)  # 1xx cannot end a request; anything odd counts as its nearest
        for index, name in enumerate(STATUS_CLASSES, start=2):
            fields[name] = 1 if index == klass else 0
        fields["cold_starts"] = 1 if cold_start else 0
        fields["snapstart_restores"] = 1 if restored else 0
        return fields
