"""The Dockerfile's two targets proven without a Docker engine: each target's COPY lines are laid out
in a temporary folder (its WORKDIR), its RUN lines install it into a fresh virtualenv, and its CMD runs
there: the API answers /healthz and /ui/login, the worker runs one real job sent through Redis.

How the virtualenvs get their third-party packages (decided for CI's time and disk):
- api: a fresh virtualenv and the Dockerfile's `pip install -c constraints.txt .` from the package
  registry (pip's local cache kept on): the light image's whole dependency set is really resolved
  and installed (about 100 s the first time), and it must come without torch.
- worker: `pip install -c constraints.txt ".[ml]"` as written, in a fresh virtualenv whose path ends
  with links to the test interpreter's third-party distributions (this project's own left out), so
  pip finds the ML stack already satisfied instead of downloading about 3 GB again; torch, litert
  and onnxruntime there were installed by the same constraints. The project itself (service, workers,
  agent, migrations) can only come from the copied file set: the test checks where each is imported from.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from images import (
    REPO,
    Target,
    build_file_set,
    clean_env,
    make_venv,
    parse_dockerfile,
    project_packages,
    resolve_target,
    run_install_steps,
    third_party_overlay,
)
from stack import RedisServer, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

FAST = {"epochs": 20, "patience": 20, "benchmark_runs": 10, "benchmark_warmup": 2, "calibration_samples": 64}


def _image(tmp: Path, name: str, *, overlay: bool) -> tuple[Target, Path, Path]:
    """(target, its WORKDIR folder, its virtualenv) after running its install steps."""
    target = resolve_target(parse_dockerfile((REPO / "Dockerfile").read_text()), name)
    workdir = build_file_set(target, tmp / name / "app")
    extra = third_party_overlay(tmp / name / "overlay", project_packages()) if overlay else None
    venv = make_venv(tmp / name / "venv", overlay=extra)
    skipped = run_install_steps(target, workdir, venv, log=tmp / f"{name}-install.log")
    assert all("pip" not in s for s in skipped)
    return target, workdir, venv


def _where_imported(venv: Path, env: dict[str, str], modules: list[str]) -> list[str]:
    code = "import importlib,sys; print('\\n'.join(importlib.import_module(m).__file__ for m in sys.argv[1:]))"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *modules], cwd="/", env=env, check=True, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    return out.stdout.split()


def _compose_command(service: str) -> list[str]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return list(compose["services"][service]["command"])


@pytest.fixture
def images(tmp_path: Path) -> Iterator[dict[str, tuple[Target, Path, Path]]]:
    yield {"api": _image(tmp_path, "api", overlay=False), "worker": _image(tmp_path, "worker", overlay=True)}


def _start(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_both_images_run_their_command_and_a_job(
    images: dict[str, tuple[Target, Path, Path]], tmp_path: Path, digits_teacher_files: dict[str, Path]
) -> None:
    api_target, api_dir, api_venv = images["api"]
    worker_target, worker_dir, worker_venv = images["worker"]
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    data = tmp_path / "data"  # the compose file's shared "artifacts" volume
    settings = {
        "EDGEDISTILL_DATA_DIR": str(data),
        "EDGEDISTILL_DATABASE_URL": f"sqlite:///{data / 'edgedistill.db'}",
        "EDGEDISTILL_REDIS_URL": redis.url,
        "EDGEDISTILL_SECRET_KEY": "image-test-secret-key-" + "x" * 32,
        "OMP_NUM_THREADS": "1",
    }
    api_env = clean_env(api_venv, {**api_target.env, **settings})
    worker_env = clean_env(worker_venv, {**worker_target.env, **settings})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The project comes from each image's own install, never from the working tree.
        api_modules = ["edgedistill.service"]
        images_and_modules = ((api_venv, api_env, api_modules), (worker_venv, worker_env, project_packages()))
        for venv, env, modules in images_and_modules:
            for where in _where_imported(venv, env, modules):
                assert where.startswith(str(venv)), where
        no_torch = subprocess.run([str(api_venv / "bin" / "python"), "-c", "import torch"], env=api_env, cwd="/")
        assert no_torch.returncode != 0, "the api image must not carry torch"

        # docker-compose's one-shot migrate service, then the API's CMD (bound to loopback here).
        subprocess.run(_compose_command("migrate"), cwd=api_dir, env=api_env, check=True, timeout=300)
        port = free_port()
        cmd = list(api_target.cmd)
        cmd[cmd.index("--host") + 1] = "127.0.0.1"
        cmd[cmd.index("--port") + 1] = str(port)
        procs.append(_start(cmd, cwd=api_dir, env=api_env, log=tmp_path / "api.log"))
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert procs[0].poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 120, "the api image's /healthz")
        login = httpx.get(f"{url}/ui/login", timeout=10)
        assert login.status_code == 200 and "<form" in login.text  # templates and static files were packaged

        key_out = subprocess.run(
            ["edgedistill", "admin", "create-key", "--tenant", "images"], cwd=api_dir, env=api_env, check=True,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        key = key_out.stdout.strip().splitlines()[-1]

        worker_log = tmp_path / "worker.log"
        procs.append(_start(list(worker_target.cmd), cwd=worker_dir, env=worker_env, log=worker_log))
        wait_until(lambda: b" ready." in worker_log.read_bytes(), 180, "the worker image's Celery worker")

        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60) as http:
            with digits_teacher_files["onnx"].open("rb") as f:
                model = http.post("/models", files={"file": ("teacher.onnx", f)}).raise_for_status().json()
            with digits_teacher_files["npz"].open("rb") as f:
                dataset = http.post("/datasets", files={"file": ("data.npz", f)}).raise_for_status().json()
            body = {"model_id": model["id"], "dataset_id": dataset["id"], "device_profile": "cpu-x86", "options": FAST}
            job = http.post("/jobs", json=body).raise_for_status().json()

            def ended() -> dict[str, object] | None:
                current = http.get(f"/jobs/{job['id']}").json()
                return current if current["status"] in {"succeeded", "failed", "cancelled"} else None

            final = wait_until(ended, 900, "the job to end", interval=1.0)
            assert final["status"] == "succeeded", (final, worker_log.read_text()[-4000:])
            kinds = {a["kind"] for a in http.get(f"/jobs/{job['id']}/artifacts").json()}
            assert {"onnx_int8", "report"} <= kinds
            report = http.get(f"/jobs/{job['id']}/report").json()
            # The benchmark step (edgedistill.runtimes.timing) measured every model on the host.
            host = [m for m in report["latency"]["measurements"] if m.get("source") == "host"]
            assert host and all(m["p50_ms"] > 0 for m in host)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
