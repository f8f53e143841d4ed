"""All routes of API version 1, mounted under /api/v1 by app.main."""

from fastapi import APIRouter

from app.api.problems import R503
from app.api.routes import auth, health, tags, tasks, users

api_router = APIRouter()
api_router.include_router(health.router)
for module in (auth, users, tasks, tags):
    api_router.include_router(module.router, responses=R503)
