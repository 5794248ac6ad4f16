"""Step distill: train the student with the job's distillation method (methods.py).

Reads state.student, state.data, state.teacher, state.teacher_outputs, spec.options (and
spec.init_from_path for lifelong runs); writes state.student (best weights, eval mode, on the CPU),
state.training (curve, best epoch, stop reason, speed, loss terms), state.distillation (method, loss
terms + weights, why, method-specific results: feature pairs, generator, forgetting, NAS candidates)
and state.metrics["student_fp32"] (test agreement with the teacher, test accuracy).

Procedures: plain training on the cached teacher outputs (kd and every loss combination, features
cached once like the logits), data-free (datafree.py), NAS (nas.py). Lifelong runs add the earlier
student's outputs as a target (lifelong.py). Quantization-aware fine-tuning is the next step (qat.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.pipeline.base import Step
from workers.pipeline.context import RunContext, RunState
from workers.pipeline.errors import InputError
from workers.pipeline.spec import LossTerm

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from workers.steps.distill.features import FeaturePlan
    from workers.steps.distill.losses import WeightedSum
    from workers.steps.distill.methods import Plan
    from workers.steps.distill.trainer import EpochRecord, TrainConfig, TrainResult

# Overall job progress (0-100) covered by this step; the runner's stage table uses the same span.
PROGRESS_START, PROGRESS_END = 5.0, 70.0


def make_plan(ctx: RunContext, state: RunState) -> Plan:
    from workers.steps.distill.methods import plan_for

    data = state.data
    return plan_for(
        ctx.spec.options,
        task=data.task,
        has_labels=data.has_labels and data.x_of("train").shape[0] > 0,
        modality=data.modality,
        train_samples=int(data.x_of("train").shape[0]),
        num_outputs=data.num_outputs,
        has_data=not getattr(data, "synthetic", False) and data.x_of("train").shape[0] > 0,
        has_init=ctx.spec.init_from_path is not None,
    )


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

    from workers.steps.distill.features import plan_features
    from workers.steps.distill.losses import build_loss
    from workers.steps.distill.trainer import SplitTensors, train_student

    data, outs = state.data, state.teacher_outputs
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


def finish_student(ctx: RunContext, state: RunState, student: nn.Module) -> None:
    """Fold the MLP's input standardisation, evaluate on the test split, keep the student on the CPU."""
    import torch

    from workers.steps.distill.trainer import SplitTensors, accuracy, fidelity, predict

    data = state.data
    fold = getattr(student, "fold_input_standardization", None)
    if callable(fold):
        fold()
    test = SplitTensors.from_numpy(
        data.x_of("test"), state.teacher_outputs["test"], data.y_of("test"), task=data.task, device=torch.device("cpu")
    )
    student = student.cpu().eval()
    test_out = predict(student, test.x)
    state.metrics["student_fp32"] = {
        "test_fidelity": fidelity(test_out, test.t, data.task),
        "test_accuracy": accuracy(test_out, test.y, data.task),
    }
    state.student = student


class Distill(Step):
    name = "distill"
    stage = "distill"

    def run(self, ctx: RunContext, state: RunState) -> None:
        from workers.steps.distill.trainer import TrainConfig

        opts = ctx.spec.options
        plan = make_plan(ctx, state)
        state.distillation = plan.describe()
        ctx.emit("progress", {"message": f"distillation method {plan.method}: {plan.reason}"})
        device = ctx.torch_device

        if plan.procedure == "data_free":
            from workers.steps.distill.datafree import distill_data_free

            distill_data_free(ctx, state, plan, PROGRESS_START, PROGRESS_END)
            return
        if plan.procedure == "nas" and not state.student_arch.get("pinned_by_retry"):
            from workers.steps.distill.nas import search_and_train

            student, fitted = search_and_train(ctx, state, plan, PROGRESS_START, PROGRESS_END)
        else:
            if plan.procedure == "nas":
                state.distillation["nas"] = {"skipped": "the runner pinned a smaller student after an over-budget run"}
            prev = None
            if plan.lifelong:
                from workers.steps.distill.lifelong import previous_outputs

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
        state.distillation["loss_terms"] = [
            {**d, "kwargs": t.kwargs} for d, t in zip(fitted.loss.describe(), _positive(plan.terms), strict=True)
        ]
        finish_student(ctx, state, student)
        if plan.lifelong:
            from workers.steps.distill.lifelong import forgetting_report

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


def _positive(terms: list[LossTerm]) -> list[LossTerm]:
    return [t for t in terms if t.weight > 0]
