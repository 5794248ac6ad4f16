from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.repos import jobs as jobs_repo

REPORT_CPU: dict[str, Any] = json.loads((Path(__file__).parents[2] / "web" / "report_cpu.json").read_text())

J = "/api/v1/jobs"


def test_submit_is_202_with_location_and_enqueues(
    client: TestClient, alice, upload_model, upload_dataset, fake_queue
) -> None:  # type: ignore[no-untyped-def]
    m, d = upload_model(alice), upload_dataset(alice)
    body = {"model_id": m["id"], "dataset_id": d["id"], "device_profile": "mobile-arm64", "options": {"epochs": 5}}
    r = client.post(J, json=body, headers=alice.headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["progress"] == 0 and job["device_profile"] == "mobile-arm64"
    assert job["options"]["epochs"] == 5 and job["options"]["batch_size"] == 128  # defaults filled in
    assert job["profile"]["name"] == "mobile-arm64"  # resolved snapshot
    assert fake_queue.sent == [(job["id"], "compress")]
    got = client.get(r.headers["Location"], headers=alice.headers)
    assert got.status_code == 200 and got.json()["id"] == job["id"]


def test_idempotency_key_returns_the_same_job(client: TestClient, alice, upload_model, fake_queue) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    body = {"model_id": m["id"], "device_profile": "cpu-x86", "options": {"epochs": 2}}
    h = {**alice.headers, "Idempotency-Key": "retry-1"}
    first = client.post(J, json=body, headers=h)
    again = client.post(J, json=body, headers=h)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert len(fake_queue.sent) == 1
    clash = client.post(J, json={**body, "options": {"epochs": 3}}, headers=h)
    assert clash.status_code == 409 and "different request" in clash.json()["detail"]


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"epochs": 0}, ["body", "options", "epochs"]),
        ({"learning_rate": -1}, ["body", "options", "learning_rate"]),
        ({"no_such_option": 1}, ["body", "options", "no_such_option"]),
        ({"student": {"width": 1}}, ["body", "options", "student", "width"]),
    ],
)
def test_bad_options_are_422_with_field_errors(
    client: TestClient, alice, upload_model, options: dict[str, Any], loc: list[str]
) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    r = client.post(
        J, json={"model_id": m["id"], "device_profile": "cpu-x86", "options": options}, headers=alice.headers
    )
    assert r.status_code == 422
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_unknown_profile_and_unavailable_gpu_are_422(client: TestClient, alice, upload_model) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    r = client.post(J, json={"model_id": m["id"], "device_profile": "toaster"}, headers=alice.headers)
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "device_profile"] and "toaster" in err["msg"]
    r = client.post(
        J, json={"model_id": m["id"], "device_profile": "cpu-x86", "options": {"device": "cuda"}}, headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "device"]


@pytest.mark.parametrize("settings_overrides", [{"gpu_queue_enabled": True}])
def test_cuda_jobs_route_to_the_gpu_queue(client: TestClient, alice, submit, fake_queue) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice, options={"device": "cuda", "epochs": 1})
    assert job["queue"] == "gpu" and fake_queue.sent[-1] == (job["id"], "gpu")


def test_webhook_url_must_be_http(client: TestClient, alice, upload_model) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    bad = client.post(
        J,
        json={"model_id": m["id"], "device_profile": "cpu-x86", "webhook_url": "file:///etc/passwd"},
        headers=alice.headers,
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "webhook_url"]
    assert client.post("/api/v1/webhook-secret", headers=alice.headers).status_code == 201
    ok = client.post(
        J,
        json={"model_id": m["id"], "device_profile": "cpu-x86", "webhook_url": "https://ci.example/hook"},
        headers=alice.headers,
    )
    assert ok.status_code == 202 and ok.json()["webhook_url"] == "https://ci.example/hook"


