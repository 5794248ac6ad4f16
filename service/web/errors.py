"""The dashboard's own exceptions and their HTML answers. Registered for these classes only, so the
API's JSON errors are untouched."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from edgedistill.service.web import auth
from edgedistill.service.web.templating import render


class PageNotFound(Exception):
    """A page for something the tenant does not have (or that does not exist): a 404 page."""


async def _page_not_found(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {"title": "Not found", "code": 404, "message": str(exc)}, status_code=404)


async def _login_required(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.LoginRequired)
    return RedirectResponse(auth.login_url(exc.next_url), status_code=303)


async def _not_authenticated(_request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc), status_code=401)


async def _csrf(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {"title": "Form expired", "code": 403, "message": str(exc)}, status_code=403)


def install(app: FastAPI) -> None:
    app.add_exception_handler(PageNotFound, _page_not_found)
    app.add_exception_handler(auth.LoginRequired, _login_required)
    app.add_exception_handler(auth.NotAuthenticated, _not_authenticated)
    app.add_exception_handler(auth.CsrfError, _csrf)
