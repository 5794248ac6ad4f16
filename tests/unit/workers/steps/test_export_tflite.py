from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from edgedistill.contracts.errors import PipelineError
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.runtimes.litert import run_tflite
from edgedistill.workers.steps.export_onnx import torch_predict
from edgedistill.workers.steps.export_tflite import ExportTflite, convert_int8
from edgedistill.workers.steps.model_info import describe_tflite, tflite_ops

MCU_OPS = set(builtin_profiles()["mcu-cortex-m4"].op_allowlist or [])


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


def test_mobile_image_model_has_float_io_int8_inside_and_nhwc_input(exported: Any, digits_case: Any) -> None:
    _, state = exported("mobile-arm64", "digits")
    rec = state.artifacts["tflite_int8"]
    sig = rec.metadata["signature"]
    assert sig["inputs"][0]["dtype"] == "float32" and sig["outputs"][0]["dtype"] == "float32"
    assert sig["inputs"][0]["shape"] == [1, 8, 8, 1] and sig["layout"] == "NHWC"
    ops = tflite_ops(rec.path)
    # The boundary Q/DQ pairs stay as ops; the convolutions run in int8; no layout transposes.
    assert "QUANTIZE" in ops and "DEQUANTIZE" in ops and "TRANSPOSE" not in ops
    assert rec.metadata["io"] == "float32"

    x = digits_case.data.x_of("test")
    assert _agreement(run_tflite(rec.path, x), torch_predict(digits_case.student, x)) >= 0.9


def test_mcu_image_model_has_int8_io_with_its_scale(exported: Any, digits_case: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    rec = state.artifacts["tflite_int8_full"]
    info = describe_tflite(rec.path)  # read back from the file, not from what the step claims
    inp, out = info["signature"]["inputs"][0], info["signature"]["outputs"][0]
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert inp["shape"] == [1, 8, 8, 1]
    assert 0 < inp["quantization"]["scale"] < 1 and -128 <= inp["quantization"]["zero_point"] <= 127
    assert rec.metadata["io_quantization"]["input"]["scale"] == pytest.approx(inp["quantization"]["scale"])
    assert set(tflite_ops(rec.path)) <= MCU_OPS  # runs on the firmware's op resolver as is
    assert "QUANTIZE" not in tflite_ops(rec.path)

    x = digits_case.data.x_of("test")
    assert _agreement(run_tflite(rec.path, x), torch_predict(digits_case.student, x)) >= 0.9


@pytest.mark.slow  # the sequence case's exports, used by no fast test (~5 s CPU)
def test_sequence_model_takes_n_1_t_c_without_transpose(exported: Any, sequence_case: Any) -> None:
    _, state = exported("mcu-cortex-m7", "sequence")
    rec = state.artifacts["tflite_int8_full"]
    assert rec.metadata["signature"]["inputs"][0]["shape"] == [1, 1, 16, 3]
    assert "TRANSPOSE" not in tflite_ops(rec.path)
    x = sequence_case.data.x_of("test")
    assert _agreement(run_tflite(rec.path, x), torch_predict(sequence_case.student, x)) >= 0.85


def test_vector_regression_model(exported: Any, vector_case: Any) -> None:
    _, state = exported("mobile-arm64", "vector")
    rec = state.artifacts["tflite_int8"]
    assert rec.metadata["signature"]["inputs"][0]["shape"] == [1, 12]
    assert tflite_ops(rec.path) == ["DEQUANTIZE", "FULLY_CONNECTED", "QUANTIZE"]
    x = vector_case.data.x_of("test")
    ref = torch_predict(vector_case.student, x)
    got = run_tflite(rec.path, x)
    assert np.mean((got - ref) ** 2) < 0.05 * np.var(ref)


def test_cpu_profile_makes_only_the_float_io_model(exported: Any) -> None:
    _, state = exported("cpu-x86", "digits")
    assert "tflite_int8" in state.artifacts and "tflite_int8_full" not in state.artifacts


def test_skipped_without_a_tflite_target(run_factory: Any, make_profile: Any, digits_case: Any) -> None:
    run = run_factory(make_profile("cpu-x86", targets=["onnx_fp32", "onnx_int8"]))
    state = digits_case.state()
    ExportTflite().run(run.ctx, state)
    assert state.artifacts == {} and list(run.ctx.work_dir.iterdir()) == []


class _Sort(torch.nn.Module):
    """No op the int8 quantizer annotates: the converter keeps float I/O."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x.flatten(1), dim=1).values[:, :10]


@pytest.mark.slow  # litert-torch conversion (~3 s CPU)
def test_a_model_that_cannot_be_full_int8_is_refused_without_a_file(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("mcu-cortex-m4")
    state = digits_case.state()
    state.student = _Sort()
    with pytest.raises(PipelineError, match="must have int8 input and output"):
        ExportTflite().run(run.ctx, state)
    assert "tflite_int8_full" not in state.artifacts
    assert list(run.ctx.work_dir.iterdir()) == []


@pytest.mark.slow  # a litert-torch conversion per student family (~5 s CPU each)
@pytest.mark.parametrize(
    ("family", "shape"), [("ds_cnn2d", (3, 16, 16)), ("ds_cnn1d", (2, 32)), ("mlp", (10,))]
)  # fmt: skip
def test_engine_students_convert_to_mcu_ops_only(tmp_path: Any, family: str, shape: tuple[int, ...]) -> None:
    """The core's student families (workers.steps.students) give TFLite the MCU firmware can run."""
    students = pytest.importorskip("edgedistill.workers.steps.students")
    arch = students.StudentArch(family, shape, 4, 8, 2)
    module = students.build_module(arch).eval()
    calib = np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32)
    modality = {"ds_cnn2d": "image", "ds_cnn1d": "sequence", "mlp": "vector"}[family]
    path = tmp_path / "m.tflite"
    convert_int8(module, modality, calib, path, float_io=False)
    ops = set(tflite_ops(path))
    assert ops <= MCU_OPS, f"not on the MCU allow-list: {sorted(ops - MCU_OPS)}"
    assert describe_tflite(path)["signature"]["inputs"][0]["dtype"] == "int8"


