"""JSON error handlers: every error answers {"detail": ...}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.repos.errors import Conflict, InvalidCursor, NotFound
from service.storage import ObjectNotFound

log = logging.getLogger(__name__)


def _json(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _db_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _json(503, "database unavailable, try again shortly", {"Retry-After": "5"})


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return _json(404, str(exc))


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return _json(409, str(exc))


async def _bad_cursor(_request: Request, exc: Exception) -> JSONResponse:
    return _json(422, str(exc))


async def _object_missing(request: Request, exc: Exception) -> JSONResponse:
    log.error("storage object %s missing for %s", exc, request.url.path)
    return _json(500, "the stored file is missing from the artifact store")


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _db_unavailable)
    app.add_exception_handler(PoolTimeout, _db_unavailable)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(InvalidCursor, _bad_cursor)
    app.add_exception_handler(ObjectNotFound, _object_missing)
    app.add_exception_handler(Exception, _internal)
