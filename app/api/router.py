"""All routes of API version 1, mounted under /api/v1 by app.main."""

from fastapi import APIRouter

from app.api.routes import health

api_router = APIRouter()
api_router.include_router(health.router)
