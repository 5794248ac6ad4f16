"""A job's statuses. The jobs table stores them as strings; the API, the dashboard, the worker and the
client's JobStatus all spell them from here. A job goes queued -> running -> one terminal status;
a queued job can also be cancelled before it runs."""

from __future__ import annotations

from typing import Final, Literal

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

JOB_STATUSES: Final[tuple[JobStatus, ...]] = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE_STATUSES: Final[tuple[JobStatus, ...]] = (QUEUED, RUNNING)
TERMINAL_STATUSES: Final[frozenset[JobStatus]] = frozenset({SUCCEEDED, FAILED, CANCELLED})