def test_other_tenants_model_or_dataset_is_404(client: TestClient, alice, bob, upload_model, upload_dataset) -> None:  # type: ignore[no-untyped-def]
    theirs = upload_model(alice)
    r = client.post(J, json={"model_id": theirs["id"], "device_profile": "cpu-x86"}, headers=bob.headers)
    assert r.status_code == 404 and theirs["id"] in r.json()["detail"]
    mine = upload_model(bob)
    d = upload_dataset(alice)
    r = client.post(
        J, json={"model_id": mine["id"], "dataset_id": d["id"], "device_profile": "cpu-x86"}, headers=bob.headers
    )
    assert r.status_code == 404


def test_broker_down_leaves_the_job_queued(client: TestClient, alice, submit, fake_queue) -> None:  # type: ignore[no-untyped-def]
    fake_queue.down = True
    job = submit(alice)
    assert job["status"] == "queued"
    assert client.get(f"{J}/{job['id']}", headers=alice.headers).json()["status"] == "queued"


@pytest.mark.parametrize("settings_overrides", [{"submit_rate_limit_per_minute": 2}])
def test_submit_rate_limit_per_key(client: TestClient, alice, bob, upload_model) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    body = {"model_id": m["id"], "device_profile": "cpu-x86"}
    assert [client.post(J, json=body, headers=alice.headers).status_code for _ in range(2)] == [202, 202]
    r = client.post(J, json=body, headers=alice.headers)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # Another key has its own budget.
    assert (
        client.post(
            J, json={"model_id": upload_model(bob)["id"], "device_profile": "cpu-x86"}, headers=bob.headers
        ).status_code
        == 202
    )


