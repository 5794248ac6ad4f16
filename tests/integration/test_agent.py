"""The on-device agent as a real separate process against the real stack (uvicorn, redis-server, a
Celery worker, SQLite / PostgreSQL): it is its own 'device'. A real job produces the artifacts; two
more are made from them in the database and store (one tampered, one computing the wrong thing)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveService

from edgedistill.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
FAST = {"epochs": 4, "patience": 4, "benchmark_runs": 20, "benchmark_warmup": 3, "calibration_samples": 64}
# Custom profiles keep this module's devices to this module's jobs (the stack is shared by the session).
PROFILE = "agent-it-cpu"
CRAFTED_PROFILE = "agent-it-crafted"


def _profile(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "class": "cpu",
        "targets": ["onnx_fp32", "onnx_int8", "tflite_int8"],
        "int8_scheme": "qdq_per_channel",
        "budgets": {"max_model_bytes": 50_000_000, "max_ram_bytes": 1 << 30, "latency_target_ms": 50},
        "threads": 1,  # the test machine's cores are shared
    }


@dataclass
class AgentJob:
    job_id: str
    artifacts: dict[str, dict[str, Any]]  # kind -> artifact JSON


@pytest.fixture(scope="module")
def agent_job(live: LiveService, teacher_and_data: tuple[Path, Path]) -> AgentJob:
    teacher, data = teacher_and_data
    with Client(live.url, live.key_a) as a:
        for name in (PROFILE, CRAFTED_PROFILE):
            resp = a.http.post("/device-profiles", json=_profile(name))
            assert resp.status_code in (201, 409), resp.text
        job = a.submit(teacher, data=data, profile=PROFILE, options=FAST)
        job.wait(timeout=600)
        return AgentJob(job.id, {art["kind"]: art for art in job.artifacts()})


def register(live: LiveService, key: str, name: str, profile: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{live.url}/api/v1/devices",
        json={"name": name, "profile": profile, "hardware": {"note": "integration test host"}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def run_agent(live: LiveService, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The agent in its own interpreter, configured the way a device is: URL and token in the environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": os.environ.get("HOME", "/tmp"),
        "EDGEDISTILL_URL": live.url,
        "EDGEDISTILL_DEVICE_TOKEN": token,
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "edgedistill.agent.cli", *args, "--insecure"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def api(live: LiveService, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_agent_measures_onnx_and_tflite_and_posts(live: LiveService, agent_job: AgentJob) -> None:
    device = register(live, live.key_a, "it-box", PROFILE)
    done = run_agent(live, device["token"], "watch", "--once", "--runs", "30", "--warmup", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    measured_kinds = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert measured_kinds == {"onnx_fp32", "onnx_int8", "tflite_int8"}, done.stdout

    with api(live, live.key_a) as a:
        for kind, runtime in (("onnx_int8", "onnxruntime"), ("tflite_int8", "ai-edge-litert")):
            comp = a.get(f"/artifacts/{agent_job.artifacts[kind]['id']}/measurements").json()
            [dev] = [d for d in comp["devices"] if d["device_id"] == device["id"]]
            assert dev["runtime"] == runtime and dev["count"] == 30 and dev["threads"] == 1
            assert dev["agreement"] == 1.0 and dev["max_abs_diff"] == 0.0 and dev["ok"] is True
            assert dev["peak_rss_bytes"] > 0 and dev["facts"]["cores"] >= 1 and dev["facts"]["cpu_model"]
            assert comp["host"] is not None and dev["latency_ratio"] == pytest.approx(
                dev["p50_ms"] / comp["host"]["p50_ms"]
            )
            assert dev["meets_target"] is True and comp["latency_target_ms"] == 50
            print(  # the figures, for the report
                f"{kind}: device p50 {dev['p50_ms']:.4f} ms p99 {dev['p99_ms']:.4f} ms, host p50 "
                f"{comp['host']['p50_ms']:.4f} ms, ratio {dev['latency_ratio']:.2f}, rss {dev['peak_rss_bytes']}"
            )
        report = a.get(f"/jobs/{agent_job.job_id}/report").json()
        assert report["devices"]["failing"] == []
        assert set(report["devices"]["artifacts"]) == {"onnx_fp32", "onnx_int8", "tflite_int8"}

    again = run_agent(live, device["token"], "watch", "--once")
    assert again.returncode == 0 and again.stdout.strip() == "", again.stdout  # nothing left to measure


@dataclass
class Crafted:
    wrong_id: str  # an ONNX model whose outputs are negated: runs fine, computes the wrong thing
    tampered_id: str  # stored bytes differ from the recorded sha256
    job_id: str


@pytest.fixture(scope="module")
def crafted(live: LiveService, agent_job: AgentJob, tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    """A second job of CRAFTED_PROFILE, written with the repos as the worker would, over files of the
    real job: its probe, a wrong-output model and a tampered one."""
    import onnx
    from onnx import helper

    from edgedistill.service.db.session import make_engine, make_sessionmaker
    from edgedistill.service.repos import artifacts as artifacts_repo
    from edgedistill.service.repos import jobs as jobs_repo
    from edgedistill.service.settings import Settings
    from edgedistill.service.storage import get_store

    tmp = tmp_path_factory.mktemp("crafted")
    settings = Settings(data_dir=live.stack.data_dir, database_url=live.stack.database_url)
    store = get_store(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as s:
            real = jobs_repo.get_job_any_tenant(s, job_id=agent_job.job_id)
            assert real is not None
            rows = {a.kind: a for a in artifacts_repo.list_job_artifacts(s, tenant_id=real.tenant_id, job_id=real.id)}

            with store.local_path(rows["onnx_fp32"].storage_key) as p:
                model = onnx.load(str(p))
            out = model.graph.output[0].name
            for node in model.graph.node:  # rename the producer's output, then negate it under the old name
                node.output[:] = [f"{o}_pre_neg" if o == out else o for o in node.output]
            model.graph.node.append(helper.make_node("Neg", [f"{out}_pre_neg"], [out]))
            onnx.checker.check_model(model)
            (tmp / "wrong.onnx").write_bytes(model.SerializeToString())
            wrong = store.put_file(tmp / "wrong.onnx")

            with store.local_path(rows["onnx_int8"].storage_key) as p:
                data = bytearray(p.read_bytes())
            data[len(data) // 2] ^= 0xFF
            (tmp / "tampered.onnx").write_bytes(bytes(data))
            tampered = store.put_file(tmp / "tampered.onnx")

            job, _ = jobs_repo.create_job(
                s, tenant_id=real.tenant_id, model_id=real.model_id, dataset_id=real.dataset_id,
                profile_name=CRAFTED_PROFILE, profile={**real.profile, "name": CRAFTED_PROFILE}, options=real.options,
            )  # fmt: skip
            jobs_repo.claim_job(s, job_id=job.id, worker_id="crafted")
            probe = rows["probe"]
            common = {"job_id": job.id, "tenant_id": real.tenant_id}
            artifacts_repo.upsert_artifact(
                s, **common, kind="probe", filename=probe.filename, size_bytes=probe.size_bytes, sha256=probe.sha256,
                storage_key=probe.storage_key, metadata=probe.metadata_,
            )  # fmt: skip
            w = artifacts_repo.upsert_artifact(
                s, **common, kind="onnx_fp32", filename="wrong.onnx", size_bytes=wrong.size, sha256=wrong.sha256,
                storage_key=wrong.key, metadata=rows["onnx_fp32"].metadata_,
            )  # fmt: skip
            original = rows["onnx_int8"]
            t = artifacts_repo.upsert_artifact(  # the row keeps the original's sha256; the bytes differ
                s, **common, kind="onnx_int8", filename=original.filename, size_bytes=tampered.size,
                sha256=original.sha256, storage_key=tampered.key, metadata=original.metadata_,
            )  # fmt: skip
            jobs_repo.finish_job(s, job_id=job.id, status="succeeded", report=real.report)
            s.commit()
            return Crafted(wrong_id=w.id, tampered_id=t.id, job_id=job.id)
    finally:
        engine.dispose()


def test_tampered_artifact_is_refused(live: LiveService, crafted: Crafted) -> None:
    device = register(live, live.key_a, "it-tamper", CRAFTED_PROFILE)
    done = run_agent(live, device["token"], "run", "--artifact", crafted.tampered_id, "--runs", "5")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refusing artifact" in done.stderr and "sha256" in done.stderr and "Nothing was run or posted" in done.stderr
    with api(live, live.key_a) as a:
        comp = a.get(f"/artifacts/{crafted.tampered_id}/measurements").json()
    assert comp["measurements"] == [] and comp["devices"] == []


def test_wrong_output_artifact_is_flagged(live: LiveService, crafted: Crafted) -> None:
    device = register(live, live.key_a, "it-wrong", CRAFTED_PROFILE)
    done = run_agent(live, device["token"], "run", "--artifact", crafted.wrong_id, "--runs", "10")
    assert done.returncode == 4, done.stdout + done.stderr  # posted, and failing on this device
    assert "FAILING on this device" in done.stdout
    with api(live, live.key_a) as a:
        art = a.get(f"/artifacts/{crafted.wrong_id}").json()
        [status] = [s for s in art["device_status"] if s["device_id"] == device["id"]]
        assert status["ok"] is False and status["agreement"] < 0.99
        assert any("agreement" in r for r in status["reasons"])
        comp = a.get(f"/artifacts/{crafted.wrong_id}/measurements").json()
        assert device["name"] in comp["failing_on"]
        report = a.get(f"/jobs/{crafted.job_id}/report").json()
        assert {"kind": "onnx_fp32", "device": device["name"]} in [
            {k: f[k] for k in ("kind", "device")} for f in report["devices"]["failing"]
        ]
    # the device itself sees the verdict on its artifact
    with api(live, device["token"]) as d:
        own = d.get(f"/artifacts/{crafted.wrong_id}").json()["device_status"]
    assert [s["ok"] for s in own] == [False]


def test_device_token_cannot_cross_tenants(live: LiveService, agent_job: AgentJob) -> None:
    other = register(live, live.key_b, "it-other-tenant", "cpu-x86")
    target = agent_job.artifacts["onnx_int8"]["id"]
    body = {"source": "device", "runtime": "onnxruntime", "runtime_version": "1", "threads": 1, "count": 1,
            "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "agreement": 1.0}  # fmt: skip
    with api(live, other["token"]) as d:
        assert d.get(f"/artifacts/{target}").status_code == 404
        assert d.get(f"/artifacts/{target}/download").status_code == 404
        assert d.post(f"/artifacts/{target}/measurements", json=body).status_code == 404
        assert d.get("/devices/me/artifacts").json() == [] or all(
            a["id"] != target for a in d.get("/devices/me/artifacts").json()
        )
        assert d.get(f"/jobs/{agent_job.job_id}").status_code == 403  # jobs are not for device tokens at all
    done = run_agent(live, other["token"], "run", "--artifact", target)
    assert done.returncode == 1 and "not found for this device" in done.stderr, done.stderr
    with api(live, live.key_a) as a:
        comp = a.get(f"/artifacts/{target}/measurements").json()
    assert all(d["device_id"] != other["id"] for d in comp["devices"])


TOKENS_PROFILE = "agent-it-tokens"


def test_agent_measures_a_two_input_token_students_artifacts(live: LiveService, tmp_path: Path) -> None:
    """token ids + attention mask in, logits + probabilities out: the job's probe holds both inputs by
    name and each output per variant; the agent feeds them by name to every artifact and posts each
    output's agreement (a profile of its own keeps these artifacts to this device)."""
    import numpy as np
    from signature_models import token_classifier_onnx

    teacher = tmp_path / "tokens.onnx"
    teacher.write_bytes(token_classifier_onnx(seq=16))
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 17, size=240)
    data = tmp_path / "tokens.npz"
    np.savez(
        data, input_ids=rng.integers(0, 50, size=(240, 16)).astype(np.int64),
        attention_mask=(np.arange(16)[None, :] < lengths[:, None]).astype(np.int64),
    )  # fmt: skip
    with Client(live.url, live.key_a) as a:
        resp = a.http.post("/device-profiles", json=_profile(TOKENS_PROFILE))
        assert resp.status_code in (201, 409), resp.text
        job = a.submit(teacher, data=data, profile=TOKENS_PROFILE, options={**FAST, "epochs": 2})
        job.wait(timeout=600)
        kinds = {art["kind"]: art for art in job.artifacts()}
    assert "probe" in kinds and kinds["probe"]["metadata"]["inputs"] == ["input_ids", "attention_mask"]
    device = register(live, live.key_a, "it-tokens", TOKENS_PROFILE)
    done = run_agent(live, device["token"], "watch", "--once", "--runs", "10", "--warmup", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {line.split()[0] for line in done.stdout.splitlines() if line.strip()} == {
        "onnx_fp32", "onnx_int8", "tflite_int8"
    }, done.stdout  # fmt: skip
    with api(live, live.key_a) as a:
        for kind in ("onnx_fp32", "onnx_int8", "tflite_int8"):
            comp = a.get(f"/artifacts/{kinds[kind]['id']}/measurements").json()
            [dev] = [d for d in comp["devices"] if d["device_id"] == device["id"]]
            assert dev["agreement"] == 1.0 and dev["max_abs_diff"] <= 1e-5 and dev["ok"] is True, (kind, dev)
