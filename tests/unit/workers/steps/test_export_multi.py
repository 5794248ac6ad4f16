"""Export steps for multi-input / multi-output / token students: ONNX fp32 + int8 and TFLite int8 keep
the teacher's input/output names and per-sample shapes, integer inputs stay integers, images become
NHWC only on TFLite, and every runtime's predict_all (by name) agrees with the torch export module."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.signature import ModelSignature
from edgedistill.contracts.spec import StudentOptions
from edgedistill.runtimes.litert import TfliteModel
from edgedistill.runtimes.onnx import OnnxModel
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.build_student import build_student
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.export_multi import torch_predict_all
from edgedistill.workers.steps.heads import export_module
from edgedistill.workers.steps.students_multi import input_stats
from tests.unit.workers.steps.conftest import make_run
from tests.unit.workers.steps.test_students_multi import (
    BLAZEFACE,
    NHWC_DETECTOR,
    TEXT,
    VAD_PLUS_AGE,
    detector_outputs,
    random_inputs,
)

STEPS = (
    "edgedistill.workers.steps.export_onnx:ExportOnnx",
    "edgedistill.workers.steps.quantize:QuantizeOnnx",
    "edgedistill.workers.steps.export_tflite:ExportTflite",
)


def multi_state(
    signature: ModelSignature, n: int = 60, teacher_outputs: dict[str, np.ndarray] | None = None
) -> RunState:
    arrays = random_inputs(signature, n)
    splits, _ = make_splits(n, None, val_fraction=0.2, test_fraction=0.3, seed=0)
    first = signature.input_names[0]
    data = TransferData(
        x=arrays[first], y=None, splits=splits, modality="vector", task="regression", num_outputs=1,
        arrays=arrays, input_names=signature.input_names,
    )  # fmt: skip
    torch.manual_seed(0)
    module, arch = build_student(
        signature, builtin_profiles()["cpu-x86"], StudentOptions(width=8, depth=2), input_stats(signature, arrays),
        teacher_outputs=teacher_outputs,
    )  # fmt: skip
    state = RunState()
    state.signature, state.data, state.student, state.student_arch = signature, data, module.eval(), arch
    return state


def _export(tmp_path: Path, profile: str, state: RunState) -> RunState:
    run = make_run(tmp_path, profile, calibration_samples=24)
    for target in STEPS:
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)().run(run.ctx, state)
    return state


def _close(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], rel: float) -> None:
    assert list(got) == list(ref)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        # mean error against the output's range: int8 rounding of an untrained student's near-constant
        # outputs makes single elements differ more
        err = float(np.mean(np.abs(got[name] - r)))
        assert err <= rel * (float(np.max(np.abs(r))) + 1e-3), (name, err)


@pytest.mark.slow
@pytest.mark.parametrize("signature", [TEXT, BLAZEFACE, VAD_PLUS_AGE], ids=["text", "detector", "two_inputs"])
def test_every_artifact_keeps_the_teachers_io(tmp_path: Path, signature: ModelSignature) -> None:
    state = _export(tmp_path, "mobile-arm64", multi_state(signature))
    x = state.data.inputs_of("test")
    ref = torch_predict_all(export_module(state.student, signature), signature, x)

    fp32 = state.artifacts["onnx_fp32"]
    sig = fp32.metadata["signature"]
    assert [t["name"] for t in sig["inputs"]] == list(signature.input_names)
    assert [t["name"] for t in sig["outputs"]] == list(signature.output_names)
    for t, spec in zip(sig["inputs"], signature.inputs, strict=True):
        assert t["dtype"] == ("float32" if spec.dtype == "float32" else "int64")
        assert t["shape"][1:] == list(spec.per_sample)
    _close(OnnxModel(fp32.path).predict_all(x), ref, 1e-3)
    _close(OnnxModel(state.artifacts["onnx_int8"].path).predict_all(x), ref, 0.1)

    tfl = state.artifacts["tflite_int8"]
    assert tfl.metadata["teacher_io"]["outputs"] == list(signature.output_names)
    got = TfliteModel(tfl.path).predict_all(x)  # names and layouts from the sidecar
    _close(got, ref, 0.1)
    images = [s.name for s in signature.inputs if len(s.shape) == 4]
    assert sorted(tfl.metadata["input_layouts"]) == images
    for name in images:
        assert any("NHWC" in c and name in c for c in tfl.metadata["changes_vs_teacher"])
    for t, spec in zip(tfl.metadata["signature"]["inputs"], signature.inputs, strict=True):
        assert t["dtype"].startswith("int") == spec.dtype.startswith("int")  # token ids stay integers


@pytest.mark.slow
def test_grid_head_detector_exports_with_the_teachers_nhwc_input(tmp_path: Path) -> None:
    """A TFLite-style NHWC detector on its inferred anchor grid: ONNX and TFLite int8 take the teacher's
    (N, H, W, C) input as is (no layout change to declare) and agree with torch."""
    state = _export(tmp_path, "mobile-arm64", multi_state(NHWC_DETECTOR, teacher_outputs=detector_outputs()))
    assert state.student_arch["heads"] == {"regressors": "grid", "classificators": "grid"}
    x = state.data.inputs_of("test")
    ref = torch_predict_all(export_module(state.student, NHWC_DETECTOR), NHWC_DETECTOR, x)
    _close(OnnxModel(state.artifacts["onnx_fp32"].path).predict_all(x), ref, 1e-3)
    tfl = state.artifacts["tflite_int8"]
    assert tfl.metadata["input_layouts"] == {}
    assert not any("NHWC" in c for c in tfl.metadata["changes_vs_teacher"])
    assert tfl.metadata["signature"]["inputs"][0]["shape"][1:] == [32, 32, 3]
    _close(TfliteModel(tfl.path).predict_all(x), ref, 0.1)


@pytest.mark.slow  # every export of a token model (~8 s CPU)
def test_onnx_predict_all_feeds_integer_inputs_and_keeps_names(tmp_path: Path) -> None:
    state = _export(tmp_path, "cpu-x86", multi_state(TEXT))
    x = {k: v.astype(np.int32) for k, v in state.data.inputs_of("test").items()}  # int32 data, int64 model
    got = OnnxModel(state.artifacts["onnx_fp32"].path).predict_all(x, batch_size=4)
    ref = torch_predict_all(export_module(state.student, TEXT), TEXT, x)
    _close(got, ref, 1e-3)
    with pytest.raises(Exception, match="attention_mask"):
        OnnxModel(state.artifacts["onnx_fp32"].path).predict_all({"input_ids": x["input_ids"]})


@pytest.mark.slow
def test_full_int8_two_input_model_runs_in_tflm_by_name(tmp_path: Path) -> None:
    from edgedistill.runtimes.tflm import run_tflm_all

    state = _export(tmp_path, "mcu-cortex-m7", multi_state(VAD_PLUS_AGE))
    rec = state.artifacts["tflite_int8_full"]
    dtypes = {t["name"]: t["dtype"] for t in rec.metadata["signature"]["inputs"]}
    assert "int8" in dtypes.values()  # the spectrogram input is int8 on the MCU
    assert any("int8" in c for c in rec.metadata["changes_vs_teacher"])
    x = {k: v[:8] for k, v in state.data.inputs_of("test").items()}
    got, arena = run_tflm_all(rec.path, x)
    lite = TfliteModel(rec.path).predict_all(x)
    assert arena > 0 and list(got) == list(VAD_PLUS_AGE.output_names)
    for name in got:  # the reference kernels and ai-edge-litert's agree to int8 rounding
        assert got[name].shape == lite[name].shape
        assert float(np.max(np.abs(got[name] - lite[name]))) <= 0.05 * (float(np.max(np.abs(lite[name]))) + 1e-3)
