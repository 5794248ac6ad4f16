"""Real artifacts for the agent's tests: the engine compresses the digits teacher once per session for
the Cortex-M4 profile (ONNX fp32/int8, full-int8 TFLite with int8 I/O, probe.npz) and for cpu-x86 plus
the ExecuTorch int8 program. The agent itself never imports the engine; only this fixture does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _run(
    tmp_path_factory: pytest.TempPathFactory, digits_teacher_files: dict[str, Path], profile: str, *extra_targets: str
) -> Any:
    from edgedistill.contracts.profiles import resolve_profile
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    options = JobOptions(
        epochs=3, patience=3, benchmark_runs=5, benchmark_warmup=1, calibration_samples=64, device="cpu"
    )
    spec = PipelineSpec(
        teacher_path=digits_teacher_files["onnx"],
        data_path=digits_teacher_files["npz"],
        profile=resolve_profile(profile).model_copy(
            update={"targets": [*resolve_profile(profile).targets, *extra_targets]}
        ),
        options=options,
        out_dir=tmp_path_factory.mktemp(f"agent-{profile}") / "out",
    )
    return run_pipeline(spec)


@pytest.fixture(scope="session")
def mcu_run(tmp_path_factory: pytest.TempPathFactory, digits_teacher_files: dict[str, Path]) -> Any:
    return _run(tmp_path_factory, digits_teacher_files, "mcu-cortex-m4")


@pytest.fixture(scope="session")
def cpu_run(tmp_path_factory: pytest.TempPathFactory, digits_teacher_files: dict[str, Path]) -> Any:
    """cpu-x86 with the ExecuTorch int8 program added to its targets (when executorch is installed here)."""
    pytest.importorskip("executorch")
    return _run(tmp_path_factory, digits_teacher_files, "cpu-x86", "executorch_int8")
