"""The FastAPI application: routers, middleware and exception handlers. `app = create_app()`.

Startup does no database work (Mangum runs with lifespan="off"; the first request opens the first connection).
Logging (JSON lines, one per request) is set up at import: app/observability.py.
"""

from fastapi import FastAPI

from app.api.docs import serve_docs_offline
from app.api.limits import BodySizeLimit
from app.api.problems import register_problem_handlers
from app.api.router import API_PREFIX, api_router
from app.config import settings
from app.errors import register_error_handlers
from app.observability import RequestLogMiddleware, configure_logging


def create_app() -> FastAPI:
    app = FastAPI(
        title="Task API",
        version="1.0.0",
        summary="Tasks with status, priority, due dates and tags; JWT auth; on AWS Lambda and Neon Postgres.",
        openapi_url="/openapi.json",
        docs_url=None,  # served by serve_docs_offline, with local assets
        redoc_url=None,
    )
    app.include_router(api_router, prefix=API_PREFIX)
    serve_docs_offline(app)
    register_error_handlers(app)
    register_problem_handlers(app)
    # Middleware added later wraps what was added before.
    app.add_middleware(BodySizeLimit)  # inside CORS, so that its 413 gets CORS headers too
    if settings.ALLOWED_ORIGINS:
        # Imported only when configured: most deployments never load it (a cold start's import cost).
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.ALLOWED_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "X-Request-ID"],
        )
    # Outermost of ours: one log line and an X-Request-ID for every response, the 413s, 503s and 500s too.
    app.add_middleware(RequestLogMiddleware)
    return app


configure_logging(settings.LOG_LEVEL)
app = create_app()
