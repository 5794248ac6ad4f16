"""Server-sent events for one job, read from job_events (the worker writes them; any API replica can
serve the stream). Polls the database, resumes after Last-Event-ID, ends after a terminal status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgedistill.contracts.statuses import TERMINAL_STATUSES
from edgedistill.service.db.models import Job
from edgedistill.service.repos.events import list_events
from edgedistill.service.schemas.jobs import event_payload

BATCH = 500
KEEPALIVE_S = 15.0


def format_event(payload: dict[str, Any]) -> str:
    data = json.dumps(payload, separators=(",", ":"), default=str)  # one line: no "data:" splitting needed
    return f"id: {payload['id']}\nevent: {payload['kind']}\ndata: {data}\n\n"


# Event ids are 64-bit database integers; a cursor past this would overflow the query's parameter.
MAX_EVENT_ID = 2**63 - 1


def parse_last_event_id(value: str | None) -> int:
    """The id to resume after; 0 for a missing or non-numeric one (the spec lets a server ignore an id it
    did not issue); HTTP 400 for a number past any event id, which no server issued either."""
    text = (value or "").strip()
    if not text or not text.isdigit():
        return 0
    if len(text) > 19 or int(text) > MAX_EVENT_ID:
        raise HTTPException(400, f"Last-Event-ID is larger than any event id ({MAX_EVENT_ID})")
    return int(text)


def _poll(factory: sessionmaker[Session], job_id: str, after_id: int) -> tuple[str | None, list[dict[str, Any]]]:
    with factory() as session:
        # Status first: a terminal status is committed with its event, so the events read next include it.
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        events = [event_payload(e) for e in list_events(session, job_id=job_id, after_id=after_id, limit=BATCH)]
    return status, events


async def job_event_stream(
    request: Request, factory: sessionmaker[Session], job_id: str, *, after_id: int, poll_s: float
) -> AsyncIterator[str]:
    last_id = after_id
    quiet_s = 0.0
    yield "retry: 2000\n\n"
    while True:
        status, events = await anyio.to_thread.run_sync(_poll, factory, job_id, last_id)
        ended = status is None
        for payload in events:
            last_id = payload["id"]
            yield format_event(payload)
            if payload["kind"] == "status" and payload.get("status") in TERMINAL_STATUSES:
                ended = True
        if ended or (status in TERMINAL_STATUSES and len(events) < BATCH):
            return
        if len(events) == BATCH:
            continue  # more waiting: no sleep
        if await request.is_disconnected():
            return
        await anyio.sleep(poll_s)
        quiet_s = 0.0 if events else quiet_s + poll_s
        if quiet_s >= KEEPALIVE_S:
            quiet_s = 0.0
            yield ": keep-alive\n\n"  # proxies close idle connections
