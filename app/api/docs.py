"""/docs without the internet: Swagger UI's JavaScript and CSS served by the app, not fetched from a CDN.

FastAPI's default /docs page loads Swagger UI from jsDelivr, so it is blank on a laptop offline, behind a proxy
that blocks CDNs, or under a Content-Security-Policy of `self`. The files come from the `fastapi-swagger`
package (released with each Swagger UI release) and are served with Starlette's StaticFiles, FastAPI's
documented recipe for self-hosting the docs' assets. The page itself is FastAPI's own get_swagger_ui_html.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"


def serve_docs_offline(app: FastAPI) -> None:
    """Add /docs (and its OAuth2 redirect page) with local assets. The app must be built with docs_url=None."""
    # packages= finds the files without importing the package: nothing of it is loaded on a cold start.
    app.mount(ASSETS_URL, StaticFiles(packages=[("fastapi_swagger", "resources")]), name="swagger-ui-assets")
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # API_BASE_PATH behind a gateway stage
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # No badge fetched from validator.swagger.io: it would send the document out, and fails offline.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    if oauth2_redirect_url:
        # FastAPI adds this page only together with its own /docs, which docs_url=None turns off.
        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()
