"""Devices (issue 5): registration and tokens, what a device token may and may not do, verdicts on
artifacts from device measurements, and the host vs device comparison."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.db.models import Device
from edgedistill.service.repos import artifacts as artifacts_repo
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import measurements as measurements_repo

D = "/api/v1/devices"
A = "/api/v1/artifacts"

M: dict[str, Any] = {
    "source": "device",
    "runtime": "onnxruntime",
    "runtime_version": "1.31.1",
    "threads": 4,
    "count": 100,
    "p50_ms": 2.0,
    "p90_ms": 2.5,
    "p99_ms": 3.0,
    "mean_ms": 2.1,
    "agreement": 1.0,
    "max_abs_diff": 0.0,
}
HOST: dict[str, Any] = {**M, "source": "host", "device_name": "host", "p50_ms": 0.5, "p90_ms": 0.6, "p99_ms": 0.7}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def register(client: TestClient) -> Callable[..., dict[str, Any]]:
    def do(caller: Any, name: str = "pi5", profile: str = "cpu-x86", **hardware: Any) -> dict[str, Any]:
        r = client.post(D, json={"name": name, "profile": profile, "hardware": hardware}, headers=caller.headers)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    return do


@pytest.fixture
def finished_job(app: FastAPI, submit: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, str]]:
    """A succeeded job with an onnx_int8 artifact (a real stored file), a probe and a host measurement."""

    def make(caller: Any, profile: str = "cpu-x86", report: dict[str, Any] | None = None) -> dict[str, str]:
        job = submit(caller, device_profile=profile)
        store = app.state.store
        ids: dict[str, str] = {"job": job["id"]}
        with app.state.sessionmaker() as s:
            jobs_repo.claim_job(s, job_id=job["id"], worker_id="w")
            files = (("onnx_int8", b"model-bytes-" + job["id"].encode()), ("probe", b"probe"), ("report", b"{}"))
            for kind, data in files:
                obj = store.put_stream(iter([data]))
                row = artifacts_repo.upsert_artifact(
                    s,
                    job_id=job["id"],
                    kind=kind,
                    filename=f"{kind}.bin",
                    size_bytes=obj.size,
                    sha256=obj.sha256,
                    storage_key=obj.key,
                    metadata={"signature": {"layout": "NCHW"}},
                )
                ids[kind] = row.id
            measurements_repo.create_measurement(s, artifact_id=ids["onnx_int8"], tenant_id=caller.tenant_id, **HOST)
            jobs_repo.finish_job(
                s, job_id=job["id"], status="succeeded", report=report or {"data": {"task": "classification"}}
            )
            s.commit()
        return ids

    return make


# --------------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------------


def test_register_returns_the_token_once_and_stores_only_its_hash(
    client: TestClient, alice: Any, register: Any, db: Any
) -> None:
    dev = register(alice, board="Raspberry Pi 5", ram_gb=8)
    token = dev["token"]
    assert token.startswith("edd_") and dev["token_prefix"] == token[:12]
    assert dev["profile"] == "cpu-x86" and dev["hardware"] == {"board": "Raspberry Pi 5", "ram_gb": 8}
    row = db.get(Device, dev["id"])
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in str(vars(row))
    listed = client.get(D, headers=alice.headers).json()
    assert [d["id"] for d in listed] == [dev["id"]] and "token" not in listed[0]
    one = client.get(f"{D}/{dev['id']}", headers=alice.headers).json()
    assert one["name"] == "pi5" and "token" not in one


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "x", "profile": "no-such-profile"}, 422, "unknown device profile"),
        ({"name": "", "profile": "cpu-x86"}, 422, "name"),
        ({"name": "x", "profile": "cpu-x86", "hardware": {"blob": "a" * 20000}}, 422, "16384 bytes"),
        ({"name": "x", "profile": "cpu-x86", "token": "mine"}, 422, "token"),
    ],
)
def test_bad_registrations_are_4xx(
    client: TestClient, alice: Any, body: dict[str, Any], status: int, words: str
) -> None:
    r = client.post(D, json=body, headers=alice.headers)
    assert r.status_code == status and words in r.text


def test_duplicate_name_is_409_and_other_tenants_do_not_see_devices(
    client: TestClient, alice: Any, bob: Any, register: Any
) -> None:
    dev = register(alice)
    assert client.post(D, json={"name": "pi5", "profile": "cpu-x86"}, headers=alice.headers).status_code == 409
    register(bob)  # names are per tenant
    assert client.get(f"{D}/{dev['id']}", headers=bob.headers).status_code == 404
    assert client.delete(f"{D}/{dev['id']}", headers=bob.headers).status_code == 404
    assert [d["name"] for d in client.get(D, headers=bob.headers).json()] == ["pi5"]


def test_revoked_token_is_401(client: TestClient, alice: Any, register: Any) -> None:
    dev = register(alice)
    assert client.get(f"{D}/me", headers=bearer(dev["token"])).status_code == 200
    r = client.delete(f"{D}/{dev['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.get(f"{D}/me", headers=bearer(dev["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


# --------------------------------------------------------------------------------------------------
# what a device token may do
# --------------------------------------------------------------------------------------------------


def test_device_token_is_403_outside_its_endpoints(
    client: TestClient, alice: Any, register: Any, finished_job: Any
) -> None:
    ids = finished_job(alice)
    headers = bearer(register(alice)["token"])
    for method, path in [
        ("GET", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{ids['job']}/report"),
        ("GET", f"/api/v1/jobs/{ids['job']}/artifacts"),
        ("GET", D),
        ("POST", D),
        ("GET", "/api/v1/models"),
        ("GET", f"{A}/{ids['onnx_int8']}/measurements"),
        ("GET", "/api/v1/measurements"),
    ]:
        r = client.request(method, path, headers=headers, json={"name": "x", "profile": "cpu-x86"})
        assert r.status_code == 403, (method, path, r.text)
        assert "device token" in r.json()["detail"]
    # ...and a tenant key on the device-only endpoints
    assert client.get(f"{D}/me", headers=alice.headers).status_code == 403
    assert client.get(f"{D}/me/artifacts", headers=alice.headers).status_code == 403


def test_device_reads_and_downloads_its_profiles_artifacts_only(
    client: TestClient, alice: Any, bob: Any, register: Any, finished_job: Any
) -> None:
    mine = finished_job(alice)
    other_profile = finished_job(alice, profile="mobile-arm64")
    other_tenant = finished_job(bob)
    headers = bearer(register(alice)["token"])

    art = client.get(f"{A}/{mine['onnx_int8']}", headers=headers)
    assert art.status_code == 200 and art.json()["kind"] == "onnx_int8"
    dl = client.get(f"{A}/{mine['onnx_int8']}/download", headers=headers)
    assert dl.status_code == 200 and dl.content == b"model-bytes-" + mine["job"].encode()
    assert dl.headers["etag"] == f'"{art.json()["sha256"]}"'
    for ids in (other_profile, other_tenant):
        for suffix in ("", "/download"):
            r = client.get(f"{A}/{ids['onnx_int8']}{suffix}", headers=headers)
            assert r.status_code == 404, suffix
        r = client.post(f"{A}/{ids['onnx_int8']}/measurements", json=M, headers=headers)
        assert r.status_code == 404
    # runnable artifacts and probes only: the job's report (and summary, ...) stay with API keys
    assert client.get(f"{A}/{mine['probe']}/download", headers=headers).status_code == 200
    for suffix in ("", "/download"):
        assert client.get(f"{A}/{mine['report']}{suffix}", headers=headers).status_code == 404
    # the API key keeps working everywhere as before
    assert client.get(f"{A}/{other_profile['onnx_int8']}/download", headers=alice.headers).status_code == 200
    assert client.get(f"{A}/{mine['report']}/download", headers=alice.headers).status_code == 200


def test_me_and_pending_artifacts(
    client: TestClient, alice: Any, register: Any, finished_job: Any, submit: Any
) -> None:
    dev = register(alice)
    headers = bearer(dev["token"])
    me = client.get(f"{D}/me", headers=headers).json()
    assert me["id"] == dev["id"] and me["threads"] == 4 and me["device_class"] == "cpu" and "token" not in me
    ids = finished_job(alice)
    submit(alice)  # a queued job: nothing to measure yet
    listed = client.get(f"{D}/me/artifacts", params={"pending": "true"}, headers=headers).json()
    assert [a["id"] for a in listed] == [ids["onnx_int8"]]  # probe is not runnable; queued job has none
    assert listed[0]["probe_artifact_id"] == ids["probe"] and listed[0]["task"] == "classification"
    assert listed[0]["measured"] is False

    assert client.post(f"{A}/{ids['onnx_int8']}/measurements", json=M, headers=headers).status_code == 201
    assert client.get(f"{D}/me/artifacts", params={"pending": "true"}, headers=headers).json() == []
    again = client.get(f"{D}/me/artifacts", headers=headers).json()
    assert again[0]["measured"] is True and again[0]["device_status"][0]["ok"] is True
    r = client.get(f"{D}/me/artifacts", params={"kind": "probe"}, headers=headers)
    assert r.status_code == 422 and "not runnable" in r.json()["detail"]


def test_device_posts_as_itself(client: TestClient, alice: Any, register: Any, finished_job: Any) -> None:
    ids = finished_job(alice)
    dev = register(alice)
    headers = bearer(dev["token"])
    r = client.post(f"{A}/{ids['onnx_int8']}/measurements", json={**M, "device_name": "spoofed"}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["device_id"] == dev["id"] and r.json()["device_name"] == "pi5"
    r = client.post(f"{A}/{ids['onnx_int8']}/measurements", json={**M, "source": "host"}, headers=headers)
    assert r.status_code == 403 and "source 'device'" in r.json()["detail"]
    # an API key still has to name the device
    r = client.post(f"{A}/{ids['onnx_int8']}/measurements", json=M, headers=alice.headers)
    assert r.status_code == 422 and "device_name" in r.text


# --------------------------------------------------------------------------------------------------
# verdicts and comparison
# --------------------------------------------------------------------------------------------------


def test_disagreement_marks_the_artifact_failing_on_that_device(
    client: TestClient, alice: Any, register: Any, finished_job: Any
) -> None:
    ids = finished_job(alice)
    good, bad = register(alice, name="good"), register(alice, name="bad")
    art = f"{A}/{ids['onnx_int8']}"
    client.post(f"{art}/measurements", json=M, headers=bearer(good["token"]))
    bad_m = {**M, "agreement": 0.5, "max_abs_diff": 3.0, "extra": {"reference_max_abs": 4.0}}
    client.post(f"{art}/measurements", json=bad_m, headers=bearer(bad["token"]))

    status = {s["device"]: s for s in client.get(art, headers=alice.headers).json()["device_status"]}
    assert status["good"]["ok"] is True and status["good"]["reasons"] == []
    assert status["bad"]["ok"] is False
    assert any("agreement" in r for r in status["bad"]["reasons"])
    assert any("largest host output" in r for r in status["bad"]["reasons"])
    # a device sees its own verdict only
    own = client.get(art, headers=bearer(bad["token"])).json()["device_status"]
    assert [s["device"] for s in own] == ["bad"]

    comp = client.get(f"{art}/measurements", headers=alice.headers).json()
    assert comp["failing_on"] == ["bad"] and comp["host"]["p50_ms"] == 0.5
    by_name = {d["device"]: d for d in comp["devices"]}
    assert by_name["good"]["latency_ratio"] == pytest.approx(4.0)  # 2.0 ms / 0.5 ms
    assert by_name["good"]["meets_target"] is None  # cpu-x86 has no latency target
    assert len(comp["measurements"]) == 3

    report = client.get(f"/api/v1/jobs/{ids['job']}/report", headers=alice.headers).json()
    assert report["data"] == {"task": "classification"}  # the stored report is kept
    assert report["devices"]["failing"] == [{"kind": "onnx_int8", "device": "bad", "reasons": status["bad"]["reasons"]}]
    assert {d["device"] for d in report["devices"]["artifacts"]["onnx_int8"]["devices"]} == {"good", "bad"}

    # a later good measurement from the same device clears it (the latest one counts)
    client.post(f"{art}/measurements", json=M, headers=bearer(bad["token"]))
    assert client.get(f"{art}/measurements", headers=alice.headers).json()["failing_on"] == []


def test_max_abs_diff_alone_can_fail_a_regression_model(
    client: TestClient, alice: Any, register: Any, finished_job: Any
) -> None:
    ids = finished_job(alice)
    headers = bearer(register(alice)["token"])
    off = {**M, "agreement": None, "max_abs_diff": 0.5, "extra": {"reference_max_abs": 1.0}}
    client.post(f"{A}/{ids['onnx_int8']}/measurements", json=off, headers=headers)
    assert client.get(f"{A}/{ids['onnx_int8']}", headers=headers).json()["device_status"][0]["ok"] is False
    close = {**off, "max_abs_diff": 0.01}
    client.post(f"{A}/{ids['onnx_int8']}/measurements", json=close, headers=headers)
    assert client.get(f"{A}/{ids['onnx_int8']}", headers=headers).json()["device_status"][0]["ok"] is True


class TestLooseThresholds:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"device_min_agreement": 0.4}

    def test_thresholds_come_from_settings(
        self, client: TestClient, alice: Any, register: Any, finished_job: Any
    ) -> None:
        ids = finished_job(alice)
        headers = bearer(register(alice)["token"])
        client.post(f"{A}/{ids['onnx_int8']}/measurements", json={**M, "agreement": 0.5}, headers=headers)
        comp = client.get(f"{A}/{ids['onnx_int8']}/measurements", headers=alice.headers).json()
        assert comp["thresholds"]["min_agreement"] == 0.4 and comp["failing_on"] == []


MCU_REPORT: dict[str, Any] = {
    "data": {"task": "classification"},
    "metrics": {"tflm": {"samples": 270, "accuracy": 0.95, "runtime": "tflite-micro"}},
    "budget": {
        "ram": {"measured_arena_bytes": 6512, "used_bytes": 8688},
        "tflm_arena": {"measured_bytes": 6512, "reserved_bytes": 8688},
    },
    "latency": {
        "measurements": [
            {
                "artifact_kind": "tflite_int8_full",
                "source": "estimated",
                "estimated_ms": 0.56,
                "formula": "macs x cycles_per_mac / clock_hz",
                "inputs": {"macs": 22400, "cycles_per_mac": 2.0, "clock_hz": 80000000},
            }
        ]
    },
}


def test_mcu_comparison_labels_the_estimate_and_firmware_can_post(
    client: TestClient, alice: Any, register: Any, app: FastAPI, submit: Any
) -> None:
    job = submit(alice, device_profile="mcu-cortex-m4")
    with app.state.sessionmaker() as s:
        jobs_repo.claim_job(s, job_id=job["id"], worker_id="w")
        row = artifacts_repo.upsert_artifact(
            s, job_id=job["id"], kind="tflite_int8_full", filename="m.tflite", size_bytes=1, sha256="0" * 64,
            storage_key="00/" + "0" * 64,
        )  # fmt: skip
        jobs_repo.finish_job(s, job_id=job["id"], status="succeeded", report=MCU_REPORT)
        s.commit()
        art_id = row.id
    board = register(alice, name="stm32l4", profile="mcu-cortex-m4")
    firmware = {  # the documented firmware form (docs/device-agent.md)
        "source": "device", "runtime": "tflite-micro", "runtime_version": "1.0", "threads": 1, "count": 50,
        "p50_ms": 612.0, "p90_ms": 620.0, "p99_ms": 640.0, "mean_ms": 613.5, "agreement": 1.0,
        "extra": {"device": {"cpu_model": "STM32L476 Cortex-M4F", "clock_hz": 80000000}},
    }  # fmt: skip
    r = client.post(f"{A}/{art_id}/measurements", json=firmware, headers=bearer(board["token"]))
    assert r.status_code == 201, r.text

    comp = client.get(f"{A}/{art_id}/measurements", headers=alice.headers).json()
    assert comp["latency_target_ms"] == 500 and comp["host"] is None
    mcu = comp["mcu"]
    assert mcu["arena_bytes"] == 6512 and mcu["tflm_host_run"]["runtime"] == "tflite-micro"
    est = mcu["estimated_latency"]
    assert est["estimated"] is True and est["estimated_ms"] == 0.56 and est["meets_target"] is True
    assert "arXiv:1801.06601" in est["cycles_per_mac_source"]  # the profile documents its figure
    dev = comp["devices"][0]
    assert dev["device"] == "stm32l4" and dev["meets_target"] is False and dev["latency_ratio"] is None
    assert dev["facts"]["cpu_model"].startswith("STM32")


@pytest.mark.parametrize("settings_overrides", [{"store_verify_on_read": True}])
def test_verify_on_read_refuses_a_changed_object(
    app: FastAPI, client: TestClient, alice: Any, finished_job: Any
) -> None:
    ids = finished_job(alice)
    url = f"{A}/{ids['onnx_int8']}/download"
    assert client.get(url, headers=alice.headers).status_code == 200
    with app.state.sessionmaker() as s:
        key = artifacts_repo.get_artifact(s, tenant_id=alice.tenant_id, artifact_id=ids["onnx_int8"]).storage_key
    path = app.state.store.objects / key
    path.write_bytes(b"X" + path.read_bytes()[1:])  # same size, other bytes
    r = client.get(url, headers=alice.headers)
    assert r.status_code == 500 and "damaged in the store" in r.json()["detail"]
