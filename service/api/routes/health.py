"""Liveness and readiness (no auth): /healthz says the process is up, /readyz that the database and
the broker answer."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from edgedistill.service.queue import JobQueue
from edgedistill.service.schemas.health import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    return HealthOut(status="ok")


def _check_db(request: Request) -> None:
    with request.app.state.sessionmaker() as session:
        session.execute(text("SELECT 1"))


async def _probe(fn: object, timeout: float, *args: object) -> str:
    try:
        with anyio.fail_after(timeout):
            await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)  # type: ignore[arg-type]
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return "ok"


@router.get("/readyz", response_model=ReadyOut, responses={503: {"description": "database or broker unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    timeout: float = request.app.state.settings.broker_ping_timeout_s
    queue: JobQueue = request.app.state.queue
    database = await _probe(_check_db, max(timeout, 5.0), request)
    broker = await _probe(queue.ping, timeout + 0.5, timeout)
    body = ReadyOut(status="ready" if database == broker == "ok" else "not ready", database=database, broker=broker)
    if body.status == "ready":
        return JSONResponse(body.model_dump())
    failing = "; ".join(
        f"{name}: {state}" for name, state in (("database", database), ("broker", broker)) if state != "ok"
    )
    return JSONResponse({"detail": f"not ready: {failing}", **body.model_dump()}, status_code=503)