def test_list_filters_and_pages(client: TestClient, alice, bob, submit, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    made = [submit(alice)["id"] for _ in range(5)]
    submit(bob)
    with app.state.sessionmaker() as s:
        jobs_repo.claim_job(s, job_id=made[1], worker_id="w")
        s.commit()
    seen: list[str] = []
    url = f"{J}?limit=2"
    while True:
        page = client.get(url, headers=alice.headers).json()
        seen += [j["id"] for j in page["items"]]
        if not page["next_cursor"]:
            break
        url = f"{J}?limit=2&cursor={page['next_cursor']}"
    assert seen == made[::-1]
    running = client.get(f"{J}?status=running", headers=alice.headers).json()["items"]
    assert [j["id"] for j in running] == [made[1]]
    assert client.get(f"{J}?status=bogus", headers=alice.headers).status_code == 422
    assert client.get(f"{J}?cursor=garbage", headers=alice.headers).status_code == 422


def test_get_cancel_report_are_tenant_scoped(client: TestClient, alice, bob, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    for method, path in [
        ("GET", ""),
        ("POST", "/cancel"),
        ("GET", "/report"),
        ("GET", "/artifacts"),
        ("GET", "/events"),
    ]:
        assert client.request(method, f"{J}/{job['id']}{path}", headers=bob.headers).status_code == 404, path
    assert client.get(f"{J}/{job['id']}", headers=alice.headers).json()["status"] == "queued"


def test_cancel_queued_then_running_then_finished(client: TestClient, alice, submit, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    queued = submit(alice)
    r = client.post(f"{J}/{queued['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"{J}/{queued['id']}/cancel", headers=alice.headers).status_code == 200  # idempotent

    running = submit(alice)
    done = submit(alice)
    with app.state.sessionmaker() as s:
        jobs_repo.claim_job(s, job_id=running["id"], worker_id="w")
        jobs_repo.claim_job(s, job_id=done["id"], worker_id="w")
        jobs_repo.finish_job(s, job_id=done["id"], status="succeeded", report={"student": {"params": 10}})
        s.commit()
    r = client.post(f"{J}/{running['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    r = client.post(f"{J}/{done['id']}/cancel", headers=alice.headers)
    assert r.status_code == 409 and "succeeded" in r.json()["detail"]


def test_report_appears_when_the_job_ends(client: TestClient, alice, submit, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    r = client.get(f"{J}/{job['id']}/report", headers=alice.headers)
    assert r.status_code == 404 and "no report yet" in r.json()["detail"]
    with app.state.sessionmaker() as s:
        jobs_repo.claim_job(s, job_id=job["id"], worker_id="w")
        jobs_repo.finish_job(s, job_id=job["id"], status="succeeded", report=REPORT_CPU, metrics={"acc": 0.9})
        s.commit()
    body = client.get(f"{J}/{job['id']}/report", headers=alice.headers).json()
    assert body.pop("devices")["artifacts"] == {}  # merged in when read (issue 5); no device has measured
    assert body == REPORT_CPU  # the stored report.json as written, typed (JobReportOut)
    got = client.get(f"{J}/{job['id']}", headers=alice.headers).json()
    assert got["status"] == "succeeded" and got["progress"] == 100 and got["metrics"] == {"acc": 0.9}
    assert got["duration_s"] is not None and got["duration_s"] >= 0


def test_an_old_report_is_served_migrated(client: TestClient, alice, submit, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    """A report stored before schema_version, with a key no version has: version 1, the key dropped."""
    job = submit(alice)
    old = {k: v for k, v in REPORT_CPU.items() if k != "schema_version"} | {"accuracy": 0.9}
    with app.state.sessionmaker() as s:
        jobs_repo.claim_job(s, job_id=job["id"], worker_id="w")
        jobs_repo.finish_job(s, job_id=job["id"], status="succeeded", report=old, metrics={})
        s.commit()
    r = client.get(f"{J}/{job['id']}/report", headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    body.pop("devices")
    assert body == REPORT_CPU


def test_custom_profile_can_be_used_by_its_tenant_only(client: TestClient, alice, bob, upload_model) -> None:  # type: ignore[no-untyped-def]
    spec = {
        "name": "my-pi",
        "class": "mobile",
        "targets": ["onnx_int8"],
        "int8_scheme": "qdq_per_channel",
        "budgets": {"max_model_bytes": 2_000_000},
    }
    assert client.post("/api/v1/device-profiles", json=spec, headers=alice.headers).status_code == 201
    r = client.post(J, json={"model_id": upload_model(alice)["id"], "device_profile": "my-pi"}, headers=alice.headers)
    assert r.status_code == 202 and r.json()["profile"]["budgets"]["max_model_bytes"] == 2_000_000
    r = client.post(J, json={"model_id": upload_model(bob)["id"], "device_profile": "my-pi"}, headers=bob.headers)
    assert r.status_code == 422


def test_a_finished_jobs_json_carries_its_quality_verdict(client: TestClient, alice, submit, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    job, older = submit(alice), submit(alice)
    verdict = {"metric": "accuracy", "teacher": 0.96, "student": 0.5, "kept": 0.52, "target": 0.97, "met": False,
               "samples": 270, "variant": "onnx_int8", "problem": None, "basis": "student / teacher"}  # fmt: skip
    with app.state.sessionmaker() as s:
        for j, report in ((job, {"quality": verdict}), (older, {"quality": {"problem": None, "variant": "x"}})):
            jobs_repo.claim_job(s, job_id=j["id"], worker_id="w")
            jobs_repo.finish_job(s, job_id=j["id"], status="succeeded", report=report)
        s.commit()
        summary = jobs_repo.job_summary(s, job_id=job["id"])  # the webhook payload's "job"
    got = client.get(f"{J}/{job['id']}", headers=alice.headers).json()
    public = {k: v for k, v in verdict.items() if k != "basis"}
    assert got["status"] == "succeeded" and got["quality"] == public
    listed = {j["id"]: j for j in client.get(J, headers=alice.headers).json()["items"]}
    assert listed[job["id"]]["quality"]["met"] is False
    assert listed[older["id"]]["quality"] is None  # a report from before verdicts: no verdict, not a made-up one
    assert summary is not None and summary["quality"] == public
    queued = submit(alice)
    assert client.get(f"{J}/{queued['id']}", headers=alice.headers).json()["quality"] is None
