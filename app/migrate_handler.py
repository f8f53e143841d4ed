"""The `migrate` Lambda function: `alembic upgrade head` against the direct (non-pooled) database URL.

Invoked once after each deploy (`npx osls invoke -f migrate --stage prod`). Kept apart from app.handler so the
API's cold start never imports Alembic. alembic/env.py takes the URL from settings (DATABASE_URL_DIRECT, else
DATABASE_URL without Neon's `-pooler`): DDL and advisory locks need a session that a transaction pooler does
not guarantee.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # /var/task on Lambda: alembic.ini and alembic/ are shipped beside app/

logger = logging.getLogger("app.migrate")


def upgrade_to_head() -> dict[str, Any]:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(ROOT / "alembic.ini"))
    # Lambda already sends the root logger to CloudWatch; alembic.ini's fileConfig would add a second handler.
    config.attributes["configure_logging"] = False
    head = ScriptDirectory.from_config(config).get_current_head()
    command.upgrade(config, "head")
    return {"status": "ok", "revision": head}


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Returns {"status": "ok", "revision": <head>}; a failure raises, so the invocation reports an error."""
    logging.getLogger("alembic").setLevel(logging.INFO)
    result = upgrade_to_head()
    logger.info("database migrated to %s", result["revision"])
    return result
