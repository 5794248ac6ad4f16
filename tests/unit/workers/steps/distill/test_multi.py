"""Distilling a teacher with two inputs (token ids + float features) and three outputs (a class index,
class probabilities, a sigmoid score) end to end through load_teacher, load_data and distill, with a
tiny generic student that follows the engine contract (one raw head per trained output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_ctx, write_npz
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.signature import ModelSignature
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.distill.step import Distill
from edgedistill.workers.steps.heads import trained_output_names
from edgedistill.workers.steps.load_data import LoadData
from edgedistill.workers.steps.load_teacher import LoadTeacher

VOCAB, SEQ, FEATS = 20, 10, 6


class Teacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(VOCAB, 4)
        self.lin = nn.Linear(4 + FEATS, 3)
        self.score = nn.Linear(4 + FEATS, 1)

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.cat([self.emb(ids).mean(1) * 3, feats], 1)
        z = self.lin(h) * 3
        return {"label": z.argmax(1), "probabilities": torch.softmax(z, 1), "wake": torch.sigmoid(self.score(h) * 3)}


class TinyStudent(nn.Module):
    """The contract's generic student: embedding-mean for integer inputs, flatten for floats, one
    Linear head per trained output with the teacher's per-sample shape, raw values."""

    def __init__(self, signature: ModelSignature) -> None:
        super().__init__()
        self.int_inputs = [s.dtype.startswith("int") for s in signature.inputs]
        self.embs = nn.ModuleList([nn.Embedding(VOCAB, 8) if is_int else nn.Identity() for is_int in self.int_inputs])
        width = sum(
            8 if is_int else int(np.prod(s.per_sample))
            for is_int, s in zip(self.int_inputs, signature.inputs, strict=True)
        )
        self.body = nn.Sequential(nn.Linear(width, 32), nn.ReLU())
        names = trained_output_names(signature)
        self.shapes = [tuple(signature.output(n).per_sample) for n in names]
        self.heads = nn.ModuleList([nn.Linear(32, int(np.prod(s))) for s in self.shapes])

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [
            emb(x).mean(1) if is_int else x.flatten(1)
            for emb, is_int, x in zip(self.embs, self.int_inputs, inputs, strict=True)
        ]
        h = self.body(torch.cat(parts, 1))
        return tuple(head(h).reshape(-1, *shape) for head, shape in zip(self.heads, self.shapes, strict=True))


def _files(tmp_path: Path, n: int = 800) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(n, SEQ)).astype(np.int64)
    feats = rng.normal(size=(n, FEATS)).astype(np.float32)
    teacher = tmp_path / "t.pt"
    example = (torch.from_numpy(ids[:2]), torch.from_numpy(feats[:2]))
    torch.jit.save(torch.jit.trace(Teacher().eval(), example, strict=False), str(teacher))
    data = write_npz(tmp_path / "d.npz", ids=ids, feats=feats)
    return teacher, data


def _run(tmp_path: Path, **options: object) -> RunState:
    teacher, data = _files(tmp_path)
    ctx, _ = make_ctx(tmp_path, teacher=teacher, data=data, **options)
    state = RunState()
    LoadTeacher().run(ctx, state)
    LoadData().run(ctx, state)
    torch.manual_seed(0)
    state.student = TinyStudent(state.signature)
    Distill().run(ctx, state)
    return state


@pytest.mark.slow  # ~50 s on the shared CI CPUs (40 epochs)
def test_two_inputs_three_outputs_distill_per_output(tmp_path: Path) -> None:
    state = _run(tmp_path, epochs=40, batch_size=64, learning_rate=1e-2, patience=40)
    sig = state.signature
    assert sig.input_names == ("ids", "feats")
    assert [(o.name, o.kind) for o in sig.outputs] == [
        ("label", "class_index"), ("probabilities", "probabilities"), ("wake", "sigmoid"),
    ]  # fmt: skip
    assert state.data.primary_output == "probabilities"
    keys = [t["key"] for t in state.distillation["loss_terms"]]
    assert keys == ["kl_output", "bce_output"]
    m = state.metrics["student_fp32"]["outputs"]
    assert set(m) == {"probabilities", "wake"}
    assert m["probabilities"]["top1_agreement"] > 0.85
    assert m["wake"]["balanced_agreement"] > 0.85 and m["wake"]["auc"] > 0.9
    assert state.metrics["student_fp32"]["quality_problem"] is None
    assert state.training["best_val_fidelity"] > 0.85
    # the deployable module gives every teacher output with its semantics
    inputs = state.data.inputs_of("test")
    with torch.inference_mode():
        label, probs, wake = state.export_module(torch.from_numpy(inputs["ids"]), torch.from_numpy(inputs["feats"]))
    assert label.dtype == torch.int64 and torch.equal(label, probs.argmax(1))
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert float(wake.min()) >= 0 and float(wake.max()) <= 1
    teacher_labels = state.teacher_outputs["test"]["label"]
    assert float((label.numpy() == teacher_labels).mean()) > 0.85


