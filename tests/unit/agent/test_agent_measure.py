"""measure_artifact against a fake service (httpx.MockTransport): what it downloads, refuses and posts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from agent_helpers import artifact_dict

from edgedistill.agent.api import DeviceApi
from edgedistill.agent.errors import IntegrityError
from edgedistill.agent.measure import BenchOptions, measure_artifact

# every test reads a real engine run (the session's mcu_run pipeline, ~14 s CPU)
pytestmark = pytest.mark.slow


class FakeService:
    def __init__(self, run: Any, kind: str, *, tamper: bool = False, verdict_ok: bool = True) -> None:
        self.files = {"a1": run.artifacts[kind].path.read_bytes(), "probe1": run.artifacts["probe"].path.read_bytes()}
        if tamper:
            self.files["a1"] = self.files["a1"][:-1] + bytes([self.files["a1"][-1] ^ 1])
        self.artifact = artifact_dict(run, kind)
        self.probe = {**artifact_dict(run, "probe", "probe1"), "kind": "probe"}
        self.requests: list[httpx.Request] = []
        self.posted: list[dict[str, Any]] = []
        self.verdict_ok = verdict_ok

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        if request.headers["authorization"] != "Bearer edd_test":
            return httpx.Response(401, json={"detail": "bad token"})
        if request.method == "POST" and path == "/artifacts/a1/measurements":
            body = json.loads(request.content)
            self.posted.append(body)
            return httpx.Response(201, json={**body, "id": "m1", "device_name": "pi"})
        if path.endswith("/download"):
            return httpx.Response(200, content=self.files[path.split("/")[2]])
        if path == "/artifacts/probe1":
            return httpx.Response(200, json=self.probe)
        if path == "/artifacts/a1":
            status = [{"measurement_id": "m1", "ok": self.verdict_ok, "reasons": [] if self.verdict_ok else ["x"]}]
            return httpx.Response(200, json={**self.artifact, "device_status": status})
        return httpx.Response(404, json={"detail": "not found"})


@pytest.mark.parametrize("kind", ["onnx_int8", "tflite_int8_full"])
def test_measures_and_posts(mcu_run: Any, kind: str) -> None:
    svc = FakeService(mcu_run, kind)
    with DeviceApi("http://svc", "edd_test", transport=httpx.MockTransport(svc)) as api:
        result = measure_artifact(api, svc.artifact, threads=1, options=BenchOptions(runs=7, warmup=2))
    [body] = svc.posted
    assert body["source"] == "device" and body["count"] == 7 and body["threads"] == 1
    assert body["agreement"] == 1.0 and body["max_abs_diff"] == 0.0
    assert body["p50_ms"] <= body["p90_ms"] <= body["p99_ms"] and body["peak_rss_bytes"] > 0
    assert "device_name" not in body  # the service names the device from its token
    extra = body["extra"]
    assert extra["reference"] == f"out_{kind}" and extra["probe_samples"] == 32
    assert extra["device"]["cores"] and extra["device"]["runtime"] == body["runtime"]
    if kind == "tflite_int8_full":
        assert body["runtime"] == "ai-edge-litert" and extra["input_quantization"]["dtype"] == "int8"
        assert extra["layout"] == "NHWC"
    else:
        assert body["runtime"] == "onnxruntime" and extra["input_quantization"] is None
    assert result.verdict == {"measurement_id": "m1", "ok": True, "reasons": []} and not result.failing
    assert "; ok" in result.summary()


def test_measures_an_executorch_program_where_executorch_is_installed(cpu_run: Any) -> None:
    svc = FakeService(cpu_run, "executorch_int8")
    with DeviceApi("http://svc", "edd_test", transport=httpx.MockTransport(svc)) as api:
        result = measure_artifact(api, svc.artifact, threads=1, options=BenchOptions(runs=5, warmup=1))
    [body] = svc.posted
    assert body["runtime"] == "executorch" and body["count"] == 5
    # the same program in the same runtime as the host's verification: the host's int8 outputs exactly
    assert body["agreement"] == 1.0 and body["max_abs_diff"] == 0.0
    assert body["extra"]["reference"] == "out_executorch_int8"
    assert not result.failing


def test_tampered_artifact_is_refused_before_anything_runs(mcu_run: Any) -> None:
    svc = FakeService(mcu_run, "onnx_int8", tamper=True)
    api = DeviceApi("http://svc", "edd_test", transport=httpx.MockTransport(svc))
    with api, pytest.raises(IntegrityError, match="sha256"):
        measure_artifact(api, svc.artifact, threads=1, options=BenchOptions(runs=3, warmup=0))
    assert svc.posted == []
    assert [r.url.path for r in svc.requests] == ["/api/v1/artifacts/a1/download"]  # not even the probe


def test_failing_verdict_is_reported(mcu_run: Any) -> None:
    svc = FakeService(mcu_run, "onnx_int8", verdict_ok=False)
    with DeviceApi("http://svc", "edd_test", transport=httpx.MockTransport(svc)) as api:
        result = measure_artifact(api, svc.artifact, threads=1, options=BenchOptions(runs=3, warmup=0))
    assert result.failing and "FAILING on this device: x" in result.summary()
