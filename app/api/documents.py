"""JSON responses for documents the queries already shaped like a response model: no second validation.

A route declares its `response_model` (it is what the OpenAPI document shows) and returns `json_response(...)`
of the dicts its query built from the row. FastAPI then sends the response as it is, instead of validating
the value against the model once more and serializing it through the model. `pydantic_core.to_json` writes
UUIDs, datetimes (UTC as `Z`) and lists exactly as the model's serializer does (tests/test_documents.py).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import Response


def json_response(document: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`document` as FastAPI would send its response model: same body, status and headers, in the same order."""
    response = Response(to_json(document), status_code=status_code, media_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
