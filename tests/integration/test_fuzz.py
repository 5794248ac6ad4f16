"""schemathesis (CLI `st run`) against the OpenAPI schema of a real uvicorn with a real worker: no 5xx,
every status code and response body as documented, auth enforced, invalid data refused, 405s with a
correct Allow header. Two bounded runs: ids generated from the schema (examples, coverage, fuzzing,
stateful), then real ids of a finished job, its artifact, model, dataset and device filled into every path
so that downloads, ranges, reports, measurements and cancels are fuzzed past their 404s.

Left out: the positive_data_acceptance check. The API refuses schema-valid requests by design where the
rule cannot be written in the schema: file contents (415/422 after sniffing), an unknown profile name or
id (422/404), cross-field rules (input_range lo < hi, profile budgets per device class), opaque cursors.

The seed is fixed for a reproducible CI run; EDGEDISTILL_FUZZ_SEED / EDGEDISTILL_FUZZ_EXAMPLES change it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import Stack, running_stack

from edgedistill.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SEED = int(os.environ.get("EDGEDISTILL_FUZZ_SEED", "20261123"))
EXAMPLES = int(os.environ.get("EDGEDISTILL_FUZZ_EXAMPLES", "40"))
TINY = {"epochs": 1, "patience": 1, "benchmark_runs": 1, "benchmark_warmup": 0, "calibration_samples": 8}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_stack(tmp, f"sqlite:///{tmp / 'edgedistill.db'}") as stack:
        yield stack, stack.create_key("fuzz"), tmp


def _st(stack: Stack, key: str, tmp: Path, *extra: str, config: Path | None = None) -> None:
    st = Path(sys.executable).with_name("st")
    cmd = [str(st)] + (["--config-file", str(config)] if config else [])
    cmd += [
        "run", f"{stack.url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--request-timeout", "30", "--no-color",
        "--generation-database", "none", "--warnings", "off",
        *extra,
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=420)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-12000:]}\n{run.stderr[-3000:]}"
    api_log = stack.log("api").read_text(errors="replace")
    assert "unhandled error" not in api_log, api_log[-5000:]


def test_schema_fuzzing_with_generated_ids(fuzz_stack: tuple[Stack, str, Path]) -> None:
    stack, key, tmp = fuzz_stack
    _st(stack, key, tmp, "--phases", "examples,coverage,fuzzing,stateful")


def test_schema_fuzzing_on_real_resources(
    fuzz_stack: tuple[Stack, str, Path], teacher_and_data: tuple[Path, Path]
) -> None:
    stack, key, tmp = fuzz_stack
    teacher, data = teacher_and_data
    with Client(stack.url, key) as c:
        job = c.submit(teacher, data=data, profile="cpu-x86", options=TINY).wait(timeout=300)
        device = c.request("POST", "/devices", json={"name": "fuzz-device", "profile": "cpu-x86"})
        ids = {
            "model_id": job.data["model_id"],
            "dataset_id": job.data["dataset_id"],
            "job_id": job.id,
            "artifact_id": next(a["id"] for a in job.artifacts() if a["kind"] == "onnx_int8"),
            "device_id": device["id"],
            "name": "cpu-x86",
        }
    config = tmp / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(f'"path.{k}" = "{v}"\n' for k, v in ids.items()))
    # DELETE would remove the resources the other operations are pointed at.
    _st(stack, key, tmp, "--phases", "examples,coverage,fuzzing", "--exclude-method", "DELETE", config=config)
    with Client(stack.url, key) as c:  # the fuzzing left the real resources readable
        assert c.request("GET", f"/jobs/{ids['job_id']}")["status"] == "succeeded"
        assert c.http.get(f"/artifacts/{ids['artifact_id']}/download").status_code == 200
