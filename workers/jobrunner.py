"""Runs one job: claim it, fetch its inputs from the store, run the same run_pipeline() the CLI uses,
store its artifacts and record the outcome. Called by the Celery task; plain functions, no Celery."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgedistill.contracts.errors import Cancelled, PipelineError
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from edgedistill.contracts.statuses import CANCELLED, FAILED, RUNNING, SUCCEEDED, TERMINAL_STATUSES
from edgedistill.service.db.session import session_scope
from edgedistill.service.repos import datasets as datasets_repo
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.settings import Settings, get_settings
from edgedistill.service.storage import ArtifactStore, get_store
from edgedistill.workers.dispatching import dispatch_after_claim
from edgedistill.workers.persistence import JobRecorder

log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Touches jobs.heartbeat_at while the job runs so the reaper can tell a dead worker from a slow job."""

    def __init__(self, recorder: JobRecorder, interval_s: float) -> None:
        super().__init__(name="edgedistill-heartbeat", daemon=True)
        self.recorder, self.interval_s, self.stopped = recorder, interval_s, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.recorder.heartbeat()


def _fetch(store: ArtifactStore, key: str, target: Path) -> Path:
    with store.local_path(key) as src:
        shutil.copyfile(src, target)
    return target


MAX_ATTEMPTS = 3  # a job whose worker process died this many times is failed, not run again


def heartbeat_interval_s(settings: Settings) -> float:
    return max(1.0, settings.job_heartbeat_timeout_s / 6)


LIFELONG_KINDS = {"onnx_fp32": "student_fp32.onnx", "report": "report.json", "probe": "probe.npz"}


def _lifelong_inputs(session: Any, job: Any) -> dict[str, Any]:
    """options.init_from (an earlier job of the same tenant) and options.old_data (a dataset id) as
    storage keys of that job's ONNX student, report and probe, and of the dataset; or the reason why not."""
    from edgedistill.service.repos import artifacts as artifacts_repo

    options = job.options or {}
    earlier_id, old_id = options.get("init_from"), options.get("old_data")
    if not earlier_id:
        return {"lifelong_error": "options.old_data needs options.init_from"} if old_id else {}
    earlier = jobs_repo.get_job(session, tenant_id=job.tenant_id, job_id=str(earlier_id))
    if earlier is None:
        return {"lifelong_error": f"options.init_from: job {earlier_id} not found"}
    if earlier.status != SUCCEEDED:
        return {"lifelong_error": f"options.init_from: job {earlier_id} is {earlier.status}, not succeeded"}
    keys: dict[str, str | None] = {}
    for kind in LIFELONG_KINDS:
        art = artifacts_repo.get_job_artifact(session, job_id=earlier.id, kind=kind)
        keys[kind] = art.storage_key if art is not None else None
    if keys["onnx_fp32"] is None or keys["report"] is None:
        return {"lifelong_error": f"options.init_from: job {earlier_id} has no fp32 ONNX student or report"}
    old_key = None
    if old_id:
        old = datasets_repo.get_dataset(session, tenant_id=job.tenant_id, dataset_id=str(old_id))
        if old is None:
            return {"lifelong_error": f"options.old_data: dataset {old_id} not found"}
        old_key = old.storage_key
    return {"lifelong_keys": keys, "old_data_key": old_key}


def execute_job(job_id: str, *, worker_id: str, settings: Settings | None = None, redelivered: bool = False) -> str:
    """Returns what happened: succeeded | failed | cancelled | skipped:<why>.

    redelivered: the broker handed this message out before (Celery requeues the job of a pool process
    that died, reject_on_worker_lost; Redis restores unacked messages after the visibility timeout)."""
    settings = settings or get_settings()
    with session_scope(settings) as session:
        job = jobs_repo.get_job_any_tenant(session, job_id=job_id)
        if job is None:
            log.warning("job %s not in the database; dropping the message", job_id)
            return "skipped:missing"
        ended = job.status if job.status in TERMINAL_STATUSES else None
    if ended is not None:
        dispatch_after_claim(settings)  # e.g. cancelled while waiting in the broker: its slot is free
        return f"skipped:{ended}"
    with session_scope(settings) as session:
        claimed = jobs_repo.claim_job(
            session,
            job_id=job_id,
            worker_id=worker_id,
            stale_after_s=settings.job_heartbeat_timeout_s,
            max_attempts=MAX_ATTEMPTS,
        )
    if not claimed and redelivered:
        claimed = _take_over(job_id, worker_id, settings)
    if not claimed:
        return "skipped:claimed-elsewhere"
    dispatch_after_claim(settings)  # this job left the broker: its slot goes to the next tenant in turn
    with session_scope(settings) as session:
        job = jobs_repo.get_job_any_tenant(session, job_id=job_id)
        assert job is not None
        model = models_repo.get_model_any_tenant(session, model_id=job.model_id)
        dataset = datasets_repo.get_dataset_any_tenant(session, dataset_id=job.dataset_id) if job.dataset_id else None
        inputs: dict[str, Any] = {
            "model_key": model.storage_key if model else None,
            "dataset_key": dataset.storage_key if dataset else None,
            "profile": job.profile,
            "options": job.options,
            "webhook_url": job.webhook_url,
            **_lifelong_inputs(session, job),
        }

    recorder = JobRecorder(job_id, settings, worker_id=worker_id)
    heartbeat = _Heartbeat(recorder, interval_s=heartbeat_interval_s(settings))
    heartbeat.start()
    store = get_store(settings)
    try:
        status, error = _run(job_id, inputs, recorder, store)
    finally:
        heartbeat.stopped.set()
    recorder.notify_webhook(inputs["webhook_url"])
    return status if error is None else f"{status}: {error}"


