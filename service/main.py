"""The API application, built by create_app(); run with
`uvicorn service.main:create_app --factory` (or `edgedistill serve`).

Importing this module loads no ML library and no worker code (tests/unit/service/test_import_boundary.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from edgedistill.service.api.bodylimit import JsonBodyLimit
from edgedistill.service.api.errors import install_error_handlers
from edgedistill.service.api.ratelimit import make_limiter
from edgedistill.service.api.routes import (
    artifacts,
    datasets,
    devices,
    devices_profiles,
    health,
    jobs,
    measurements,
    models,
    usage,
    webhooks,
)
from edgedistill.service.api.uploads import sweep_stale_staging
from edgedistill.service.db.session import make_engine, make_sessionmaker
from edgedistill.service.queue import JobQueue, make_queue
from edgedistill.service.schemas.common import ErrorOut
from edgedistill.service.settings import Settings, get_settings
from edgedistill.service.storage import ArtifactStore, LocalStore, get_store
from edgedistill.service.web import apidocs

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)

# What any authenticated API route may answer besides its own codes; every error body is {"detail": ...}.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a body that cannot be parsed (malformed JSON or multipart)"},
    401: {"model": ErrorOut, "description": "missing, invalid or revoked API key / device token"},
    403: {"model": ErrorOut, "description": "a device token on a route for API keys (or the reverse)"},
    404: {"model": ErrorOut, "description": "no such resource for this tenant"},
    413: {"model": ErrorOut, "description": "request body over the size limit"},
    422: {"model": ErrorOut, "description": "invalid request: a message, or a list of field errors"},
    503: {"model": ErrorOut, "description": "database unavailable; retry after Retry-After seconds"},
}

DESCRIPTION = """Distill a teacher model into a small student, quantize it to int8 and export it for a
device profile. Authenticate with `Authorization: Bearer <api key>` (`edgedistill admin create-key`).
Errors are JSON: `{"detail": ...}`."""


def create_app(
    settings: Settings | None = None, *, queue: JobQueue | None = None, store: ArtifactStore | None = None
) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    job_queue = queue or make_queue(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        staging = [settings.upload_tmp_dir]
        if isinstance(_app.state.store, LocalStore):
            staging.append(_app.state.store.tmp)
        swept = sweep_stale_staging(staging)
        if swept:
            log.info("removed %d staging leftovers of killed uploads or store writes", swept)
        yield
        close = getattr(job_queue, "close", None)
        if callable(close):
            close()
        engine.dispose()

    # /docs and /redoc come from service.web.apidocs: FastAPI's defaults load their assets from a CDN.
    app = FastAPI(
        title="edgedistill",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.store = store or get_store(settings)
    app.state.queue = job_queue
    # Shared by every API replica through Redis when a broker is configured (service/api/ratelimit.py).
    app.state.submit_limiter = make_limiter(
        settings.submit_rate_limit_per_minute, settings.broker_url, prefix="edgedistill:rl:submit"
    )
    app.state.measurement_limiter = make_limiter(
        settings.device_measurements_per_minute, settings.broker_url, prefix="edgedistill:rl:measure"
    )
    install_error_handlers(app)
    app.add_middleware(
        JsonBodyLimit,
        max_bytes=settings.max_json_body_bytes,
        path_prefix=f"{API_PREFIX}/",
        upload_paths=frozenset({f"{API_PREFIX}/models", f"{API_PREFIX}/datasets"}),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "ETag", "Content-Range", "Content-Disposition"],
        )

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health.router)
    for module in (models, datasets, devices_profiles, devices, jobs, artifacts, measurements, webhooks, usage):
        api.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(api)
    # Also at the root, where load balancers and compose healthchecks look.
    app.include_router(health.router, include_in_schema=False)
    apidocs.install(app)

    _mount_dashboard(app, settings)
    return app


def _mount_dashboard(app: FastAPI, settings: Settings) -> None:
    # ---- Dashboard (service/web, its own issue) --------------------------------------------------
    # Mounted when the package exists. Contract: service.web.mount(app: FastAPI, settings: Settings)
    # adds the dashboard routes and static files; it must import no ML library either.
    if importlib.util.find_spec("edgedistill.service.web") is None:
        return
    web = importlib.import_module("edgedistill.service.web")
    web.mount(app, settings)
