"""Compression jobs: submit, list, inspect, cancel, follow (SSE), report."""

from __future__ import annotations

import contextlib
import logging
import math

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from edgedistill.contracts.report import read_report
from edgedistill.contracts.statuses import CANCELLED, TERMINAL_STATUSES, JobStatus
from edgedistill.service.api import quotas
from edgedistill.service.api.deps import (
    QueueDep,
    RateLimiterDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StoreDep,
    TenantDep,
)
from edgedistill.service.api.routes.webhooks import webhook_url_problem
from edgedistill.service.api.sse import MAX_EVENT_ID, job_event_stream, parse_last_event_id
from edgedistill.service.api.teacher_checks import check_job_against_teacher
from edgedistill.service.comparison import job_devices_section, thresholds_from
from edgedistill.service.db.base import utcnow
from edgedistill.service.dispatch import dispatch
from edgedistill.service.queue import JobQueue, choose_queue
from edgedistill.service.repos import datasets, jobs, lifecycle, models, profiles
from edgedistill.service.schemas.common import Page
from edgedistill.service.schemas.jobs import JobCreate, JobOut
from edgedistill.service.schemas.report import JobReportOut
from edgedistill.service.settings import Settings

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)


def _field_error(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": "value_error"}])


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses={
        200: {"description": "an earlier job with the same Idempotency-Key"},
        404: {"description": "model or dataset not found"},
        409: {"description": "Idempotency-Key reused with a different request"},
        422: {"description": "invalid request, or the data / options do not fit the teacher (one entry each)"},
        429: {"description": "submit rate limit, or the tenant's limit of queued + running jobs"},
    },
)
def submit_job(
    body: JobCreate,
    response: Response,
    principal: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    limiter: RateLimiterDep,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1, max_length=255),
) -> JobOut:
    wait = limiter.check(principal.key_id)
    if wait is not None:
        retry = str(max(1, math.ceil(wait)))
        raise HTTPException(
            429,
            f"submit rate limit of {settings.submit_rate_limit_per_minute} jobs per minute reached; retry in {retry} s",
            headers={"Retry-After": retry},
        )
    tenant = principal.tenant_id
    quotas.check_job_quota(session, tenant_id=tenant, settings=settings)
    model = models.get_model(session, tenant_id=tenant, model_id=body.model_id)
    if model is None:
        raise HTTPException(404, f"model {body.model_id} not found")
    dataset = None
    if body.dataset_id is not None:
        dataset = datasets.get_dataset(session, tenant_id=tenant, dataset_id=body.dataset_id)
        if dataset is None:
            raise HTTPException(404, f"dataset {body.dataset_id} not found")
    # Options that name an earlier job or a data set resolve inside the caller's tenant only.
    init_from = getattr(body.options, "init_from", None)
    if init_from is not None and jobs.get_job(session, tenant_id=tenant, job_id=init_from) is None:
        raise HTTPException(404, f"job {init_from} not found (options.init_from)")
    old_data = getattr(body.options, "old_data", None)
    if old_data is not None and datasets.get_dataset(session, tenant_id=tenant, dataset_id=old_data) is None:
        raise HTTPException(404, f"dataset {old_data} not found (options.old_data)")
    resolved = profiles.resolve_profile(session, tenant_id=tenant, name=body.device_profile)
    if resolved is None:
        raise _field_error(
            ("device_profile",),
            f"unknown device profile {body.device_profile!r}; GET /api/v1/device-profiles lists the available ones",
        )
    if body.webhook_url is not None:
        problem = webhook_url_problem(session, settings, tenant_id=tenant, url=str(body.webhook_url))
        if problem is not None:
            raise _field_error(("webhook_url",), problem)
    try:
        queue_name = choose_queue(body.options.device, settings)
    except ValueError as exc:
        raise _field_error(("options", "device"), str(exc)) from exc
    check_job_against_teacher(model, dataset, body.options)  # 422 naming each teacher/data mismatch

    job, created = jobs.create_job(
        session,
        tenant_id=tenant,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        profile_name=body.device_profile,
        profile=resolved[0].as_yaml_dict(),
        options=body.options.model_dump(mode="json"),
        queue=queue_name,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        idempotency_key=idempotency_key,
    )
    session.commit()
    if created:
        _dispatch_waiting(session, queue, settings)
    else:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.from_row(job, now=utcnow())


