"""The FastAPI application: routers, middleware and exception handlers. `app = create_app()`.

Startup does no database work (Mangum runs with lifespan="off"; the first request opens the first connection).
"""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api.limits import BodySizeLimit
from app.api.problems import register_problem_handlers
from app.api.router import api_router
from app.config import settings
from app.errors import register_error_handlers

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    app = FastAPI(
        title="Task API",
        version="1.0.0",
        summary="Tasks with status, priority, due dates and tags; JWT auth; on AWS Lambda and Neon Postgres.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.add_middleware(BodySizeLimit)  # added before CORS, so that its 413 gets CORS headers too
    if settings.ALLOWED_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.ALLOWED_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location"],
        )
    register_error_handlers(app)
    register_problem_handlers(app)
    app.include_router(api_router, prefix=API_PREFIX)
    return app


app = create_app()