class _StrideTwoBlock(torch.nn.Module):
    """BlazeFace's stride-2 block: one activation feeds a max-pool shortcut and an asymmetric zero pad
    before a stride-2 conv (SAME padding written out, as the TFLite route does)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2)
        self.head = torch.nn.Linear(8 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        y = self.down(torch.nn.functional.pad(h, [0, 1, 0, 1])) + torch.nn.functional.max_pool2d(h, 2, 2)
        return self.head(torch.relu(y).flatten(1))


@pytest.mark.slow  # one litert-torch conversion (~10 s CPU)
def test_an_activation_shared_by_an_nhwc_and_an_nchw_op_converts_and_runs(tmp_path: Any) -> None:
    """litert-torch 0.10's layout pass loses a shared dequantize node's shape here unless patched
    (export_tflite._shared_dq_layout_fix); the int8 file must also compute what the module does."""
    torch.manual_seed(0)
    module = _StrideTwoBlock().eval()
    calib = np.random.default_rng(0).normal(size=(32, 3, 16, 16)).astype(np.float32)
    path = tmp_path / "m.tflite"
    layout = convert_int8(module, "image", calib, path, float_io=True)
    assert layout == "NHWC"
    got = run_tflite(path, calib.transpose(0, 2, 3, 1).copy())
    want = torch_predict(module, calib)
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() < 0.1 * scale, (np.abs(got - want).max(), scale)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.8


class _DataDependent(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        return y if y.sum() > 0 else -y


def test_an_unexportable_model_fails_with_the_reason(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("mobile-arm64")
    state = digits_case.state()
    state.student = _DataDependent().eval()
    with pytest.raises(PipelineError, match=r"TFLite conversion \(tflite_int8\) failed"):
        ExportTflite().run(run.ctx, state)
    assert list(run.ctx.work_dir.iterdir()) == []


def test_debug_names_are_stripped_but_signatures_kept(exported: Any, digits_case: Any) -> None:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    _, state = exported("mobile-arm64", "digits")
    rec = state.artifacts["tflite_int8"]
    assert rec.metadata["stripped_debug_name_bytes"] > 0
    model = flatbuffer_utils.read_model(rec.path)
    sg = model.subgraphs[0]
    io = set(sg.inputs) | set(sg.outputs)
    assert all(t.name in (None, b"") for i, t in enumerate(sg.tensors) if i not in io)
    assert all(sg.tensors[i].name for i in io)
    it = Interpreter(model_path=str(rec.path))
    runner = it.get_signature_runner("serving_default")  # apps calling the signature still work
    x = digits_case.data.x_of("test")[:1].transpose(0, 2, 3, 1)
    out = next(iter(runner(**{next(iter(runner.get_input_details())): x}).values()))
    np.testing.assert_allclose(out, run_tflite(rec.path, digits_case.data.x_of("test")[:1]), atol=1e-6)


def test_predict_all_reads_the_single_input_layout_from_the_sidecar(exported: Any, digits_case: Any) -> None:
    from edgedistill.runtimes.litert import TfliteModel

    _, state = exported("mobile-arm64", "digits")
    rec = state.artifacts["tflite_int8"]
    x = digits_case.data.x_of("test")  # NCHW data, NHWC model
    got = TfliteModel(rec.path).predict_all({"pixels": x})
    np.testing.assert_allclose(next(iter(got.values())), run_tflite(rec.path, x))


@pytest.mark.slow  # its own export run (~4 s CPU)
def test_the_file_is_read_under_the_teacher_names(run_factory: Any, digits_case: Any) -> None:
    """litert-torch names the tensors args_0 / output_0; the metadata maps them to the teacher's names
    so predict_all (runtimes, agent, bench) answers by the teacher's output name (issue 10)."""
    from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
    from edgedistill.runtimes.litert import TfliteModel

    run = run_factory("mobile-arm64")
    state = digits_case.state()
    state.signature = ModelSignature(
        inputs=(TensorSpec(name="pixels", dtype="float32", shape=(None, 1, 8, 8)),),
        outputs=(OutputSpec(name="class_scores", dtype="float32", shape=(None, 10), kind="logits"),),
    )
    ExportTflite().run(run.ctx, state)
    rec = state.artifacts["tflite_int8"]
    assert rec.metadata["teacher_io"] == {"inputs": ["pixels"], "outputs": ["class_scores"]}
    x = digits_case.data.x_of("test")[:20]
    got = TfliteModel(rec.path).predict_all({"pixels": x})
    assert list(got) == ["class_scores"]
    np.testing.assert_allclose(got["class_scores"], run_tflite(rec.path, x, layout="NHWC"), atol=1e-6)
