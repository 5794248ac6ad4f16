"""Jobs: the live list, one job's page (timeline, curve, report, artifacts), cancel, downloads and the
cookie-authenticated event streams the pages listen to."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from edgedistill.contracts.statuses import JOB_STATUSES, SUCCEEDED, TERMINAL_STATUSES
from edgedistill.contracts.statuses import JobStatus as StatusFilter
from edgedistill.contracts.verdict import verdict_of
from edgedistill.service.api.deps import SessionDep, SessionFactoryDep, SettingsDep, StoreDep
from edgedistill.service.api.device_auth import Caller
from edgedistill.service.api.routes.artifacts import download_artifact
from edgedistill.service.api.sse import MAX_EVENT_ID, job_event_stream, parse_last_event_id
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Job
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.repos import usage as usage_repo
from edgedistill.service.repos.errors import InvalidCursor
from edgedistill.service.settings import Settings
from edgedistill.service.web import auth, jobview
from edgedistill.service.web.auth import StreamUserDep, UserDep
from edgedistill.service.web.errors import PageNotFound
from edgedistill.service.web.lifecycle import server_exiting
from edgedistill.service.web.templating import render, render_string

router = APIRouter(include_in_schema=False)

LIST_LIMIT = 50
LIST_STREAM_MAX_S = 300.0  # then the browser's EventSource reconnects: no connection lives forever
KEEPALIVE_S = 15.0
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class JobRow:
    job: Job
    model_name: str
    duration_s: float | None

    @property
    def active(self) -> bool:
        return self.job.status not in TERMINAL_STATUSES

    @property
    def quality(self) -> dict[str, Any] | None:
        return verdict_of(self.job.report) if self.job.status == SUCCEEDED else None


def job_rows(session: Session, jobs: list[Job], now: datetime | None = None) -> list[JobRow]:
    names: dict[str, str] = {}
    rows = []
    for job in jobs:
        if job.model_id not in names:
            model = models_repo.get_model_any_tenant(session, model_id=job.model_id)
            names[job.model_id] = model.name if model is not None and model.tenant_id == job.tenant_id else "-"
        rows.append(JobRow(job, names[job.model_id], jobview.duration_of(job, now)))
    return rows


@router.get("/ui/jobs")
def jobs_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    status_filter = status if status in JOB_STATUSES else None
    try:
        page = jobs_repo.list_jobs(
            session, tenant_id=user.tenant_id, status=status_filter, cursor=cursor or None, limit=LIST_LIMIT
        )
    except InvalidCursor:
        return RedirectResponse("/ui/jobs" + (f"?status={status_filter}" if status_filter else ""), status_code=303)
    return render(
        request,
        "jobs.html",
        {
            "title": "Jobs",
            "rows": job_rows(session, page.items, utcnow()),
            "status": status_filter,
            "statuses": JOB_STATUSES,
            "next_cursor": page.next_cursor,
            "paged": bool(cursor),
            "live": not cursor,
            "usage": usage_summary(session, user.tenant_id, request.app.state.settings),
        },
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def usage_summary(session: Session, tenant_id: str, settings: Settings) -> str:
    """The tenant's storage and job usage next to its limits (GET /api/v1/usage has the details)."""
    u = usage_repo.tenant_usage(session, tenant_id=tenant_id)
    stored = _size(u.stored_bytes)
    if settings.tenant_max_stored_bytes:
        stored += f" of {_size(settings.tenant_max_stored_bytes)}"
    active = f"{u.jobs_queued} queued, {u.jobs_running} running"
    if settings.tenant_max_active_jobs:
        active += f" (limit {settings.tenant_max_active_jobs})"
    return f"Storage used: {stored} · Jobs: {active}"


def _signature(row: JobRow) -> tuple[Any, ...]:
    j = row.job
    return (j.status, j.stage, round(j.progress or 0.0, 1), j.cancel_requested, j.started_at, j.finished_at)


