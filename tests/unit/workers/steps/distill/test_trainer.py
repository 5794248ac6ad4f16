"""The training loop: learns, keeps the best epoch, is reproducible, stops early, rewinds a loss spike,
honours time limits and cancellation; and the Distill step wires it to the pipeline state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from factories import digits, digits_teacher, make_ctx

from edgedistill.contracts.errors import Cancelled
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.distill.losses import WeightedSum, build_loss, method_terms
from edgedistill.workers.steps.distill.step import Distill
from edgedistill.workers.steps.distill.trainer import (
    MAX_ROLLBACKS,
    EpochRecord,
    SplitTensors,
    TrainConfig,
    _spiked,
    fidelity,
    predict,
    train_student,
)
from edgedistill.workers.steps.students import StudentArch, build_module

ALL = {"student_logits", "teacher_logits", "labels"}


def _digits_splits() -> tuple[SplitTensors, SplitTensors, TransferData, dict[str, np.ndarray]]:
    x, y = digits()
    splits, _ = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.15, seed=0)
    with torch.inference_mode():
        t = digits_teacher()(torch.from_numpy(x)).numpy()
    data = TransferData(x=x, y=y, splits=splits, modality="image", task="classification", num_outputs=10)
    cpu = torch.device("cpu")
    tr = SplitTensors.from_numpy(
        x[splits["train"]], t[splits["train"]], y[splits["train"]], task="classification", device=cpu
    )
    va = SplitTensors.from_numpy(
        x[splits["val"]], t[splits["val"]], y[splits["val"]], task="classification", device=cpu
    )
    return tr, va, data, {k: t[v] for k, v in splits.items()}


def _kd_loss() -> object:
    terms = method_terms("kd", task="classification", has_labels=True, alpha=0.7, temperature=4.0)
    return build_loss(terms, task="classification", available=ALL)


def _student(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2))


def test_training_learns_and_keeps_the_best_epoch() -> None:
    tr, va, _, _ = _digits_splits()
    student = _student()
    before = fidelity(predict(student, va.x), va.t, "classification")
    records = []
    result = train_student(
        student, _kd_loss(), task="classification", train=tr, val=va,
        config=TrainConfig(epochs=8, batch_size=64, learning_rate=1e-2, patience=100), on_epoch=records.append,
    )  # fmt: skip
    assert [r.epoch for r in records] == list(range(1, 9))
    assert result.best_val_fidelity == max(r.val_fidelity for r in records)
    assert result.best_val_fidelity > before + 0.4  # chance is ~0.1
    # the returned weights are the best epoch's, not the last one's
    assert fidelity(predict(student, va.x), va.t, "classification") == pytest.approx(result.best_val_fidelity)
    assert not student.training
    assert records[-1].lr < records[0].lr  # cosine decay
    assert result.samples_per_second > 0
    assert result.as_dict()["epochs_run"] == 8


def test_training_is_reproducible_with_a_seed() -> None:
    tr, va, _, _ = _digits_splits()
    weights = []
    for _ in range(2):
        s = _student(seed=5)
        train_student(s, _kd_loss(), task="classification", train=tr, val=va, config=TrainConfig(epochs=2, seed=7))
        weights.append(torch.cat([p.detach().flatten() for p in s.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_early_stopping_when_fidelity_stalls() -> None:
    tr, va, _, _ = _digits_splits()
    result = train_student(
        _student(), _kd_loss(), task="classification", train=tr, val=va,
        config=TrainConfig(epochs=50, learning_rate=1e-12, patience=2),
    )  # fmt: skip
    assert result.stopped_early
    assert len(result.curve) == 3  # best at epoch 1, then 2 epochs without gain
    assert "no validation fidelity gain for 2 epochs" in result.stop_reason


class _Spiking(WeightedSum):
    """The KD loss times `scale`: a test sets it between epochs to make one epoch spike."""

    scale = 1.0

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return super().forward(batch) * self.scale


def _spiking_kd() -> _Spiking:
    base = _kd_loss()
    assert isinstance(base, WeightedSum)
    return _Spiking(list(zip(base.keys, base.weights, base.losses, strict=True)))  # type: ignore[arg-type]


def _weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("spike", [float("nan"), 1e3])
def test_a_loss_spike_is_rewound_and_the_learning_rate_cut(spike: float) -> None:
    tr, va, _, _ = _digits_splits()
    student, loss = _student(), _spiking_kd()
    after: dict[int, torch.Tensor] = {}
    lrs: dict[int, float] = {}

    def on_epoch(r: object) -> None:
        epoch = r.epoch  # type: ignore[attr-defined]
        after[epoch], lrs[epoch] = _weights(student), r.lr  # type: ignore[attr-defined]
        loss.scale = spike if epoch == 2 else 1.0  # epoch 3 (only) spikes

    result = train_student(
        student, loss, task="classification", train=tr, val=va,
        config=TrainConfig(epochs=6, batch_size=64, learning_rate=1e-2, patience=100), on_epoch=on_epoch,
    )  # fmt: skip
    assert [r["epoch"] for r in result.rollbacks] == [3]
    assert result.rollbacks[0]["lr_scale"] == 0.5
    # epoch 3 is undone: the weights after it are those it started from
    torch.testing.assert_close(after[3], after[2], rtol=0, atol=0)
    assert not torch.equal(after[4], after[3])  # and training goes on from there
    assert len(result.curve) == 6 and not result.stopped_early
    assert result.best_epoch != 3
    # the rest of the cosine runs at half the rate: epoch 4's lr vs an unspiked run's
    plain = train_student(
        _student(), _kd_loss(), task="classification", train=tr, val=va,
        config=TrainConfig(epochs=6, batch_size=64, learning_rate=1e-2, patience=100),
    )  # fmt: skip
    assert lrs[4] == pytest.approx(plain.curve[3].lr * 0.5)
    assert not plain.rollbacks
    # it keeps learning after the rewind (how far in 6 epochs varies by host: 0.5 to 0.9 seen)
    assert result.best_val_fidelity > result.curve[0].val_fidelity
    assert result.as_dict()["rollbacks"] == result.rollbacks
    # the report's warning names the phase and the epoch; a run without rewinds warns nothing
    warning = result.rollback_warning("quantization-aware fine-tuning")
    assert warning is not None and warning.startswith("quantization-aware fine-tuning loss spiked at epoch(s) 3;")
    assert plain.rollback_warning("training") is None


def test_a_loss_that_keeps_spiking_stops_as_diverged_with_the_best_weights() -> None:
    tr, va, _, _ = _digits_splits()
    student, loss = _student(), _spiking_kd()

    def on_epoch(r: object) -> None:
        loss.scale = float("nan")  # every epoch after the first

    result = train_student(
        student, loss, task="classification", train=tr, val=va,
        config=TrainConfig(epochs=20, batch_size=64, learning_rate=1e-2, patience=100), on_epoch=on_epoch,
    )  # fmt: skip
    assert len(result.rollbacks) == MAX_ROLLBACKS
    assert len(result.curve) == MAX_ROLLBACKS + 2 and result.stopped_early
    assert "training diverged" in result.stop_reason
    assert result.best_epoch == 1
    assert torch.isfinite(_weights(student)).all()
    assert fidelity(predict(student, va.x), va.t, "classification") == pytest.approx(result.best_val_fidelity)


def _rec(loss: float, val: float) -> EpochRecord:
    return EpochRecord(epoch=5, epochs=60, train_loss=loss, val_fidelity=val, val_accuracy=None, lr=1e-3, seconds=1.0)


@pytest.mark.parametrize(
    ("loss", "val", "previous", "first_val", "spiked"),
    [
        (float("nan"), 0.8, 1.0, 0.5, True),  # non-finite loss
        (float("inf"), 0.8, None, None, True),
        (3.5, 0.8, 1.0, 0.5, True),  # > 3x the previous epoch's loss
        (2.9, 0.8, 1.0, 0.5, False),  # risen, but under 3x and validation still above epoch 1's
        (1.1, 0.4, 1.0, 0.5, True),  # risen and validation below epoch 1's: a collapse (BlazeFace seed 2)
        (0.9, 0.4, 1.0, 0.5, False),  # validation fell but the loss still went down: noise, not a spike
        (5.0, 0.8, None, None, False),  # the first epoch has nothing to compare with
        (5.0, 0.8, 0.0, 0.5, False),  # a zero loss before: no ratio
    ],
)
def test_what_counts_as_a_spike(
    loss: float, val: float, previous: float | None, first_val: float | None, spiked: bool
) -> None:
    assert _spiked(_rec(loss, val), previous, first_val) is spiked


def test_time_limit_stops_training() -> None:
    tr, va, _, _ = _digits_splits()
    result = train_student(
        _student(), _kd_loss(), task="classification", train=tr, val=va,
        config=TrainConfig(epochs=50, max_train_seconds=1e-6),
    )  # fmt: skip
    assert len(result.curve) == 1
    assert result.stopped_early and "max_train_seconds" in result.stop_reason
    # The limit is checked every step, not only every CHECK_EVERY_STEPS: one batch, not the epoch.
    assert result.samples_seen == TrainConfig().batch_size < tr.inputs[0].shape[0]


def test_cancel_between_epochs() -> None:
    tr, va, _, _ = _digits_splits()
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) >= 2:
            raise Cancelled("cancelled by user")

    with pytest.raises(Cancelled):
        train_student(
            _student(), _kd_loss(), task="classification", train=tr, val=va,
            config=TrainConfig(epochs=10), check_cancel=check,
        )  # fmt: skip
    assert len(calls) == 2


def test_regression_fidelity_is_r2_against_the_teacher() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 2))
    s = t + rng.normal(scale=0.3, size=(50, 2))
    expected = 1 - np.sum((s - t) ** 2) / np.sum((t - t.mean(0)) ** 2)
    assert fidelity(torch.tensor(s), torch.tensor(t), "regression") == pytest.approx(expected)


def test_distill_step_trains_and_records(tmp_path: Path) -> None:
    _, _, data, outs = _digits_splits()
    state = RunState()
    state.data, state.teacher_outputs, state.student = data, outs, _student()
    ctx, events = make_ctx(tmp_path, epochs=6, batch_size=64, learning_rate=1e-2, device="cpu")
    Distill().run(ctx, state)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.data["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "val_fidelity", "val_accuracy", "lr", "epochs"} <= set(epochs[0].data)
    assert epochs[-1].progress == pytest.approx(70.0)
    assert state.training["losses"] == [{"key": "kd", "weight": 0.7}, {"key": "ce", "weight": pytest.approx(0.3)}]
    assert state.training["best_epoch"] in range(1, 7)
    assert state.training["rollbacks"] == [] and not any("spiked" in w for w in state.warnings)
    m = state.metrics["student_fp32"]
    with torch.inference_mode():
        pred = state.student(torch.from_numpy(data.x_of("test"))).argmax(1).numpy()
    assert m["test_fidelity"] == pytest.approx(float((pred == outs["test"].argmax(1)).mean()))
    assert m["test_accuracy"] == pytest.approx(float((pred == data.y_of("test")).mean()))
    assert m["test_fidelity"] > 0.5
    assert next(state.student.parameters()).device.type == "cpu" and not state.student.training
