"""Login and logout: an API key in, a server-side session (its random token in a cookie) out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from edgedistill.service.api.deps import SessionDep
from edgedistill.service.repos import api_keys
from edgedistill.service.web import auth
from edgedistill.service.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


def _login_page(request: Request, next_url: str, error: str | None = None, status_code: int = 200) -> Response:
    return render(
        request,
        "login.html",
        {
            "next_url": auth.safe_next(next_url),
            "error": error,
            "plain_http": auth.plain_http_warning(request),
            "title": "Log in",
        },
        status_code=status_code,
    )


@router.get("/ui/login")
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    if auth.user_from_request(request, session) is not None:
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return _login_page(request, next or "")


@router.post("/ui/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    next_url = str(form.get("next") or "")
    auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or ""))
    key = str(form.get("api_key") or "").strip()
    if not key:
        return _login_page(request, next_url, "Enter your API key.", 422)
    found = await run_in_threadpool(lambda: api_keys.authenticate(session, secret=key))
    if found is None:
        return _login_page(request, next_url, "That key is unknown or has been revoked.", 401)
    response = RedirectResponse(auth.safe_next(next_url), status_code=303)
    await run_in_threadpool(lambda: auth.set_session(request, response, session, found.key.id))
    await run_in_threadpool(session.commit)  # the session row and last_used_at
    return response


@router.post("/ui/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or ""))
    response = RedirectResponse("/ui/login", status_code=303)
    await run_in_threadpool(lambda: auth.clear_session(request, response, session))
    await run_in_threadpool(session.commit)
    return response