def _take_over(job_id: str, worker_id: str, settings: Settings) -> bool:
    """A redelivered job still marked running: its previous worker normally died (Celery requeues only
    the job of a lost pool process), but its last heartbeat is still fresh. Wait until that heartbeat
    has stopped for a few intervals, then run the job again, well before the reaper (which waits the
    whole job_heartbeat_timeout_s) would fail it. A heartbeat that moves means its worker is alive:
    the message is dropped. After MAX_ATTEMPTS the job is failed with the reason instead."""
    interval = heartbeat_interval_s(settings)
    stale_after = 2.5 * interval
    deadline = time.monotonic() + settings.job_heartbeat_timeout_s
    seen: object = None
    while time.monotonic() < deadline:
        with session_scope(settings) as session:
            job = jobs_repo.get_job_any_tenant(session, job_id=job_id)
            if job is None or job.status != RUNNING:
                return False
            if seen is not None and job.heartbeat_at != seen:
                return False  # its worker is alive
            seen = job.heartbeat_at
            if job.attempts >= MAX_ATTEMPTS:
                if jobs_repo.is_stale(session, job_id=job_id, stale_after_s=stale_after):
                    reason = (
                        f"the worker process running this job died {job.attempts} times "
                        "(killed, or crashed by the job itself, e.g. out of memory); not retried again"
                    )
                    jobs_repo.finish_job(session, job_id=job_id, status=FAILED, error=reason)
                    return False
            else:
                attempt = job.attempts + 1
                if jobs_repo.claim_job(
                    session, job_id=job_id, worker_id=worker_id, stale_after_s=stale_after, max_attempts=MAX_ATTEMPTS
                ):
                    log.warning("job %s: took over from a worker that stopped (attempt %d)", job_id, attempt)
                    return True
        time.sleep(interval / 2)
    return False


def _run(job_id: str, inputs: dict[str, Any], recorder: JobRecorder, store: ArtifactStore) -> tuple[str, str | None]:
    from celery.exceptions import SoftTimeLimitExceeded

    from edgedistill.workers.pipeline.runner import run_pipeline

    try:
        if inputs["model_key"] is None:
            raise PipelineError("the job's teacher model was deleted before the job ran", stage="load")
        with tempfile.TemporaryDirectory(prefix=f"edgedistill-{job_id[:8]}-") as tmp:
            tmp_path = Path(tmp)
            teacher = _fetch(store, inputs["model_key"], tmp_path / "teacher.bin")
            data = _fetch(store, inputs["dataset_key"], tmp_path / "data.npz") if inputs["dataset_key"] else None
            if inputs.get("lifelong_error"):
                raise PipelineError(inputs["lifelong_error"], stage="load")
            earlier: dict[str, Path | None] = {}
            if inputs.get("lifelong_keys"):
                earlier_dir = tmp_path / "earlier"
                earlier_dir.mkdir()
                for kind, name in LIFELONG_KINDS.items():
                    key = inputs["lifelong_keys"].get(kind)
                    earlier[kind] = _fetch(store, key, earlier_dir / name) if key else None
                if inputs.get("old_data_key"):
                    earlier["probe"] = _fetch(store, inputs["old_data_key"], earlier_dir / "old_data.npz")
            spec = PipelineSpec(
                teacher_path=teacher,
                data_path=data,
                profile=DeviceProfile.model_validate(inputs["profile"]),
                options=JobOptions.model_validate(inputs["options"]),
                out_dir=tmp_path / "out",
                init_from_path=earlier.get("onnx_fp32"),
                init_from_report=earlier.get("report"),
                old_data_path=earlier.get("probe"),
            )
            result = run_pipeline(spec, on_event=recorder.on_event, should_cancel=recorder.cancel_requested)
            try:
                owned = recorder.complete(result, store)
            except OSError as exc:  # disk full, store unreachable: nothing of it is kept (complete cleans up)
                raise PipelineError(f"storing the job's artifacts failed: {exc}") from exc
        if not owned:
            return "skipped:taken-over", "another worker took the job over"
        return SUCCEEDED, None
    except Cancelled:
        recorder.finish(CANCELLED, error="cancelled by user")
        return CANCELLED, None
    except PipelineError as exc:
        reason = str(exc)
        recorder.finish(FAILED, error=reason)
        return FAILED, reason
    except SoftTimeLimitExceeded:
        reason = "the job ran past its time limit and was stopped"
        recorder.finish(FAILED, error=reason)
        return FAILED, reason
    except Exception as exc:  # an engine bug must still end the job with a reason, never leave it running
        log.exception("job %s crashed", job_id)
        reason = f"internal error: {type(exc).__name__}: {exc}"
        recorder.finish(FAILED, error=reason)
        return FAILED, reason
