"""JSON error handlers: every error answers {"detail": ...}."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from edgedistill.service.repos.errors import Conflict, InvalidCursor, NotFound
from edgedistill.service.storage import ObjectNotFound

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


def _json_safe(value: Any) -> Any:
    """NaN and infinities as strings: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each error's input; a NaN or Infinity sent in the JSON body (Python's
    # parser accepts them) would then make the 422 itself unserialisable, a 500.
    assert isinstance(exc, RequestValidationError)
    return _json(422, _json_safe(jsonable_encoder(exc.errors())))


def _documented_methods(request: Request) -> set[str]:
    """The methods the OpenAPI schema lists for this request's path."""
    app = request.app
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        paths = app.openapi().get("paths", {})
        table = [(compile_path(path)[0], {m.upper() for m in ops}) for path, ops in paths.items()]
        app.state.allow_table = table
    matching = [(regex, methods) for regex, methods in table if regex.match(request.url.path)]
    # A literal path (/devices/me) is its own resource even where a template (/devices/{id}) matches too.
    literal = [methods for regex, methods in matching if "(?P<" not in regex.pattern]
    return {m for methods in (literal or [methods for _, methods in matching]) for m in methods}


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's handler, but a 405 lists every method of the path in Allow: Starlette names only those
    of the first route whose path matched, and FastAPI makes one route per method."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and (allowed := _documented_methods(request)):
        headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        exc = StarletteHTTPException(405, exc.detail, headers=headers)
    return await http_exception_handler(request, exc)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(OperationalError, _db_unavailable)
    app.add_exception_handler(PoolTimeout, _db_unavailable)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(InvalidCursor, _bad_cursor)
    app.add_exception_handler(ObjectNotFound, _object_missing)
    app.add_exception_handler(Exception, _internal)
