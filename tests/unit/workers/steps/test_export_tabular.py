"""Tabular MLP students through every export of every built-in profile.

Raw tabular features have very different magnitudes (breast-cancer-like: 0.05 next to 4000). With the
standardisation folded into the first Linear and the raw features quantised under one int8 scale,
the first FULLY_CONNECTED's requantisation scale reached hundreds and ai-edge-litert's XNNPACK delegate
refused the model ("failed to create XNNPACK runtime"); these tests run the real converters and
runtimes on such data and check every artifact loads and agrees with the torch student."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.runtimes.litert import TfliteModel, run_tflite
from edgedistill.runtimes.onnx import run_onnx
from edgedistill.runtimes.tflm import run_tflm
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.export_onnx import torch_predict
from edgedistill.workers.steps.mcu import HEADER_FILENAME
from edgedistill.workers.steps.model_info import tflite_op_sequence
from edgedistill.workers.steps.students import MLP, StudentArch, build_module
from tests.unit.workers.steps.conftest import EXPORT_STEPS, FakeTeacher, make_run, mlp

PROFILES = tuple(builtin_profiles())


def tabular_state(features: int, n: int = 240, seed: int = 0) -> Any:
    """Features of magnitudes 1e-2 .. 4e3, 2 classes; an MLP student built, standardised and folded
    as build_student and distill do (trained briefly so its outputs are not constant)."""
    from edgedistill.workers.pipeline.context import RunState

    rng = np.random.default_rng(seed)
    scale = np.logspace(-2, 3.6, features)
    rng.shuffle(scale)
    x = (rng.normal(size=(n, features)) * 0.3 * scale + scale).astype(np.float32)
    y = ((x / scale - 1).sum(1) > 0).astype(np.int64)
    splits, _ = make_splits(n, y, val_fraction=0.15, test_fraction=0.2, seed=0)
    torch.manual_seed(seed)
    student = build_module(StudentArch("mlp", (features,), 2, 32, 2))
    assert isinstance(student, MLP)
    xt = torch.from_numpy(x)
    student.set_input_statistics(xt.mean(0), xt.std(0))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(student(xt), torch.from_numpy(y)).backward()
        opt.step()
    student.fold_input_standardization()
    state = RunState()
    state.data = TransferData(
        x=x, y=y, splits=splits, modality="vector", task="classification", num_outputs=2
    )  # fmt: skip
    state.teacher = FakeTeacher(mlp(features, 2, hidden=64), file_bytes=40_000)
    state.student = student.eval()
    state.student_arch = {"family": "mlp", "width": 32, "depth": 2}
    state.teacher_outputs = {k: state.teacher.predict(state.data.x_of(k)) for k in ("train", "val", "test")}
    return state


def _export(tmp_path: Path, profile: str, state: Any, steps: tuple[str, ...] = EXPORT_STEPS) -> Any:
    run = make_run(tmp_path, profile)
    for target in steps:
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)().run(run.ctx, state)
    return state


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


def _check_every_artifact(state: Any, profile: str) -> None:
    x = state.data.x_of("test")
    ref = torch_predict(state.student, x)
    targets = builtin_profiles()[profile].targets
    checked = []
    for kind in ("onnx_fp32", "onnx_int8"):
        if kind in targets:
            got = run_onnx(state.artifacts[kind].path, x)
            assert _agreement(got, ref) >= 0.9, kind
            checked.append(kind)
    if "onnx_fp32" in targets:
        np.testing.assert_allclose(run_onnx(state.artifacts["onnx_fp32"].path, x), ref, atol=1e-3, rtol=1e-3)
    for kind in ("tflite_int8", "tflite_int8_full"):
        if kind in targets:
            rec = state.artifacts[kind]
            got = run_tflite(rec.path, x)  # ai-edge-litert with its default XNNPACK delegate
            assert _agreement(got, ref) >= 0.9, kind
            checked.append(kind)
    if "tflite_int8_full" in targets:
        got, arena = run_tflm(state.artifacts["tflite_int8_full"].path, x[:20])
        assert arena > 0 and _agreement(got, ref[:20]) >= 0.9
        checked.append("tflm")
    assert checked


@pytest.mark.slow  # litert-torch conversion (~4 s CPU)
def test_30_feature_mlp_loads_in_ai_edge_litert_on_mobile(tmp_path: Path) -> None:
    state = _export(
        tmp_path, "mobile-arm64", tabular_state(30), ("edgedistill.workers.steps.export_tflite:ExportTflite",)
    )
    rec = state.artifacts["tflite_int8"]
    ops = tflite_op_sequence(rec.path)
    # the standardisation runs in float before the QUANTIZE op; the Linear layers run in int8
    assert ops[0] == "SUB" and ops.index("QUANTIZE") < ops.index("FULLY_CONNECTED")
    assert ops.count("FULLY_CONNECTED") == 3 and ops[-1] == "DEQUANTIZE"
    assert rec.metadata["signature"]["inputs"][0]["dtype"] == "float32"
    assert rec.metadata["signature"]["inputs"][0]["shape"] == [1, 30]  # the teacher's raw features
    x = state.data.x_of("test")
    assert _agreement(run_tflite(rec.path, x), torch_predict(state.student, x)) >= 0.9
    # by name (the engine's verify): the one array is the one input, whatever the file calls it
    by_name = TfliteModel(rec.path).predict_all({"features": x})
    np.testing.assert_allclose(next(iter(by_name.values())), run_tflite(rec.path, x))


@pytest.mark.slow
def test_full_int8_mlp_carries_its_standardisation_to_runtime_and_header(tmp_path: Path) -> None:
    state = _export(tmp_path, "mcu-cortex-m4", tabular_state(30))
    rec = state.artifacts["tflite_int8_full"]
    std = rec.metadata["input_standardization"]
    assert len(std["mean"]) == 30 and len(std["std"]) == 30 and min(std["std"]) > 0
    assert rec.metadata["signature"]["inputs"][0]["dtype"] == "int8"
    assert "input_standardization.std" in rec.metadata["signature"]["input_mapping"]
    header = (state.artifacts["c_header"].path).read_text()
    source = state.artifacts["c_source"].path.read_text()
    assert "student_input_mean[]" in header and "student_input_std[]" in header
    assert source.count("f,") >= 2 * 29  # both arrays, one float literal per feature
    assert HEADER_FILENAME in source
    # the runtimes read the standardisation from the sidecar: raw features in, the student's outputs out
    x = state.data.x_of("test")
    got = run_tflite(rec.path, x)
    assert _agreement(got, torch_predict(state.student, x)) >= 0.9
    _check_every_artifact(state, "mcu-cortex-m4")


# One feature count per profile runs in CI; the whole 3 x 4 sweep is in the conformance tier.
CI_SWEEP = {("cpu-x86", 2), ("mobile-arm64", 64), ("mcu-cortex-m4", 17), ("mcu-cortex-m7", 64)}
SWEEP = [
    pytest.param(p, f, marks=() if (p, f) in CI_SWEEP else pytest.mark.conformance, id=f"{p}-{f}")
    for p in PROFILES
    for f in (2, 17, 64)
]


@pytest.mark.slow
@pytest.mark.parametrize(("profile", "features"), SWEEP)
def test_mlps_export_to_every_runtime_of_every_profile(tmp_path: Path, profile: str, features: int) -> None:
    state = _export(tmp_path, profile, tabular_state(features, seed=features))
    _check_every_artifact(state, profile)
