"""Liveness (no database) and readiness (database reachable and schema at head)."""

from __future__ import annotations

import asyncio
import time
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from app import db
from app.config import settings
from app.db_faults import DATABASE_ERRORS, StatementTimeout
from app.errors import RETRY_AFTER_SECONDS, database_failure

router = APIRouter(prefix="/health", tags=["health"])

ALEMBIC_DIR = Path(__file__).resolve().parents[3] / "alembic"
READINESS_QUERY = text("SELECT 1 AS ok, (SELECT version_num FROM alembic_version LIMIT 1) AS revision")


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    database_revision: str | None
    expected_revision: str | None
    latency_ms: float
    reason: str | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [{"status": "ok", "database_revision": "0001", "expected_revision": "0001", "latency_ms": 3.2}]
        }
    }


@cache
def expected_revision() -> str | None:
    """The head revision of the migrations shipped with this code (alembic imported only here, lazily)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(ALEMBIC_DIR)).get_current_head()


@router.get("", summary="Liveness: the process answers", operation_id="health_live", response_model=Liveness)
async def live() -> Liveness:
    """Answers 200 without touching the database."""
    return Liveness()


@router.get(
    "/db",
    summary="Readiness: the database answers and its schema is at head",
    operation_id="health_db",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Database unreachable or schema not at head"}},
)
async def ready() -> Readiness | JSONResponse:
    """Runs one statement (`SELECT 1` plus the `alembic_version` row), bounded by the connect and command timeouts."""
    expected = expected_revision()
    started = time.perf_counter()
    revision: str | None = None
    reason: str | None = None
    retry_after = RETRY_AFTER_SECONDS
    try:
        async with asyncio.timeout(settings.DB_CONNECT_TIMEOUT + settings.DB_COMMAND_TIMEOUT):
            async with db.request_connection() as connection:
                row = (await connection.execute(READINESS_QUERY)).one()
                revision = row.revision
    except ProgrammingError:
        reason = "The schema is not migrated (no alembic_version table): run `make migrate`."
    except TimeoutError:  # the outer bound ran out: answered as a statement the server cancelled
        failure = database_failure(StatementTimeout(None))
        reason, retry_after = failure.detail, failure.retry_after
    except DATABASE_ERRORS as error:
        failure = database_failure(error)  # the API's own reason (unreachable, refused login, too slow)
        reason, retry_after = failure.detail, failure.retry_after
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if reason is None and revision != expected:
        reason = f"The schema is at revision {revision}, the code expects {expected}: run `make migrate`."
    result = Readiness(
        status="ok" if reason is None else "unavailable",
        database_revision=revision,
        expected_revision=expected,
        latency_ms=latency_ms,
        reason=reason,
    )
    if reason is not None:
        return JSONResponse(status_code=503, content=result.model_dump(), headers={"Retry-After": retry_after})
    return result
