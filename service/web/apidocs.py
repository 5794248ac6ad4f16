"""OpenAPI docs (Swagger UI at /docs, ReDoc at /redoc) served from assets vendored in the package.

FastAPI's own /docs and /redoc pages load their JavaScript and CSS from a CDN and ReDoc's fonts from
Google, so they are blank offline. create_app turns those off (docs_url=None, redoc_url=None) and calls
install(), which serves FastAPI's same page templates with every URL pointing at
service/web/static/apidocs/ (swagger-ui-dist 5.35.0 and redoc 2.5.4 from npm, licenses beside them)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "apidocs"
ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
FAVICON_URL = f"{ASSETS_URL}/favicon.svg"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _offline_only(page: HTMLResponse) -> HTMLResponse:
    """Add a Content-Security-Policy that lets the page reach this server only. The browser then refuses
    what a bundle would fetch from elsewhere (the vendored ReDoc bundle had one such URL, its logo, now a
    local one: static/apidocs/README.md), so no request leaves the machine. The page's own inline
    start-up script is allowed by its hash."""
    body = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in INLINE_SCRIPT.findall(body)
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


def install(app: FastAPI) -> None:
    """Add /docs, /redoc and their assets to app (which must have been built with docs_url=None)."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="apidocs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _offline_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                swagger_js_url=f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui/swagger-ui.css",
                swagger_favicon_url=FAVICON_URL,
                oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            )
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _offline_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
                redoc_favicon_url=FAVICON_URL,
                with_google_fonts=False,  # no request leaves the machine
            )
        )
