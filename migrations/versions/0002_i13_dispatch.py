"""fair dispatch: jobs.dispatched_at (when the dispatcher sent the job to the broker) and the indexes
the dispatcher and the per-tenant quotas query by

Revision ID: 0002_i13
Revises: 0002_i11_security
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_i13"
down_revision: str | None = "0002_i11_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs queued before this migration were sent to the broker at submit: count them as dispatched.
    op.execute("UPDATE jobs SET dispatched_at = created_at WHERE status = 'queued'")
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant_id", "status"], unique=False)
    op.create_index(
        "ix_latency_measurements_artifact_device", "latency_measurements", ["artifact_id", "device_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_latency_measurements_artifact_device", table_name="latency_measurements")
    op.drop_index("ix_jobs_tenant_status", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dispatched_at")
