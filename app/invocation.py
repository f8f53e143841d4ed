"""What identifies one invocation in the logs, under the field names AWS Lambda Powertools' Logger uses.

- `cold_start`: true for the first request a process serves, and again for the first one after a SnapStart
  restore (the snapshot was taken after the before-snapshot warm-up had already served requests, so the flag is
  set again by an after-restore hook); false afterwards.
- `function_request_id`: Lambda's `aws_request_id`.
- `xray_trace_id`: the `Root` of `_X_AMZN_TRACE_ID`, which the Lambda runtime sets for each invocation.
- `correlation_id`: the id the front door gave the request (API Gateway's `requestContext.requestId`, an ALB's
  `X-Amzn-Trace-Id` root), else the caller's own `X-Request-ID`: what ties our line to the gateway's access log
  or the caller's.

Every value that comes from a request is checked against a narrow pattern and dropped, not echoed, if it does
not match: a log line must not carry what a client chose to put in a header. Stdlib only (cold start cost).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from typing import Any

from app import snapstart

Scope = MutableMapping[str, Any]

# X-Ray's trace id: version 1, 8 hex digits of epoch seconds, 24 hex digits of randomness.
_TRACE_ROOT = re.compile(r"Root=(1-[0-9a-f]{8}-[0-9a-f]{24})")
# Gateway request ids are uuids or base64-ish (`JKJaXmPLvHcESHA=`); a caller's X-Request-ID the same shape as
# app.observability accepts, plus the characters a gateway uses.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")


class _Sandbox:
    """The process's first-invocation state. One per process; SnapStart restores copy it, hence the hook."""

    cold = True
    restored = False


def first_invocation() -> tuple[bool, bool]:
    """(cold start, first after a SnapStart restore) for the invocation starting now; both false afterwards."""
    if not _Sandbox.cold:
        return False, False
    restored = _Sandbox.restored
    _Sandbox.cold = _Sandbox.restored = False
    return True, restored


@snapstart.after_restore
def _restored() -> None:
    _Sandbox.cold = _Sandbox.restored = True


def xray_trace_id() -> str | None:
    """The invocation's trace id, read when the invocation starts (the runtime changes the variable each time)."""
    found = _TRACE_ROOT.search(os.environ.get("_X_AMZN_TRACE_ID", ""))
    return found.group(1) if found else None


def correlation_id(scope: Scope) -> str | None:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
        gateway_id = context.get("requestId") if isinstance(context, dict) else None
        if isinstance(gateway_id, str) and _SANE_ID.fullmatch(gateway_id):
            return gateway_id
    for name, value in scope.get("headers") or ():
        if name == b"x-amzn-trace-id":  # an ALB's (API Gateway's REST APIs send it too, with a requestId above)
            found = _TRACE_ROOT.search(value.decode("latin-1"))
            if found:
                return found.group(1)
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


def invocation_fields(scope: Scope, service: str) -> dict[str, Any]:
    """The fields every log line of this request carries (Powertools' names; absent values left out)."""
    cold, restored = first_invocation()
    fields: dict[str, Any] = {"service": service, "cold_start": cold}
    if restored:
        fields["snapstart_restore"] = True
    request_id = getattr(scope.get("aws.context"), "aws_request_id", None)
    if request_id:
        fields["function_request_id"] = str(request_id)
    if (trace := xray_trace_id()) is not None:
        fields["xray_trace_id"] = trace
    if (correlation := correlation_id(scope)) is not None:
        fields["correlation_id"] = correlation
    return fields
