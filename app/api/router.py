"""All routes of API version 1 (under /api/v1), in the order they are matched and documented."""

from starlette.routing import BaseRoute

from app.api.routes import auth, health, tags, tasks, users

api_routes: list[BaseRoute] = [route for module in (health, auth, users, tasks, tags) for route in module.router.routes]
