"""Shared start of every script: use the embedded PostgreSQL unless DATABASE_URL is configured.

Must run before `app.config` is imported, because settings are read once at import.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.dev.embedded import EmbeddedPostgres, use_embedded_unless_configured  # noqa: E402


def database_ready() -> EmbeddedPostgres | None:
    """Start the embedded server if needed; returns it, or None when an external database is configured."""
    return use_embedded_unless_configured()
