"""All routes of API version 1, mounted under /api/v1 by app.main."""

from fastapi import APIRouter

from app.api.routes import auth, health, tags, tasks, users

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(tasks.router)
api_router.include_router(tags.router)
