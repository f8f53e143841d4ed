"""The `purge` Lambda function: deletes the Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_HOURS.

serverless.yml runs it on an EventBridge schedule; locally `make purge-keys` (scripts/purge_idempotency_keys.py)
runs the same code. Kept apart from app.handler, like app.migrate_handler: the API never needs it. A key past
its lifetime already counts as new (app/queries/idempotency.py); the purge only keeps the table small.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("app.purge")


async def purge() -> int:
    """Deletes the expired keys in batches, each its own short transaction; returns how many."""
    from app.db import engine
    from app.queries.idempotency import purge_expired

    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            return await purge_expired(connection)
    finally:
        await engine.dispose()  # each invocation runs its own event loop: keep no connection bound to this one


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Returns {"status": "ok", "deleted": <count>}; a failure raises, so the invocation reports an error."""
    deleted = asyncio.run(purge())
    logger.info("purged %d expired idempotency keys", deleted)
    return {"status": "ok", "deleted": deleted}
