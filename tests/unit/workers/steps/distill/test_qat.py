"""Quantization-aware distillation: BN folding, QAT-KD on a tiny student producing the int8 TFLite the
export step converts from the trained fake-quant graph, and the runner's automatic QAT-KD after an
int8 drop over the accuracy budget."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from factories import make_ctx

from edgedistill.contracts.errors import Int8OverBudget
from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.workers.pipeline import runner
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.pipeline.registry import step_class
from edgedistill.workers.steps.distill.qat import QatKD
from edgedistill.workers.steps.distill.qat_graph import fuse_batchnorm
from edgedistill.workers.steps.students import StudentArch, build_module


def test_batchnorm_folding_keeps_the_function() -> None:
    torch.manual_seed(0)
    m = build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2, kernel=5, expansion=2))
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    m.eval()
    fused = fuse_batchnorm(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in fused.modules())
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # QAT training plus every export (~14 s CPU)
def test_qat_kd_trains_fake_quant_and_exports_int8_from_it(run_factory: Any, digits_case: Any) -> None:
    from edgedistill.runtimes.litert import run_tflite
    from edgedistill.workers.steps.export_tflite import ExportTflite

    run = run_factory("mcu-cortex-m4", method="qat_kd", qat_epochs=2, batch_size=64, device="cpu")
    state = digits_case.state()
    state.distillation = {"method": "qat_kd", "loss_terms": [{"key": "kd", "weight": 1.0, "kwargs": {}}]}
    QatKD().run(run.ctx, state)
    info = state.distillation["qat"]
    assert info["done"] and info["why"] == "method qat_kd" and info["epochs_run"] == 2
    assert state.qat_model is not None and state.qat_model.layout == "NHWC"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in state.student.modules())  # folded
    assert [e.data["epoch"] for e in run.of_kind("epoch")] == [1, 2]

    ExportTflite().run(run.ctx, state)
    art = state.artifacts["tflite_int8_full"]
    assert art.metadata["quantization"]["calibration"].startswith("quantization-aware training")
    assert art.metadata["signature"]["inputs"][0]["dtype"] == "int8"
    x = digits_case.data.x_of("test")[:40]
    tfl = run_tflite(art.path, x, layout="NHWC")
    from edgedistill.workers.steps.distill.qat import _layout_module

    adapter = _layout_module(copy.deepcopy(state.qat_model.graph), "NHWC").eval()
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    conv = quantize_pt2e.convert_pt2e(copy.deepcopy(state.qat_model.graph), fold_quantize=False)
    move_exported_model_to_eval(conv)
    with torch.no_grad():
        ref = conv(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))).numpy()
        fake = adapter(torch.from_numpy(x)).numpy()
    # the TFLite model computes the trained int8 graph (argmax agreement; small requantisation noise)
    assert (tfl.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert (fake.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_a_rewound_qat_epoch_is_warned(run_factory: Any, digits_case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fine-tuning's spike rewinds (trainer._spiked) reach the report's warnings, as the float
    training's do; the spike itself is staged on the real fit's result."""
    from edgedistill.workers.steps.distill import fitting

    real_fit = fitting.fit

    def spiking_fit(*args: Any, **kwargs: Any) -> Any:
        fitted = real_fit(*args, **kwargs)
        spike = {"epoch": 1, "train_loss": 9.0, "previous_loss": 1.0, "val_fidelity": 0.1, "lr_scale": 0.5}
        fitted.result.rollbacks.append(spike)
        return fitted

    monkeypatch.setattr(fitting, "fit", spiking_fit)
    run = run_factory("mcu-cortex-m4", method="qat_kd", qat_epochs=1, batch_size=64, device="cpu")
    state = digits_case.state()
    state.distillation = {"method": "qat_kd", "loss_terms": [{"key": "kd", "weight": 1.0, "kwargs": {}}]}
    QatKD().run(run.ctx, state)
    assert [r["epoch"] for r in state.distillation["qat"]["rollbacks"]] == [1]
    assert any(w.startswith("quantization-aware fine-tuning loss spiked at epoch(s) 1;") for w in state.warnings)


