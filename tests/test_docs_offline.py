"""/docs loads everything it needs from the app itself (app/api/docs.py): it works without the internet."""

from __future__ import annotations

import re

EXPECTED_ASSETS = {
    "/docs/assets/swagger-ui-bundle.js": "javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/favicon-32x32.png": "image/png",
}


def _urls(html: str) -> set[str]:
    """Every URL the page makes the browser load or call: attributes and the quoted URLs of its script."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    quoted = re.findall(r"""["'](https?://[^"']+|/[^"'\s]*)["']""", html)
    return set(attributes) | set(quoted)


async def test_the_docs_page_names_no_other_host(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = _urls(response.text)
    assert not [url for url in urls if "://" in url or url.startswith("//")], urls
    assert set(EXPECTED_ASSETS) <= urls
    assert "/openapi.json" in urls
    assert '"validatorUrl": null' in response.text  # no badge from validator.swagger.io


async def test_every_asset_the_page_names_is_served(client):
    for url, kind in EXPECTED_ASSETS.items():
        response = await client.get(url)
        assert response.status_code == 200, url
        assert kind in response.headers["content-type"], (url, response.headers["content-type"])
        assert len(response.content) > 500, url
    bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "SwaggerUIBundle" in bundle  # the global the page's script calls


async def test_the_oauth2_redirect_page_is_still_served(client):
    """The Authorize button's redirect target, which FastAPI only adds beside its own /docs."""
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "oauth2" in response.text.lower()


async def test_the_assets_are_not_part_of_the_api_document(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]


async def test_an_unknown_asset_is_a_404(client):
    assert (await client.get("/docs/assets/nope.js")).status_code == 404
