"""All routes of API version 1 (under /api/v1), in the order they are matched and documented.

`tasks.listing` (GET /api/v1/tasks, not in the document) comes first: it is the most frequent request, and
the only path it shares is that of the other /api/v1/tasks routes, which it preceded anyway.
"""

from starlette.routing import BaseRoute

from app.api.routes import auth, health, tags, tasks, users

api_routes: list[BaseRoute] = [
    tasks.listing,
    *(
        route
        for router in (health.router, auth.router, users.router, tasks.router, tags.router)
        for route in router.routes
    ),
]