def _poll_list(
    factory: sessionmaker[Session], tenant_id: str, status: str | None, sent: dict[str, tuple[Any, ...]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the list's first page that changed since the last poll (rendered), and ids that left it."""
    with factory() as session:
        page = jobs_repo.list_jobs(session, tenant_id=tenant_id, status=status, limit=LIST_LIMIT)
        rows = job_rows(session, page.items, utcnow())
    changed: list[dict[str, Any]] = []
    for row in rows:
        sig = _signature(row)
        if sent.get(row.job.id) != sig:
            sent[row.job.id] = sig
            html = render_string("_job_row.html", r=row)
            changed.append({"id": row.job.id, "status": row.job.status, "html": html, "index": 0})
    present = {row.job.id for row in rows}
    removed = [job_id for job_id in list(sent) if job_id not in present]
    for job_id in removed:
        del sent[job_id]
    order = [row.job.id for row in rows]
    for item in changed:
        item["index"] = order.index(item["id"])
    return changed, removed


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def jobs_list_stream(
    request: Request,
    factory: sessionmaker[Session],
    tenant_id: str,
    status: str | None,
    *,
    poll_s: float,
    max_s: float,
) -> AsyncIterator[str]:
    sent: dict[str, tuple[Any, ...]] = {}
    deadline = time.monotonic() + max_s
    quiet = 0.0
    yield "retry: 3000\n\n"
    while True:
        changed, removed = await anyio.to_thread.run_sync(_poll_list, factory, tenant_id, status, sent)
        for item in changed:
            yield _event("job", item)
        for job_id in removed:
            yield _event("remove", {"id": job_id})
        if time.monotonic() >= deadline or server_exiting() or await request.is_disconnected():
            return
        await anyio.sleep(poll_s)
        quiet = 0.0 if changed or removed else quiet + poll_s
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"


@router.get("/ui/jobs/events")
def jobs_events(
    request: Request,
    user: StreamUserDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    status: StatusFilter | None = None,
    max_s: float = Query(LIST_STREAM_MAX_S, gt=0, le=LIST_STREAM_MAX_S),
) -> Response:
    """Changes to the jobs list: `job` events carry a rendered table row, `remove` events an id that
    left the first page (or the status filter). Ends after max_s; EventSource reconnects by itself."""
    poll_s = max(0.25, 2 * settings.sse_poll_interval_s)
    stream = jobs_list_stream(request, factory, user.tenant_id, status, poll_s=poll_s, max_s=max_s)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)


def _job_or_404(session: Session, tenant_id: str, job_id: str) -> Job:
    job = jobs_repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise PageNotFound(f"There is no job {job_id} in your workspace.")
    return job


@router.get("/ui/jobs/{job_id}")
def job_page(job_id: str, request: Request, user: UserDep, session: SessionDep, settings: SettingsDep) -> Response:
    job = _job_or_404(session, user.tenant_id, job_id)
    view = jobview.build(session, tenant_id=user.tenant_id, job=job, settings=settings)
    return render(request, "job.html", {"title": f"Job {job.id[:8]}", "v": view, "cancelled": False})


@router.get("/ui/jobs/{job_id}/fragment")
def job_fragment(
    job_id: str, request: Request, user: StreamUserDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The job page's body, re-fetched by the page's script when the job's events say something changed."""
    job = jobs_repo.get_job(session, tenant_id=user.tenant_id, job_id=job_id)
    if job is None:
        return HTMLResponse("job not found", status_code=404)
    view = jobview.build(session, tenant_id=user.tenant_id, job=job, settings=settings)
    html = render_string(
        "_job_body.html", v=view, csrf_token=auth.csrf_token(request), csrf_field=auth.CSRF_FIELD, cancelled=False
    )
    response = HTMLResponse(html, headers={"Cache-Control": "no-store"})
    response.headers["X-Job-Status"] = job.status
    return auth.finish_response(request, response)


@router.post("/ui/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, user: UserDep, session: SessionDep) -> Response:
    form = await request.form()
    auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or ""))

    def cancel() -> Job | None:
        job = jobs_repo.request_cancel(session, tenant_id=user.tenant_id, job_id=job_id)
        session.commit()
        return job

    job = await anyio.to_thread.run_sync(cancel)
    if job is None:
        raise PageNotFound(f"There is no job {job_id} in your workspace.")
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.get("/ui/artifacts/{artifact_id}/download")
def download(
    artifact_id: str,
    user: StreamUserDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    range_header: str | None = Header(None, alias="Range"),
    if_none_match: str | None = Header(None, alias="If-None-Match"),
    if_range: str | None = Header(None, alias="If-Range"),
) -> Response:
    """The API's download (ETag, Range, streamed from the store), authenticated by the session cookie."""
    return download_artifact(
        artifact_id,
        Caller(tenant_id=user.tenant_id, principal=user.principal()),
        session,
        store,
        settings,
        range_header=range_header,
        if_none_match=if_none_match,
        if_range=if_range,
    )


@router.get("/ui/jobs/{job_id}/events")
def job_events(
    job_id: str,
    request: Request,
    user: StreamUserDep,
    session: SessionDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    after: int = Query(0, ge=0, le=MAX_EVENT_ID),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """The API's job event stream (same events, same ids) for a logged-in browser."""
    if jobs_repo.get_job(session, tenant_id=user.tenant_id, job_id=job_id) is None:
        return Response("job not found", status_code=404, media_type="text/plain")
    session.close()
    start = max(after, parse_last_event_id(last_event_id))
    stream = job_event_stream(request, factory, job_id, after_id=start, poll_s=settings.sse_poll_interval_s)
    return StreamingResponse(_until_shutdown(stream), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _until_shutdown(stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """End the stream when the server shuts down (checked at each message; an idle job stream still
    sends a keep-alive every 15 s). The browser reconnects to whichever server answers next."""
    async for chunk in stream:
        yield chunk
        if server_exiting():
            return
