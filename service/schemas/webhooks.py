from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from edgedistill.service.db.models import WebhookDelivery
from edgedistill.service.webhooks import DEFAULT_TOLERANCE_S


class WebhookSecretCreated(BaseModel):
    secret: str = Field(description="The tenant's new webhook signing secret; shown only in this response")
    created_at: datetime
    scheme: str = Field(
        default=(
            "X-Edgedistill-Signature: v1=hex(HMAC-SHA256(secret, '<X-Edgedistill-Timestamp>.<X-Edgedistill-Delivery>.'"
            f" + body)); refuse timestamps more than {DEFAULT_TOLERANCE_S} s from now and delivery ids seen before"
        )
    )


class WebhookSecretState(BaseModel):
    configured: bool
    created_at: datetime | None


class WebhookDeliveryOut(BaseModel):
    id: str = Field(description="Also sent as X-Edgedistill-Delivery")
    job_id: str
    url: str
    event: str
    state: str = Field(description="pending | delivered | failed | refused (by the destination policy)")
    attempts: int
    status_code: int | None
    address: str | None = Field(description="The checked IP address the last attempt connected to")
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: WebhookDelivery) -> WebhookDeliveryOut:
        return cls(
            id=row.id,
            job_id=row.job_id,
            url=row.url,
            event=row.event,
            state=row.state,
            attempts=row.attempts,
            status_code=row.status_code,
            address=row.address,
            error=row.error,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
