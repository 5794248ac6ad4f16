"""Typed SQLAlchemy models. The schema itself is made only by the Alembic migrations in migrations/;
a test checks that the migrated schema and these models agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from edgedistill.contracts.events import JOB_EVENT_KINDS
from edgedistill.contracts.names import DEFAULT_QUEUE
from edgedistill.contracts.statuses import JOB_STATUSES, QUEUED
from edgedistill.service.db.base import Base, new_id, utcnow

MEASUREMENT_SOURCES = ("host", "device")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _created()
    # The tenant's own webhook signing secret (HMAC needs the plaintext); shown once when made or rotated.
    webhook_secret: Mapped[str | None] = mapped_column(String(128), default=None)
    webhook_secret_created_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # shown to users; finds the row
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the whole secret
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class TeacherModel(Base):
    __tablename__ = "teacher_models"
    __table_args__ = (Index("ix_teacher_models_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = _created()
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = _created()


class DeviceProfileRow(Base):
    """A tenant's custom device profile; spec is validated by workers.profiles.schema.DeviceProfile."""

    __tablename__ = "device_profiles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = _created()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
    )

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(ForeignKey("teacher_models.id", ondelete="RESTRICT"))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    profile_name: Mapped[str] = mapped_column(String(64))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)  # resolved snapshot at submit time
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # JobOptions with defaults filled in
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    queue: Mapped[str] = mapped_column(String(32), default=DEFAULT_QUEUE)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when the fair dispatcher sends the job to the broker; a queued job without it waits its turn.
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobEvent(Base):
    """One row per state change or progress report; the SSE stream sends id as the event id."""

    __tablename__ = "job_events"
    __table_args__ = (
        Index("ix_job_events_job_id_id", "job_id", "id"),
        CheckConstraint(_in("kind", JOB_EVENT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _created()


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "kind"),)  # a redelivered job never duplicates

    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = _created()


class LatencyMeasurement(Base):
    __tablename__ = "latency_measurements"
    __table_args__ = (
        Index("ix_latency_measurements_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_latency_measurements_artifact_device", "artifact_id", "device_id", "created_at"),
        CheckConstraint(_in("source", MEASUREMENT_SOURCES), name="source"),
    )

    id: Mapped[str] = _id()
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), default=None)
    device_name: Mapped[str] = mapped_column(String(255))
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    p50_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    p99_ms: Mapped[float] = mapped_column(Float)
    mean_ms: Mapped[float] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float, default=None)
    agreement: Mapped[float | None] = mapped_column(Float, default=None)
    max_abs_diff: Mapped[float | None] = mapped_column(Float, default=None)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _created()


class Device(Base):
    """A registered physical device whose on-device agent reports measurements with its own token."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    profile_name: Mapped[str] = mapped_column(String(64))
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    token_prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A dashboard login. The cookie holds a random token; only its sha256 is stored, so a session ends
    (logout, key revocation, expiry) by changing this row, and a cookie made by anyone else finds no row."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = _id()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


WEBHOOK_DELIVERY_STATES = ("pending", "delivered", "failed", "refused")


class WebhookDelivery(Base):
    """One webhook delivery of a job (all its attempts): the per-job delivery log the API shows."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_job_id_created", "job_id", "created_at"),
        CheckConstraint(_in("state", WEBHOOK_DELIVERY_STATES), name="state"),
    )

    id: Mapped[str] = _id()  # also the X-Edgedistill-Delivery header value
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    address: Mapped[str | None] = mapped_column(String(64), default=None)  # the IP actually connected to
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