def test_qat_is_a_no_op_unless_asked(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("cpu-x86", qat="auto")
    state = digits_case.state()
    student = state.student
    QatKD().run(run.ctx, state)
    assert state.qat_model is None and state.student is student and "qat" not in state.distillation


class _Qat(QatKD):  # the real step's restart declaration, a stand-in run()
    name = "qat_kd"
    stage = "distill"
    calls: ClassVar[list[str]] = []

    def run(self, ctx: RunContext, state: RunState) -> None:
        info = state.distillation.get("qat") or {}
        self.calls.append("qat" if info.get("trigger") else "qat-skip")
        if info.get("trigger"):
            state.distillation["qat"] = {**info, "done": True}


class _Export(Step):
    name = "export"
    stage = "export"

    def run(self, ctx: RunContext, state: RunState) -> None:
        _Qat.calls.append("export")
        path = ctx.work_dir / "m.bin"
        path.write_bytes(b"x")
        from edgedistill.workers.pipeline.context import ArtifactRecord

        state.artifacts["onnx_int8"] = ArtifactRecord("onnx_int8", path, "0" * 64, 1)


class _Verify(Step):
    name = "verify"
    stage = "verify"

    def run(self, ctx: RunContext, state: RunState) -> None:
        _Qat.calls.append("verify")
        state.metrics["onnx_int8"] = {"accuracy": 0.9 if (state.distillation.get("qat") or {}).get("done") else 0.5}
        if not (state.distillation.get("qat") or {}).get("done"):
            raise Int8OverBudget("onnx_int8 lost 40 pp", details={"ptq": {"onnx_int8": {"accuracy": 0.5}},
                                                                  "warnings": ["onnx_int8 lost 40 pp"]})  # fmt: skip


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[str, type[Step]] = {"qat_kd": _Qat, "export": _Export, "verify": _Verify}
    monkeypatch.setattr(runner, "step_class", lambda n: table[n] if n in table else step_class(n))
    _Qat.calls.clear()


@pytest.mark.usefixtures("fake_steps")
def test_runner_runs_qat_kd_after_an_int8_drop_and_exports_again(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, device="cpu")
    spec = ctx.spec.model_copy(update={"out_dir": tmp_path / "out"})
    events: list[Any] = []
    result = runner.run_pipeline(spec, events.append, steps=("qat_kd", "export", "verify"))
    assert _Qat.calls == ["qat-skip", "export", "verify", "qat", "export", "verify"]
    assert result.warnings == []  # the PTQ drop is a finding kept in the report, not a leftover warning
    assert any("running quantization-aware distillation" in e.data.get("message", "") for e in events)
    assert (result.out_dir / "m.bin").is_file()


@pytest.mark.usefixtures("fake_steps")
def test_without_a_qat_step_the_drop_is_a_warning(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, device="cpu")
    spec = ctx.spec.model_copy(update={"out_dir": tmp_path / "out"})
    result = runner.run_pipeline(spec, steps=("export", "verify"))
    assert result.warnings == ["onnx_int8 lost 40 pp"]


def _detector(score_kind: str) -> ModelSignature:
    return ModelSignature(
        inputs=(TensorSpec(name="image", dtype="float32", shape=(None, 3, 32, 32)),),
        outputs=(
            OutputSpec(name="boxes", dtype="float32", shape=(None, 64, 4), kind="boxes", scores="scores"),
            OutputSpec(name="scores", dtype="float32", shape=(None, 64, 1), kind=score_kind),  # type: ignore[arg-type]
        ),
    )


def test_verify_asks_for_qat_for_a_multi_output_student_only_where_it_can_run(tmp_path: Path) -> None:
    """options.qat auto: an int8 drop of a raw-output student (a detector's boxes and logit scores) goes
    to quantization-aware distillation once; a sigmoid head, a settled QAT or qat never keep it a warning."""
    from edgedistill.workers.steps.verify import _multi_qat_applies

    ctx, _ = make_ctx(tmp_path, qat="auto")
    state = RunState()
    state.signature = _detector("sigmoid_logits")
    assert _multi_qat_applies(ctx, state)
    state.distillation = {"qat": {"skipped": "tried"}}
    assert not _multi_qat_applies(ctx, state)
    state.distillation = {}
    state.signature = _detector("sigmoid")
    assert not _multi_qat_applies(ctx, state)
    (tmp_path / "never").mkdir()
    never, _ = make_ctx(tmp_path / "never", qat="never")
    state.signature = _detector("sigmoid_logits")
    assert not _multi_qat_applies(never, state)


def test_qat_asked_for_by_verify_is_skipped_with_the_reason_for_a_sigmoid_head(tmp_path: Path) -> None:
    """The fake-quant graph of the raw student is not the exported one when a sigmoid follows it: the
    job keeps its post-training int8 files and says why QAT did not run."""
    ctx, events = make_ctx(tmp_path, qat="auto")
    state = RunState()
    state.signature = _detector("sigmoid")
    state.distillation = {"qat": {"trigger": "tflite_int8 lost 3 pp"}}
    QatKD().run(ctx, state)
    info = state.distillation["qat"]
    assert "sigmoid output 'scores'" in info["skipped"] and not info.get("done")
    assert state.qat_model is None and info["skipped"] in state.warnings
    assert any(e.kind == "warning" for e in events)
