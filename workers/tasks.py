"""Celery tasks: thin wrappers. The work happens in workers.jobrunner (plain functions, testable)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from edgedistill.contracts.names import RUN_JOB_TASK

log = logging.getLogger(__name__)
_stop_maintenance = threading.Event()


def register(app: Celery) -> None:
    @app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(self: Task, job_id: str) -> str:
        from edgedistill.workers.jobrunner import execute_job

        worker_id = f"{self.request.hostname or 'worker'}:{os.getpid()}"
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        return execute_job(job_id, worker_id=worker_id, redelivered=redelivered)

    @worker_ready.connect(weak=False)
    def _on_ready(sender: Any = None, **_kw: Any) -> None:
        # Jobs the DB says are queued but the broker may have lost (Redis restart, enqueue failure
        # after commit) are sent again; a duplicate message is a no-op thanks to the job claim.
        from edgedistill.workers.maintenance import maintenance_loop

        _stop_maintenance.clear()
        threading.Thread(
            target=maintenance_loop, args=(app, _stop_maintenance), name="edgedistill-maintenance", daemon=True
        ).start()

    @worker_process_init.connect(weak=False)
    def _on_fork(**_kw: Any) -> None:
        # A forked pool process must not share the parent's database connections.
        from edgedistill.service.db.session import dispose_engines

        dispose_engines()

    @worker_shutdown.connect(weak=False)
    def _on_shutdown(**_kw: Any) -> None:
        _stop_maintenance.set()
