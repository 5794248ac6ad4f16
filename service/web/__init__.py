"""The web dashboard: server-rendered pages (Jinja2) with a little plain JavaScript, every asset
served from service/web/static. Mounted by service.main.create_app through mount(app, settings).

Pages authenticate with a signed session cookie made from an API key at /ui/login and see exactly
what that key's tenant sees through the API. Nothing here imports an ML library."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from edgedistill.service.api.bodylimit import JsonBodyLimit
from edgedistill.service.settings import Settings
from edgedistill.service.web import errors, pages_auth, pages_jobs, pages_measurements, pages_profiles, pages_submit
from edgedistill.service.web.templating import STATIC

_fallback = APIRouter(include_in_schema=False)


@_fallback.get("/ui/{path:path}")
def not_found(path: str, request: Request) -> Response:
    raise errors.PageNotFound(f"There is no page at /ui/{path}.")


NEW_JOB_PATH = "/ui/jobs/new"


def mount(app: FastAPI, settings: Settings) -> None:
    """Add the dashboard's routes, static files and error pages to the API app."""
    # Form bodies are small; only New job carries files (two, each up to max_upload_bytes). The caps
    # are enforced before a body is read, so an anonymous POST cannot make the server hold gigabytes.
    app.add_middleware(
        JsonBodyLimit,
        max_bytes=settings.max_json_body_bytes,
        path_prefix="/ui/",
        upload_paths=frozenset({NEW_JOB_PATH}),
    )
    app.add_middleware(
        JsonBodyLimit,
        # Chunked bodies declare no length: counted as they stream, with the same cap the route applies
        # to Content-Length (two files plus the form), before Starlette spools them anywhere.
        max_bytes=pages_submit.body_limit(settings),
        path_prefix=NEW_JOB_PATH,
        upload_paths=frozenset(),
        check_declared=False,
    )
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    # /ui/jobs/new and /ui/jobs/events come before /ui/jobs/{job_id}; the catch-all 404 comes last.
    for module in (pages_auth, pages_submit, pages_jobs, pages_profiles, pages_measurements):
        app.include_router(module.router)
    app.include_router(_fallback)
    errors.install(app)
