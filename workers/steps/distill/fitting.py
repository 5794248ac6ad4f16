"""Training helpers shared by the distill step and its procedures (NAS, data-free, QAT): train a
student on the cached teacher outputs (fit), report epochs as progress (epoch_reporter) and finish it
(finish_student). Kept apart from step.py so the procedures import these without importing the step
that dispatches to them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.pipeline.context import RunContext, RunState

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgedistill.workers.steps.distill.features import FeaturePlan
    from edgedistill.workers.steps.distill.losses import WeightedSum
    from edgedistill.workers.steps.distill.trainer import EpochRecord, TrainConfig, TrainResult


def epoch_reporter(ctx: RunContext, start: float, end: float) -> Callable[[EpochRecord], None]:
    def on_epoch(rec: EpochRecord) -> None:
        payload: dict[str, Any] = {
            "epoch": rec.epoch,
            "epochs": rec.epochs,
            "train_loss": rec.train_loss,
            "val_fidelity": rec.val_fidelity,
            "val_accuracy": rec.val_accuracy,
            "lr": rec.lr,
        }
        ctx.emit("epoch", payload, progress=start + (end - start) * rec.epoch / rec.epochs)

    return on_epoch


@dataclass
class Fitted:
    result: TrainResult
    loss: WeightedSum
    features: FeaturePlan | None
    terms: list[LossTerm] | None = None  # the terms actually built (per-output runs), else the plan's


def fit(
    ctx: RunContext,
    state: RunState,
    student: nn.Module,
    terms: list[LossTerm],
    config: TrainConfig,
    *,
    prev: dict[str, np.ndarray] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    features: FeaturePlan | None = None,
) -> Fitted:
    """Train `student` on the run's cached teacher outputs with the weighted `terms`; teacher features
    are computed (once) when a term needs them and `features` is not given."""
    import torch

    from edgedistill.workers.steps.data import primary_targets
    from edgedistill.workers.steps.distill.features import plan_features
    from edgedistill.workers.steps.distill.losses import build_loss
    from edgedistill.workers.steps.distill.multi import needs_multi
    from edgedistill.workers.steps.distill.trainer import SplitTensors, train_student

    if needs_multi(state.signature):
        # per-output terms are built there; a given FeaturePlan (a derived student's exact-layer hints)
        # brings the plan's feature terms along
        extra = [t for t in terms if _reads_features(t)] if features is not None else []
        return _fit_multi(ctx, state, student, config, on_epoch=on_epoch, features=features, feature_terms=extra)
    data = state.data
    outs = {k: primary_targets(data, v) for k, v in state.teacher_outputs.items()}
    device = torch.device(config.device)
    available = {"student_logits", "teacher_logits", "student_features", "teacher_features"}
    if data.has_labels:
        available.add("labels")
    if prev is not None:
        available.add("prev_logits")
    loss_fn = build_loss(list(terms), task=data.task, available=available)
    if loss_fn.needs_features and features is None:
        ctx.emit("progress", {"message": "computing the teacher's intermediate features once (cached, float16)"})
        features = plan_features(state.teacher, student, data.x_of("train"), ctx.spec.options.features)
    splits = {
        name: SplitTensors.from_numpy(
            data.x_of(name),
            outs[name],
            data.y_of(name),
            task=data.task,
            device=device,
            feats=features.cache if (features is not None and name == "train" and loss_fn.needs_features) else (),
            prev=None if prev is None else prev[name],
        )
        for name in ("train", "val")
    }
    try:
        result = train_student(
            student,
            loss_fn,
            task=data.task,
            train=splits["train"],
            val=splits["val"],
            config=config,
            on_epoch=on_epoch,
            check_cancel=ctx.check_cancel,
            features=features if loss_fn.needs_features else None,
        )
    except ValueError as exc:  # a loss refusing the feature shapes (e.g. attention without spatial pairs)
        raise InputError(str(exc)) from exc
    return Fitted(result, loss_fn, features if loss_fn.needs_features else None)


def _reads_features(term: LossTerm) -> bool:
    from edgedistill.workers.steps.distill.losses.registry import LOSSES

    cls = LOSSES.get(term.key)
    return cls is not None and "student_features" in cls.requires


def _fit_multi(
    ctx: RunContext,
    state: RunState,
    student: nn.Module,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    features: FeaturePlan | None = None,
    feature_terms: Sequence[LossTerm] = (),
) -> Fitted:
    """Per-output terms (multi.output_terms), inputs by name, validation on the headline across outputs;
    with `features`, `feature_terms` read its pairs (cached teacher features of the train split)."""
    import torch

    from edgedistill.workers.steps.distill.losses import build_loss
    from edgedistill.workers.steps.distill.multi import output_terms, score_fn, split_tensors
    from edgedistill.workers.steps.distill.trainer import train_student

    data, opts = state.data, ctx.spec.options
    terms = output_terms(
        state.signature, opts, state.teacher_outputs["train"], method=state.distillation.get("method", opts.method),
        has_labels=data.has_labels, primary=data.primary_output,
    )  # fmt: skip
    if features is not None:
        terms = [*terms, *feature_terms]
    elif state.distillation.get("method") == "transformer":  # + MiniLM / TinyBERT terms (transformer.py)
        from edgedistill.workers.steps.distill.transformer import plan_transformer

        ctx.emit("progress", {"message": "reading the teacher's attention and hidden states once (cached, float16)"})
        extra, features, info = plan_transformer(ctx, state, student)
        terms = [*terms, *extra]
        state.distillation["transformer"] = info
    state.distillation["loss_terms_planned"] = [t.model_dump() for t in terms]
    available = {"student_outputs", "teacher_outputs", *({"labels"} if data.has_labels else set())}
    if features is not None:  # the trainer also puts the first output in as student_logits (FitNets reads it)
        available |= {"student_features", "teacher_features", "student_logits", "teacher_logits"}
    loss_fn = build_loss(terms, task=data.task, available=available)
    device = torch.device(config.device)
    train, val = split_tensors(state, "train", device), split_tensors(state, "val", device)
    if features is not None:
        train = replace(train, feats=tuple(torch.as_tensor(c).to(device) for c in features.cache))
    result = train_student(
        student, loss_fn, task=data.task, train=train, val=val, config=config, on_epoch=on_epoch,
        check_cancel=ctx.check_cancel, score_fn=score_fn(state, opts, "val"), features=features,
    )  # fmt: skip
    return Fitted(result, loss_fn, features, terms)


def finish_student(ctx: RunContext, state: RunState, student: nn.Module) -> None:
    """Fold the MLP's input standardisation, evaluate on the test split, keep the student on the CPU;
    state.export_module wraps it with the teacher's output semantics (heads.py)."""
    import torch

    from edgedistill.workers.steps.distill.multi import needs_multi, student_test_metrics
    from edgedistill.workers.steps.distill.trainer import SplitTensors, accuracy, fidelity, predict
    from edgedistill.workers.steps.heads import export_module

    data = state.data
    fold = getattr(student, "fold_input_standardization", None)
    if callable(fold):
        fold()
    if needs_multi(state.signature):
        student = student.cpu().eval()
        state.metrics["student_fp32"] = student_test_metrics(state, ctx.spec.options, student)
        state.student = student
        state.export_module = export_module(student, state.signature)
        return
    from edgedistill.workers.steps.data import primary_targets

    test = SplitTensors.from_numpy(
        data.x_of("test"),
        primary_targets(data, state.teacher_outputs["test"]),
        data.y_of("test"),
        task=data.task,
        device=torch.device("cpu"),
    )
    student = student.cpu().eval()
    test_out = predict(student, test.x)
    state.metrics["student_fp32"] = {
        "test_fidelity": fidelity(test_out, test.t, data.task),
        "test_accuracy": accuracy(test_out, test.y, data.task),
    }
    state.student = student
    if state.signature is not None:
        state.export_module = export_module(student, state.signature)
