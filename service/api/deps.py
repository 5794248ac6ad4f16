"""FastAPI dependencies. Everything comes from app.state, which create_app fills from its Settings,
so a test app never shares an engine, store or queue with another."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from edgedistill.service.api.ratelimit import Limiter
from edgedistill.service.queue import JobQueue
from edgedistill.service.repos import api_keys, devices
from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(request: Request) -> Iterator[Session]:
    session = get_sessionmaker(request)()
    try:
        yield session
    finally:
        session.close()  # uncommitted work is rolled back


def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


def get_rate_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.submit_limiter
    return limiter


def get_measurement_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.measurement_limiter
    return limiter


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
RateLimiterDep = Annotated[Limiter, Depends(get_rate_limiter)]
MeasurementLimiterDep = Annotated[Limiter, Depends(get_measurement_limiter)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant every query is scoped to, and the key (rate limits)."""

    tenant_id: str
    tenant_name: str
    key_id: str
    key_prefix: str


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="edgedistill"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


unauthorized = _unauthorized


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def get_principal(request: Request, session: SessionDep) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    auth = api_keys.authenticate(session, secret=token)
    if auth is None:
        if devices.authenticate_device(session, token=token) is not None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "a device token may only read its profile's artifacts and post measurements; use an API key",
            )
        raise _unauthorized("invalid or revoked API key", error="invalid_token")
    session.commit()  # last_used_at
    return Principal(
        tenant_id=auth.tenant.id, tenant_name=auth.tenant.name, key_id=auth.key.id, key_prefix=auth.key.prefix
    )


TenantDep = Annotated[Principal, Depends(get_principal)]
