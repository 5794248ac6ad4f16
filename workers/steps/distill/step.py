"""Step distill: train the student with the job's distillation method (methods.py).

Reads state.student, state.data, state.teacher, state.teacher_outputs, spec.options (and
spec.init_from_path for lifelong runs); writes state.student (best weights, eval mode, on the CPU),
state.training (curve, best epoch, stop reason, speed, loss terms), state.distillation (method, loss
terms + weights, why, method-specific results: feature pairs, generator, forgetting, NAS candidates)
and state.metrics["student_fp32"] (test agreement with the teacher, test accuracy).

Procedures: plain training on the cached teacher outputs (kd and every loss combination, features
cached once like the logits), data-free (datafree.py), NAS (nas.py). With options.sizing auto, plain
training first tries the sizes build_student planned (state.sizing, sizing.py) and keeps the chosen
one. Lifelong runs add the earlier student's outputs as a target (lifelong.py). Quantization-aware
fine-tuning is the next step (qat.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.pipeline.errors import InputError
from edgedistill.workers.pipeline.spec import LossTerm

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgedistill.workers.steps.distill.features import FeaturePlan
    from edgedistill.workers.steps.distill.losses import WeightedSum
    from edgedistill.workers.steps.distill.methods import Plan
    from edgedistill.workers.steps.distill.trainer import EpochRecord, TrainConfig, TrainResult

# Overall job progress (0-100) covered by this step; the runner's stage table uses the same span.
PROGRESS_START, PROGRESS_END = 5.0, 70.0


def make_plan(ctx: RunContext, state: RunState) -> Plan:
    from edgedistill.workers.steps.distill.methods import plan_for
    from edgedistill.workers.steps.distill.multi import needs_multi

    data = state.data
    opts = ctx.spec.options
    multi = needs_multi(state.signature)
    if multi and opts.method == "auto":  # only the per-output KD methods train these teachers
        opts = opts.model_copy(update={"method": "kd"})
    plan = plan_for(
        opts,
        task=data.task,
        has_labels=data.has_labels and data.x_of("train").shape[0] > 0,
        modality=data.modality,
        train_samples=int(data.x_of("train").shape[0]),
        num_outputs=data.num_outputs,
        has_data=not getattr(data, "synthetic", False) and data.x_of("train").shape[0] > 0,
        has_init=ctx.spec.init_from_path is not None,
    )
    if plan.method == "transformer" and not multi:
        raise InputError("method transformer distils token-sequence teachers (token ids, optionally a mask)")
    if multi:
        plan.requested = ctx.spec.options.method
        if ctx.spec.options.method == "auto":
            plan.reason = "a teacher with several inputs/outputs or outputs of other kinds: per-output KD"
        plan.notes.append("one loss term per teacher output, by its kind (options.outputs sets kinds and weights)")
    return plan


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
        return _fit_multi(ctx, state, student, config, on_epoch=on_epoch)
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


def _fit_multi(
    ctx: RunContext,
    state: RunState,
    student: nn.Module,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> Fitted:
    """Per-output terms (multi.output_terms), inputs by name, validation on the headline across outputs."""
    import torch

    from edgedistill.workers.steps.distill.losses import build_loss
    from edgedistill.workers.steps.distill.multi import output_terms, score_fn, split_tensors
    from edgedistill.workers.steps.distill.trainer import train_student

    data, opts = state.data, ctx.spec.options
    terms = output_terms(
        state.signature, opts, state.teacher_outputs["train"], method=state.distillation.get("method", opts.method),
        has_labels=data.has_labels, primary=data.primary_output,
    )  # fmt: skip
    features = None
    if state.distillation.get("method") == "transformer":  # + MiniLM / TinyBERT terms (transformer.py)
        from edgedistill.workers.steps.distill.transformer import plan_transformer

        ctx.emit("progress", {"message": "reading the teacher's attention and hidden states once (cached, float16)"})
        extra, features, info = plan_transformer(ctx, state, student)
        terms = [*terms, *extra]
        state.distillation["transformer"] = info
    state.distillation["loss_terms_planned"] = [t.model_dump() for t in terms]
    available = {"student_outputs", "teacher_outputs", *({"labels"} if data.has_labels else set())}
    if features is not None:
        available |= {"student_features", "teacher_features"}
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


class Distill(Step):
    name = "distill"
    stage = "distill"

    def run(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.workers.steps.distill.trainer import TrainConfig

        opts = ctx.spec.options
        plan = make_plan(ctx, state)
        state.distillation = plan.describe()
        ctx.emit("progress", {"message": f"distillation method {plan.method}: {plan.reason}"})
        device = ctx.torch_device

        if plan.procedure == "data_free":
            from edgedistill.workers.steps.distill.datafree import distill_data_free

            distill_data_free(ctx, state, plan, PROGRESS_START, PROGRESS_END)
            return
        if plan.procedure == "nas" and not state.student_arch.get("pinned_by_retry"):
            from edgedistill.workers.steps.distill.nas import search_and_train

            student, fitted = search_and_train(ctx, state, plan, PROGRESS_START, PROGRESS_END)
        elif plan.procedure == "train" and not plan.lifelong and state.sizing is not None:
            student, fitted = _sized(ctx, state, plan, TrainConfig.from_options(opts, device))
        else:
            if plan.procedure == "nas":
                state.distillation["nas"] = {"skipped": "the runner pinned a smaller student after an over-budget run"}
            prev = None
            if plan.lifelong:
                from edgedistill.workers.steps.distill.lifelong import previous_outputs

                prev = previous_outputs(ctx, state)
            student = state.student
            fitted = fit(
                ctx,
                state,
                student,
                plan.terms,
                TrainConfig.from_options(opts, device),
                prev=prev,
                on_epoch=epoch_reporter(ctx, PROGRESS_START, PROGRESS_END),
            )
        if fitted.features is not None:
            state.distillation["features"] = fitted.features.describe()
        used = fitted.terms if fitted.terms is not None else plan.terms
        state.distillation["loss_terms"] = [
            {**d, "kwargs": t.kwargs} for d, t in zip(fitted.loss.describe(), _positive(used), strict=True)
        ]
        finish_student(ctx, state, student)
        if plan.lifelong:
            from edgedistill.workers.steps.distill.lifelong import forgetting_report

            state.distillation["lifelong"] = forgetting_report(ctx, state)
        result = fitted.result
        state.training = {
            **result.as_dict(),
            "device": device,
            "losses": fitted.loss.describe(),
            "method": plan.method if not opts.losses else f"{plan.method} (custom losses)",
        }
        ctx.emit(
            "progress",
            {
                "message": f"trained {len(result.curve)} epochs ({result.stop_reason}); best val fidelity "
                f"{result.best_val_fidelity:.4f} at epoch {result.best_epoch}"
            },
            progress=PROGRESS_END,
        )


def _sized(ctx: RunContext, state: RunState, plan: Plan, config: TrainConfig) -> tuple[nn.Module, Fitted]:
    """options.sizing auto: sizing.search_and_train trains the sizes build_student planned, each as a
    fixed-size run would be trained, sharing this step's progress span."""
    from edgedistill.workers.steps.sizing import search_and_train

    def train(module: nn.Module, index: int, expected: int) -> Fitted:
        span = (PROGRESS_END - PROGRESS_START) / max(expected, index + 1)
        lo = PROGRESS_START + span * index
        return fit(ctx, state, module, plan.terms, config, on_epoch=epoch_reporter(ctx, lo, lo + span))

    return search_and_train(ctx, state, state.sizing, train)


def _positive(terms: list[LossTerm]) -> list[LossTerm]:
    return [t for t in terms if t.weight > 0]
