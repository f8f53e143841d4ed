"""The HTTP layer. Imported before any route: it stops FastAPI importing pydantic.v1 (a cold-start cost)."""

from app.api import _no_pydantic_v1  # noqa: F401 - must run before any route is declared
