"""Data-free distillation: the generator, a few adversarial steps against tiny torch and ONNX
teachers, and the distill step without a transfer set (real data, when given, only as test split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from factories import digits, make_ctx

from edgedistill.contracts.spec import DataFreeOptions, LossTerm
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.distill.datafree import Generator, Judge, synthesize, train_data_free
from edgedistill.workers.steps.distill.losses import build_loss
from edgedistill.workers.steps.students import StudentArch, build_module
from edgedistill.workers.steps.teacher import load_teacher

LOGITS = {"student_logits", "teacher_logits"}


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16), (6,), (2, 5, 7)])
def test_generator_makes_inputs_of_the_teachers_shape(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    bounded = Generator(shape, latent=8, input_range=(0.0, 1.0))
    with torch.no_grad():
        x = bounded(torch.randn(4, 8))
    assert tuple(x.shape) == (4, *shape)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    free = Generator(shape, latent=8, input_range=None)
    with torch.no_grad():
        y = free(torch.randn(16, 8))
    assert tuple(y.shape) == (16, *shape)
    per_channel = y.transpose(0, 1).reshape(shape[0], -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(shape[0]), atol=1e-5)  # affine-free BN output


def _tiny_opts(**kw: object) -> DataFreeOptions:
    return DataFreeOptions(input_range=(0.0, 1.0), steps_per_epoch=3, student_steps=1, latent_dim=8, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_few_adversarial_steps_train_the_student(fmt: str, digits_teacher_files: dict[str, Path]) -> None:
    x, _ = digits()
    teacher = load_teacher(digits_teacher_files[fmt])
    judge = Judge(teacher, x[:4])
    assert judge.differentiable == (fmt == "torchscript")
    assert len(judge.bn_names) == (2 if fmt == "torchscript" else 0)
    torch.manual_seed(0)
    student = build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 4, 1))
    before = [p.detach().clone() for p in student.parameters()]
    loss = build_loss([LossTerm(key="l1_logits")], task="classification", available=LOGITS)
    g, result = train_data_free(
        student, judge, loss, shape=(1, 8, 8), task="classification", opts=_tiny_opts(zo_directions=1),
        epochs=2, batch_size=16, learning_rate=1e-2, weight_decay=0.0, seed=0,
    )  # fmt: skip
    assert len(result.curve) == 2 and all(np.isfinite(v) for r in result.curve for v in r.values())
    assert result.terms["bn_statistics"] == (1.0 if fmt == "torchscript" else 0.0)
    assert ("autograd" in result.gradient) == (fmt == "torchscript")
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    xs = synthesize(g, 10, seed=0)
    assert xs.shape == (10, 1, 8, 8) and xs.dtype == np.float32 and xs.min() >= 0.0 and xs.max() <= 1.0


def _data_free_state(
    tmp_path: Path, teacher_file: Path, data: Path | None, **options: object
) -> tuple[object, RunState]:
    from edgedistill.workers.steps.build_student import BuildStudent
    from edgedistill.workers.steps.load_data import LoadData
    from edgedistill.workers.steps.load_teacher import LoadTeacher

    opts = {
        "method": "data_free", "epochs": 2, "batch_size": 16, "device": "cpu",
        "data_free": {"input_range": [0, 1], "steps_per_epoch": 2, "student_steps": 1, "synthetic_samples": 70},
        "student": {"width": 4, "depth": 1}, **options,
    }  # fmt: skip
    ctx, _ = make_ctx(tmp_path, teacher=teacher_file, data=data, profile="cpu-x86", **opts)
    state = RunState()
    for step in (LoadTeacher(), LoadData(), BuildStudent()):
        step.run(ctx, state)
    return ctx, state


def test_the_distill_step_without_data_generates_the_transfer_rows(
    tmp_path: Path, digits_teacher_files: dict[str, Path]
) -> None:
    from edgedistill.workers.steps.distill.step import Distill

    ctx, state = _data_free_state(tmp_path, digits_teacher_files["pt2"], None)
    assert state.data.synthetic and state.data.x.shape == (0, 1, 8, 8)
    Distill().run(ctx, state)  # type: ignore[arg-type]
    data = state.data
    assert data.synthetic and data.x.shape[0] == 70 and data.y is None
    assert sum(data.sizes().values()) == 70 and data.sizes()["test"] > 0
    (cached,) = state.teacher_outputs["train"].values()  # by output name, one output
    assert cached.shape == (data.sizes()["train"], 10)
    df = state.distillation["data_free"]
    assert df["real_test_samples"] == 0 and "unavailable" in df["real_data_note"]
    assert df["bn_layers_matched"] == 2 and df["teacher_gradient"].startswith("autograd")
    assert state.distillation["method"] == "data_free"
    assert state.metrics["student_fp32"]["test_accuracy"] is None


def test_real_data_given_with_data_free_is_only_the_test_split(
    tmp_path: Path, digits_teacher_files: dict[str, Path]
) -> None:
    from edgedistill.workers.steps.distill.step import Distill

    x, y = digits()
    npz = tmp_path / "real.npz"
    np.savez(npz, x=x[:50], y=y[:50])
    ctx, state = _data_free_state(tmp_path, digits_teacher_files["torchscript"], npz, method="data_free")
    assert state.data.sizes() == {"train": 0, "val": 0, "test": 50}
    Distill().run(ctx, state)  # type: ignore[arg-type]
    data = state.data
    test = data.splits["test"]
    np.testing.assert_array_equal(data.x[test], x[:50])  # the real rows, untouched, only in test
    assert (data.splits["train"] < 70).all() and (data.splits["val"] < 70).all()
    np.testing.assert_array_equal(data.y_of("test"), y[:50])
    df = state.distillation["data_free"]
    assert df["real_test_samples"] == 50 and "never trained, validated or calibrated on" in df["real_data_note"]
    assert 0.0 <= state.metrics["student_fp32"]["test_accuracy"] <= 1.0
    assert state.metrics["teacher"]["test_accuracy"] > 0.5