def test_weights_and_methods_follow_the_options(tmp_path: Path) -> None:
    state = _run(tmp_path, epochs=2, outputs={"wake": {"weight": 0}})
    assert [t["key"] for t in state.distillation["loss_terms"]] == ["kl_output"]
    with pytest.raises(InputError, match="method fitnet supports teachers with one input and one output"):
        _run(tmp_path / "b", method="fitnet")


@pytest.mark.slow  # ~40 s on the loaded shared CPUs (teacher trace, 3 epochs, ONNX export, verify, report)
def test_verify_and_report_judge_every_output_of_every_variant(tmp_path: Path) -> None:
    import warnings

    from edgedistill.contracts.report import read_report
    from edgedistill.service.web.reportview import build
    from edgedistill.workers.steps.artifacts import record_artifact
    from edgedistill.workers.steps.report import Report
    from edgedistill.workers.steps.verify import Verify

    teacher, data = _files(tmp_path)
    ctx, _ = make_ctx(tmp_path, teacher=teacher, data=data, epochs=3, profile="cpu-x86")
    state = RunState()
    LoadTeacher().run(ctx, state)
    LoadData().run(ctx, state)
    torch.manual_seed(0)
    state.student = TinyStudent(state.signature)
    Distill().run(ctx, state)
    sig = state.signature
    path = ctx.work_dir / "student_fp32.onnx"
    inputs = state.data.inputs_of("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            state.export_module, tuple(torch.from_numpy(inputs[n][:2]) for n in sig.input_names), str(path),
            dynamo=False, opset_version=17, input_names=list(sig.input_names), output_names=list(sig.output_names),
            dynamic_axes={n: {0: "batch"} for n in (*sig.input_names, *sig.output_names)},
        )  # fmt: skip
    record_artifact(ctx, state, kind="onnx_fp32", path=path)
    Verify().run(ctx, state)
    m = state.metrics
    assert set(m) >= {"teacher", "student_fp32", "onnx_fp32"}
    assert m["teacher"]["outputs"]["wake"]["balanced_agreement"] == 1.0  # the teacher agrees with itself
    for name in sig.output_names:  # ONNX runs what torch runs, output by output
        assert m["onnx_fp32"]["outputs"][name]["headline"] == pytest.approx(
            m["student_fp32"]["outputs"][name]["headline"], abs=0.01
        )
    assert m["onnx_fp32"]["outputs"]["label"]["kind"] == "class_index"
    assert state.quality["variant"] in m
    Report().run(ctx, state)
    summary = (ctx.work_dir / "summary.md").read_text()
    assert "## Outputs" in summary and "| wake | sigmoid |" in summary and "balanced agreement" in summary
    assert "r2" not in summary.lower().replace("r²", "")
    view = build(read_report(state.report))
    assert [o.name for o in view.outputs] == ["label", "probabilities", "wake"]
    assert view.quality_name == "headline across outputs"


@pytest.mark.parametrize("options", [{"method": "qat_kd"}, {"qat": "always"}])
def test_quantization_aware_training_asked_for_is_refused_at_load(tmp_path: Path, options: dict[str, str]) -> None:
    """A TorchScript teacher records no signature for the submit check: the worker refuses QAT for its
    several inputs/outputs before training, with the reason, instead of skipping it in a job that succeeds."""
    teacher, data = _files(tmp_path, n=64)
    ctx, _ = make_ctx(tmp_path, teacher=teacher, data=data, **options)
    state = RunState()
    LoadTeacher().run(ctx, state)
    with pytest.raises(
        InputError, match=r"quantization-aware training is implemented for teachers with float inputs.*int64 input"
    ):
        LoadData().run(ctx, state)


def test_validation_judges_detector_scores_per_image_as_well_as_per_anchor() -> None:
    from edgedistill.workers.steps.distill.multi import selection_view
    from edgedistill.workers.steps.metrics import output_metrics, variant_headline

    rng = np.random.default_rng(0)
    teacher = rng.normal(-6.0, 1.0, size=(200, 64, 1))
    teacher[:100, 5, 0] = 4.0  # half the images have a face on anchor 5
    # a student that fires one false anchor on 30 empty images: per anchor it is almost perfect
    student = teacher.copy()
    student[100:130, 40, 0] = 3.0
    scores = output_metrics("sigmoid_logits", student, teacher)
    boxes = {"kind": "boxes", "headline": 0.9}
    per = {"scores": scores, "boxes": boxes}
    judged = selection_view(per)
    assert scores["image_agreement"] == pytest.approx(170 / 200)
    assert judged["scores"]["headline"] == pytest.approx((scores["balanced_agreement"] + 170 / 200) / 2)
    assert judged["boxes"] is boxes  # outputs without an image decision keep their headline
    assert variant_headline(judged) < variant_headline(per)  # the false faces now cost the student
    # a one-unit sigmoid output has no image decision: unchanged
    wake = output_metrics("sigmoid_logits", student[:, :1], teacher[:, :1])
    assert selection_view({"wake": wake})["wake"]["headline"] == wake["headline"]
