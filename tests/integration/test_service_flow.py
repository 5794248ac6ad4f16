"""The service end to end with real parts: uvicorn, redis-server, a Celery worker process, SQLite and
PostgreSQL. A pipeline uploads a teacher, submits, follows SSE, downloads and runs the int8 model."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import LiveService

from edgedistill.client import Client, SseEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FAST = {"epochs": 20, "patience": 20, "benchmark_runs": 10, "benchmark_warmup": 2, "calibration_samples": 64}


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def webhook_receiver() -> Any:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.2", 0), _Receiver)  # allowlisted by the live fixture
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, _Receiver.received
    server.shutdown()


def test_submit_follow_sse_download_and_run(
    live: LiveService, teacher_and_data: tuple[Path, Path], tmp_path: Path, webhook_receiver: Any
) -> None:
    teacher, data = teacher_and_data
    server, received = webhook_receiver
    hook = f"http://127.0.0.2:{server.server_address[1]}/hook"
    events: list[SseEvent] = []
    secret = httpx.post(f"{live.url}/api/v1/webhook-secret", headers={"Authorization": f"Bearer {live.key_a}"})
    secret.raise_for_status()
    with Client(live.url, live.key_a) as client:
        job = client.submit(teacher, data=data, profile="cpu-x86", options=FAST, webhook_url=hook)
        assert job.status == "queued"
        job.wait(timeout=600, on_event=events.append)
        assert job.status == "succeeded", job.data
        paths = job.download(tmp_path / "out", kinds={"onnx_int8", "report"})
        report = job.report()

    kinds = [e.event for e in events]
    assert "epoch" in kinds and "artifact" in kinds
    stages = [e.data.get("stage") for e in events if e.event == "stage_started"]
    assert stages[:2] == ["load", "distill"] and "benchmark" in stages
    assert events[-1].event == "status" and events[-1].data.get("status") == "succeeded"

    # The downloaded int8 ONNX model runs and classifies digits like the report says.
    import onnxruntime as ort
    from factories import digits

    model = next(p for p in paths if p.suffix == ".onnx")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x, y = digits()
    logits = sess.run(None, {sess.get_inputs()[0].name: x[:300]})[0]
    assert float((np.argmax(logits, 1) == y[:300]).mean()) > 0.7
    assert report["metrics"]["onnx_int8"]["accuracy"] > 0.7

    # The webhook arrived once the job ended, signed with the tenant's own secret over
    # "<timestamp>.<delivery id>." + the exact body.
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.2)
    headers, body = received[0]
    payload = json.loads(body)
    assert payload["job"]["id"] == job.id and payload["job"]["status"] == "succeeded"
    # The quality verdict travels with it, the same as the job's JSON and report.json say.
    assert payload["job"]["quality"] == job.data["quality"] and isinstance(job.data["quality"]["met"], bool)
    assert job.data["quality"]["met"] is report["quality"]["met"] and job.data["quality"]["target"] == 0.97
    h = {k.lower(): v for k, v in headers.items()}
    signed = f"{h['x-edgedistill-timestamp']}.{h['x-edgedistill-delivery']}.".encode() + body
    expected = hmac.new(secret.json()["secret"].encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h["x-edgedistill-signature"], f"v1={expected}")


def test_cancel_running_job(live: LiveService, teacher_and_data: tuple[Path, Path]) -> None:
    teacher, data = teacher_and_data
    with Client(live.url, live.key_a) as client:
        job = client.submit(teacher, data=data, profile="cpu-x86", options={"epochs": 5000, "patience": 5000})
        saw_epoch = threading.Event()

        def on_event(ev: SseEvent) -> None:
            if ev.event == "epoch" and not saw_epoch.is_set():
                saw_epoch.set()
                job.cancel()

        job.wait(timeout=300, on_event=on_event, check=False)
        assert saw_epoch.is_set()
        assert job.status == "cancelled", job.data
        assert job.artifacts() == []


def test_idempotent_resubmit_and_tenant_isolation(live: LiveService, teacher_and_data: tuple[Path, Path]) -> None:
    teacher, data = teacher_and_data
    with Client(live.url, live.key_a) as a, Client(live.url, live.key_b) as b:
        model = a.upload_model(teacher)
        dataset = a.upload_dataset(data)
        first = a.submit(model["id"], data=dataset["id"], profile="cpu-x86", options=FAST, idempotency_key="k-1")
        again = a.submit(model["id"], data=dataset["id"], profile="cpu-x86", options=FAST, idempotency_key="k-1")
        assert again.id == first.id
        first.wait(timeout=600)
        artifact = first.artifacts()[0]

        for path in (
            f"/models/{model['id']}",
            f"/datasets/{dataset['id']}",
            f"/jobs/{first.id}",
            f"/jobs/{first.id}/artifacts",
            f"/jobs/{first.id}/report",
            f"/artifacts/{artifact['id']}",
            f"/artifacts/{artifact['id']}/download",
            f"/artifacts/{artifact['id']}/measurements",
        ):
            assert b.http.get(path).status_code == 404, path
            assert a.http.get(path).status_code == 200, path
        assert httpx.get(f"{live.url}/api/v1/jobs/{first.id}").status_code == 401
        # Tenant B cannot submit a job over tenant A's model either.
        resp = b.http.post(
            "/jobs", json={"model_id": model["id"], "dataset_id": dataset["id"], "device_profile": "cpu-x86"}
        )
        assert resp.status_code == 404