def _dispatch_waiting(session: Session, queue: JobQueue, settings: Settings) -> None:
    """The job waits in the database; the fair dispatcher sends it (or another tenant's) when its queue
    has a free slot. A broker that is down leaves it waiting: the workers' maintenance round sends it."""
    try:
        dispatch(lambda: contextlib.nullcontext(session), queue, settings)  # the submit's session, committed
    except Exception:  # the job is committed; a failed dispatch must not fail the submit
        log.exception("dispatch after submit failed; the maintenance round will send the job")


@router.get("/jobs", response_model=Page[JobOut])
def list_jobs(
    principal: TenantDep,
    session: SessionDep,
    status: JobStatus | None = None,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> Page[JobOut]:
    page = jobs.list_jobs(session, tenant_id=principal.tenant_id, status=status, cursor=cursor, limit=limit)
    now = utcnow()
    return Page(items=[JobOut.from_row(j, now=now) for j in page.items], next_cursor=page.next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, principal: TenantDep, session: SessionDep) -> JobOut:
    job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    return JobOut.from_row(job, now=utcnow())


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses={409: {"description": "job already ended"}})
def cancel_job(job_id: str, principal: TenantDep, session: SessionDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next epoch or step."""
    job = jobs.request_cancel(session, tenant_id=principal.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    if job.status in TERMINAL_STATUSES and job.status != CANCELLED:
        raise HTTPException(409, f"job {job_id} already {job.status}; nothing to cancel")
    session.commit()
    return JobOut.from_row(job, now=utcnow())


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
def job_events(
    job_id: str,
    request: Request,
    principal: TenantDep,
    session: SessionDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    after: int | None = Query(
        None, ge=0, le=MAX_EVENT_ID, description="Resume after this event id (or send Last-Event-ID)"
    ),
) -> StreamingResponse:
    """Events in order: status (queued, running, succeeded/failed/cancelled), stage_started/finished,
    progress, epoch, artifact, measurement, warning. The stream ends after the terminal status."""
    if jobs.get_job(session, tenant_id=principal.tenant_id, job_id=job_id) is None:
        raise HTTPException(404, f"job {job_id} not found")
    session.close()  # hold no connection for the life of the stream
    start = after if after is not None else parse_last_event_id(last_event_id)
    stream = job_event_stream(request, factory, job_id, after_id=start, poll_s=settings.sse_poll_interval_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get(
    "/jobs/{job_id}/report",
    response_model=JobReportOut,
    response_model_exclude_unset=True,  # the keys the engine wrote, as in report.json
    responses={404: {"description": "no such job, or no report yet"}},
)
def get_report(job_id: str, principal: TenantDep, session: SessionDep, settings: SettingsDep) -> JobReportOut:
    """The pipeline's report (report.json, schema_version in it) plus a `devices` section (host vs each
    registered device, merged when read)."""
    job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    if job.report is None:
        raise HTTPException(404, f"job {job_id} has no report yet (status: {job.status})")
    report = read_report(job.report)
    devices = job_devices_section(session, job=job, thresholds=thresholds_from(settings), report=report)
    return JobReportOut.of(report, devices)


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    responses={409: {"description": "the job is queued or running, or an active job continues from it"}},
)
def delete_job(job_id: str, principal: TenantDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete an ended job with its artifacts, measurements and events; store objects nothing else
    references are removed."""
    keys = lifecycle.delete_job(session, tenant_id=principal.tenant_id, job_id=job_id)
    session.commit()
    lifecycle.release_objects(session, store, keys)
    return Response(status_code=204)
