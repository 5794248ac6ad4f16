"""Names the API and the worker must spell alike: the Celery task that runs a job and its queues.

The API sends the task by name through a client-only Celery app (edgedistill.service.queue), so neither
side imports the other; both import these."""

from __future__ import annotations

from typing import Final

RUN_JOB_TASK: Final = "edgedistill.run_job"

COMPRESS_QUEUE: Final = "compress"  # every job unless it asks for CUDA
GPU_QUEUE: Final = "gpu"  # exists only where a GPU worker is deployed (EDGEDISTILL_GPU_QUEUE_ENABLED)
DEFAULT_QUEUE: Final = COMPRESS_QUEUE
QUEUES: Final = (COMPRESS_QUEUE, GPU_QUEUE)
