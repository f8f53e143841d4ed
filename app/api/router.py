"""All routes of API version 1, mounted under /api/v1 by app.main, with what every route of the API shares:
- a body over 1 MB is refused (app.api.limits.BodySizeLimit), and one of another media type than the route's
  requestBody is a 415 (each route with a body documents it);
- every route but health's runs a statement that can fail with the database's 503 and 504.
"""

from fastapi import APIRouter, Depends

from app.api.limits import require_declared_media_type
from app.api.problems import DATABASE_ERRORS, R413
from app.api.routes import auth, health, tags, tasks, users

API_PREFIX = "/api/v1"

api_router = APIRouter(dependencies=[Depends(require_declared_media_type)], responses=R413)
api_router.include_router(health.router)
for module in (auth, users, tasks, tags):
    api_router.include_router(module.router, responses=DATABASE_ERRORS)
