"""All routes of API version 1 (under /api/v1), in the order they are matched and documented."""

from starlette.routing import BaseRoute

from app.api.routes import auth, health, tags, tasks, users

api_routes: list[BaseRoute] = [
    route
    for router in (health.router, auth.router, users.router, tasks.listing, tasks.router, tags.router)
    for route in router.routes
]
