"""The teacher quantized alone (step quantize_teacher): a real ONNX int8 file of the teacher, judged on the
test split like the student's files; teachers it cannot quantize get a reason and the job goes on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.workers.steps.teacher import OnnxTeacher
from edgedistill.workers.steps.teacher_int8 import KIND, QuantizeTeacher


def _onnx_teacher(module: torch.nn.Module, path: Path, *, batch: int | None) -> OnnxTeacher:
    axes = None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(
        module.eval(), (torch.zeros(batch or 2, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes=axes,
    )  # fmt: skip
    return OnnxTeacher(path)


def _state_with(case: Any, teacher: Any) -> Any:
    state = case.state()
    state.teacher = teacher
    return state


def test_an_onnx_teacher_is_quantized_and_judged_on_the_test_split(digits_case: Any, run_factory: Any) -> None:
    run = run_factory("cpu-x86")
    teacher = _onnx_teacher(digits_case.teacher.module, run.ctx.work_dir / "t.onnx", batch=None)
    state = _state_with(digits_case, teacher)
    QuantizeTeacher().run(run.ctx, state)

    art = state.artifacts[KIND]
    model = onnx.load(str(art.path))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # a real QDQ int8 graph
    assert art.metadata["quantization"]["tool"].endswith("quantize_static")
    assert art.metadata["quantization"]["calibration_samples"] == 64
    m = state.metrics[KIND]
    teacher_acc = float(np.mean(np.argmax(state.teacher_outputs["test"], 1) == digits_case.data.y_of("test")))
    assert m["samples"] == len(digits_case.data.splits["test"]) and m["runtime"] == "onnxruntime"
    assert m["top1_agreement"] >= 0.95 and abs(m["accuracy"] - teacher_acc) <= 0.03
    assert state.candidates[KIND]["seconds"] > 0
    # Not the student's: no int8 drop against the float student, no probe, no budget check.
    assert "drop_vs_student_fp32_pp" not in m and "probe" not in state.artifacts


def test_a_fixed_batch_one_teacher_is_calibrated_one_sample_at_a_time(digits_case: Any, run_factory: Any) -> None:
    run = run_factory("cpu-x86", calibration_samples=8)
    teacher = _onnx_teacher(digits_case.teacher.module, run.ctx.work_dir / "b1.onnx", batch=1)
    state = _state_with(digits_case, teacher)
    QuantizeTeacher().run(run.ctx, state)
    assert state.metrics[KIND]["top1_agreement"] >= 0.9, state.candidates


def test_a_torch_teacher_is_exported_then_quantized(digits_case: Any, run_factory: Any) -> None:
    run = run_factory("cpu-x86")

    sig = ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 1, 8, 8)),),  # the data calls it "input"
        outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 10), kind="logits"),),
    )

    @dataclasses.dataclass
    class TorchTeacher:
        _module: torch.nn.Module
        io: ModelSignature
        format: str = "torchscript"
        path: Path = Path("teacher.pt")
        fixed_batch: int | None = None

    state = _state_with(digits_case, TorchTeacher(digits_case.teacher.module, sig))
    state.signature = sig
    QuantizeTeacher().run(run.ctx, state)
    assert state.metrics[KIND]["top1_agreement"] >= 0.95
    assert [i.name for i in onnx.load(str(state.artifacts[KIND].path)).graph.input] == ["x"]


@pytest.mark.parametrize(
    ("fmt", "options", "reason"),
    [("tflite", {}, "float source model"), ("onnx", {"teacher_int8": False}, None)],
)
def test_teachers_it_cannot_or_need_not_quantize_leave_no_file(
    digits_case: Any, run_factory: Any, fmt: str, options: dict[str, Any], reason: str | None
) -> None:
    run = run_factory("cpu-x86", **options)
    state = _state_with(digits_case, dataclasses.replace(digits_case.teacher, format=fmt))
    QuantizeTeacher().run(run.ctx, state)
    assert KIND not in state.artifacts and KIND not in state.metrics
    if reason is None:
        assert state.candidates == {}
    else:
        assert reason in state.candidates[KIND]["reason"]
        assert any(reason in str(e.data.get("message")) for e in run.of_kind("progress"))


def test_an_onnx_file_the_quantizer_refuses_is_a_reason_not_a_failure(digits_case: Any, run_factory: Any) -> None:
    run = run_factory("cpu-x86", calibration="entropy", calibration_samples=1)
    broken = run.ctx.work_dir / "t.onnx"
    teacher = _onnx_teacher(digits_case.teacher.module, broken, batch=None)
    broken.write_bytes(b"not onnx any more")  # the file changed under the loaded teacher
    state = _state_with(digits_case, teacher)
    QuantizeTeacher().run(run.ctx, state)
    assert KIND not in state.artifacts
    assert state.candidates[KIND]["reason"].startswith("onnxruntime could not quantize the teacher")
    assert not list(run.ctx.work_dir.glob("teacher_int8*"))
