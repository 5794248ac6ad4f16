"""The web dashboard: server-rendered pages (Jinja2) with a little plain JavaScript, every asset
served from service/web/static. Mounted by service.main.create_app through mount(app, settings).

Pages authenticate with a signed session cookie made from an API key at /ui/login and see exactly
what that key's tenant sees through the API. Nothing here imports an ML library."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from service.settings import Settings
from service.web import errors, pages_auth, pages_jobs, pages_measurements, pages_profiles, pages_submit
from service.web.templating import STATIC

_fallback = APIRouter(include_in_schema=False)


@_fallback.get("/ui/{path:path}")
def not_found(path: str, request: Request) -> Response:
    raise errors.PageNotFound(f"There is no page at /ui/{path}.")


def mount(app: FastAPI, settings: Settings) -> None:
    """Add the dashboard's routes, static files and error pages to the API app."""
    del settings  # everything is read from app.state per request, like the API
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    # /ui/jobs/new and /ui/jobs/events come before /ui/jobs/{job_id}; the catch-all 404 comes last.
    for module in (pages_auth, pages_submit, pages_jobs, pages_profiles, pages_measurements):
        app.include_router(module.router)
    app.include_router(_fallback)
    errors.install(app)
