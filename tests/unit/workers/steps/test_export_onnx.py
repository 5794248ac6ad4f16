from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgedistill.contracts.errors import PipelineError
from edgedistill.runtimes.onnx import run_onnx
from edgedistill.workers.steps.export_onnx import OPSET, ExportOnnx, torch_predict


def test_exports_a_checked_dynamic_batch_model_that_matches_torch(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("cpu-x86")
    state = digits_case.state()
    ExportOnnx().run(run.ctx, state)

    rec = state.artifacts["onnx_fp32"]
    model = onnx.load(str(rec.path))
    onnx.checker.check_model(model, full_check=True)
    assert {i.domain or "ai.onnx": i.version for i in model.opset_import}["ai.onnx"] == OPSET
    sig = rec.metadata["signature"]
    assert sig["inputs"][0]["name"] == "input" and sig["outputs"][0]["name"] == "output"
    assert sig["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert sig["layout"] == "NCHW"
    assert rec.metadata["io_quantization"] is None  # float model

    x = digits_case.data.x_of("test")[:33]  # an odd batch: the batch axis really is dynamic
    np.testing.assert_allclose(run_onnx(rec.path, x), torch_predict(digits_case.student, x), atol=1e-4)
    side = json.loads((run.ctx.work_dir / "student_fp32.onnx.json").read_text())
    assert side["sha256"] == rec.sha256 and side["check"]["max_abs_diff_vs_torch"] < 1e-4


def test_vector_student(run_factory: Any, vector_case: Any) -> None:
    run = run_factory("mobile-arm64")
    state = vector_case.state()
    ExportOnnx().run(run.ctx, state)
    sig = state.artifacts["onnx_fp32"].metadata["signature"]
    assert sig["inputs"][0]["shape"] == ["batch", 12] and sig["layout"] == "NF"


def test_skipped_when_the_profile_wants_no_onnx(run_factory: Any, make_profile: Any, digits_case: Any) -> None:
    run = run_factory(make_profile("mobile-arm64", targets=["tflite_int8"]))
    state = digits_case.state()
    ExportOnnx().run(run.ctx, state)
    assert state.artifacts == {}
    assert list(run.ctx.work_dir.iterdir()) == []


class _Untraceable(torch.nn.Module):
    """A tensor value turned into a Python float: tracing bakes the example's value in as a constant,
    so the exported graph computes something else for every other input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float(x.sum())


def test_a_model_the_export_gets_wrong_fails_without_a_file(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("cpu-x86")
    state = digits_case.state()
    state.student = _Untraceable().eval()
    with pytest.raises(PipelineError, match="disagrees with the torch student"):
        ExportOnnx().run(run.ctx, state)
    assert "onnx_fp32" not in state.artifacts
    assert list(run.ctx.work_dir.iterdir()) == []


def test_keeps_the_teacher_input_and_output_names(run_factory: Any, digits_case: Any) -> None:
    """Drop-in student (issue 10): a teacher whose tensors are called pixels/class_scores gets a student
    file with the same names, so the user's feed dict and output lookup work unchanged."""
    from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec

    run = run_factory("cpu-x86")
    state = digits_case.state()
    state.signature = ModelSignature(
        inputs=(TensorSpec(name="pixels", dtype="float32", shape=(None, 1, 8, 8)),),
        outputs=(OutputSpec(name="class_scores", dtype="float32", shape=(None, 10), kind="logits"),),
    )
    ExportOnnx().run(run.ctx, state)
    model = onnx.load(str(state.artifacts["onnx_fp32"].path))
    assert [i.name for i in model.graph.input] == ["pixels"]
    assert [o.name for o in model.graph.output] == ["class_scores"]
