"""Pipeline events -> database rows (job events, stage, progress, artifacts, measurements).

Every write goes through _write(), which retries briefly when the database is unavailable so a short
outage does not kill a job that has been training for an hour."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from edgedistill.contracts.events import PipelineEvent
from edgedistill.contracts.statuses import SUCCEEDED
from edgedistill.service.db.session import session_scope
from edgedistill.service.repos import artifacts as artifacts_repo
from edgedistill.service.repos import events as events_repo
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import measurements as measurements_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.repos.storage_refs import storage_key_in_use
from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore, key_for
from edgedistill.workers.steps.teacher_record import SIGNATURE_KEY, SOURCES

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_RETRIES = 6
CANCEL_POLL_S = 1.0


class JobRecorder:
    """worker_id: the claim this run holds. Its heartbeat and its outcome are written only while the job
    is still its own, so a worker that was given up on (and replaced) cannot overwrite the new run."""

    def __init__(self, job_id: str, settings: Settings, *, worker_id: str | None = None) -> None:
        self.job_id = job_id
        self.settings = settings
        self.worker_id = worker_id
        self.measurements: list[dict[str, Any]] = []
        self.curve: list[dict[str, Any]] = []
        self._cancel_checked_at = 0.0
        self._cancelled = False
        self.final_status: str | None = None

    def _write(self, fn: Callable[[Session], T]) -> T:
        delay = 0.5
        for attempt in range(DB_RETRIES):
            try:
                with session_scope(self.settings) as session:
                    return fn(session)
            except OperationalError:
                if attempt == DB_RETRIES - 1:
                    raise
                log.warning("database unavailable, retrying in %.1f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    # -- pipeline callbacks -------------------------------------------------------------------
    def on_event(self, ev: PipelineEvent) -> None:
        data = dict(ev.data)
        if ev.progress is not None:
            data["progress"] = ev.progress  # the SSE stream reads progress from the event's data
        if ev.kind == "artifact":
            # The file is still in the run's temp folder; only its description goes to the stream.
            data.pop("path", None)
        if ev.kind == "measurement":
            self.measurements.append(dict(ev.data))
        if ev.kind == "epoch":
            self.curve.append(data)

        def write(session: Session) -> None:
            events_repo.append_event(session, job_id=self.job_id, kind=ev.kind, stage=ev.stage, data=data)
            if isinstance(data.get(SIGNATURE_KEY), dict):
                self._record_teacher_signature(session, data[SIGNATURE_KEY])
            jobs_repo.update_progress(
                session,
                job_id=self.job_id,
                stage=ev.stage,
                progress=ev.progress,
                metrics={"training_curve": self.curve} if ev.kind == "epoch" else None,
            )

        self._write(write)

    def _record_teacher_signature(self, session: Session, signature: dict[str, Any]) -> None:
        """A torch teacher's signature, known once a job loaded it, onto its model row; a signature
        already recorded (read at upload, or by an earlier job) is kept."""
        job = jobs_repo.get_job_any_tenant(session, job_id=self.job_id)
        model = models_repo.get_model_any_tenant(session, model_id=job.model_id) if job is not None else None
        if model is not None and model.signature is None and model.format in SOURCES:
            models_repo.set_model_signature(session, model_id=model.id, signature=signature)

    def cancel_requested(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_checked_at >= CANCEL_POLL_S:
            self._cancel_checked_at = now
            self._cancelled = self._write(lambda s: jobs_repo.is_cancel_requested(s, job_id=self.job_id))
        return self._cancelled

    def heartbeat(self) -> None:
        try:
            self._write(lambda s: jobs_repo.heartbeat(s, job_id=self.job_id, worker_id=self.worker_id))
        except OperationalError:
            log.warning("heartbeat for job %s failed", self.job_id)

    # -- outcome ------------------------------------------------------------------------------
    def complete(self, result: Any, store: ArtifactStore) -> bool:
        """Upload every artifact, then in one transaction mark the job succeeded and record its artifacts
        and host measurements: a job is never visible with half of its artifacts, nor with artifacts
        but not succeeded. False (nothing recorded) when the job is no longer this worker's. When an
        upload or the transaction fails, the objects this call added to the store are removed again."""
        added: list[str] = []
        try:
            stored = []
            for kind, art in sorted(result.artifacts.items()):
                existed = store.exists(key_for(art.sha256))
                obj = store.put_file(art.path)
                if not existed:
                    added.append(obj.key)
                if obj.sha256 != art.sha256:
                    raise RuntimeError(f"artifact {kind} changed while uploading (sha256 mismatch)")
                stored.append((kind, art, obj))

            def write(session: Session) -> bool:
                if not jobs_repo.finish_job(
                    session, job_id=self.job_id, status=SUCCEEDED, report=result.report, worker_id=self.worker_id
                ):
                    return False
                ids: dict[str, str] = {}
                for kind, art, obj in stored:
                    row = artifacts_repo.upsert_artifact(
                        session,
                        job_id=self.job_id,
                        kind=kind,
                        filename=art.path.name,
                        size_bytes=obj.size,
                        sha256=obj.sha256,
                        storage_key=obj.key,
                        metadata=art.metadata,
                    )
                    ids[kind] = row.id
                measurements_repo.replace_host_measurements(
                    session,
                    job_id=self.job_id,
                    measurements=[
                        {**m, "artifact_id": ids[m["artifact_kind"]]}
                        for m in self.measurements
                        if m.get("artifact_kind") in ids
                    ],
                )
                return True

            owned = self._write(write)
        except BaseException:
            self._discard(store, added)
            raise
        if not owned:
            log.warning("job %s is no longer this worker's; its results are dropped", self.job_id)
            self._discard(store, added)
            return False
        self.final_status = SUCCEEDED
        return True

    def _discard(self, store: ArtifactStore, keys: list[str]) -> None:
        for key in keys:

            def in_use(session: Session, key: str = key) -> bool:
                return storage_key_in_use(session, key=key)

            try:
                if not self._write(in_use):
                    store.delete(key)
            except Exception:  # best effort: an orphan object is garbage, never visible
                log.warning("could not remove stored object %s of job %s", key, self.job_id, exc_info=True)

    def finish(self, status: str, *, error: str | None = None, report: dict[str, Any] | None = None) -> bool:
        """End the job; False when it had already ended or is no longer this worker's."""

        def write(session: Session) -> bool:
            return jobs_repo.finish_job(
                session, job_id=self.job_id, status=status, error=error, report=report, worker_id=self.worker_id
            )

        if not self._write(write):
            return False
        self.final_status = status
        return True

    def notify_webhook(self, url: str | None) -> threading.Thread | None:
        """Start the job's webhook delivery off this worker slot (workers.webhook_dispatch)."""
        if not url or self.final_status is None:
            return None
        from edgedistill.workers.webhook_dispatch import dispatch

        return dispatch(self.settings, self.job_id)
