"""The AWS Lambda entry point: `app.handler.handler` (HTTP API 2.0, REST API 1.0, Function URLs, ALB).

lifespan="off": Mangum would otherwise run the app's startup and shutdown on every invocation, and startup has
nothing to do anyway (no database work at import or startup; the first request opens the first connection).
API Gateway puts a named stage in front of the path (`/prod/api/v1/...`); API_BASE_PATH strips it.
On a SnapStart runtime the hooks of app/snapstart.py are registered here (elsewhere that is a no-op).
"""

from mangum import Mangum

from app import snapstart
from app.config import settings
from app.main import app

handler = Mangum(app, lifespan="off", api_gateway_base_path=settings.API_BASE_PATH or "/")
snapstart.register_with_lambda()
