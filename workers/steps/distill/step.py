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

from typing import TYPE_CHECKING

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.events import stage_span
from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.distill.fitting import Fitted, epoch_reporter, finish_student, fit

if TYPE_CHECKING:
    from torch import nn

    from edgedistill.workers.steps.distill.methods import Plan
    from edgedistill.workers.steps.distill.trainer import TrainConfig


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


class Distill(Step):
    name = "distill"
    stage = "distill"
    order = 40

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
            terms, features = plan.terms, None
            if state.student_arch.get("family") == "derived":  # hints at the teacher's same layers
                from edgedistill.workers.steps.derived.build import derived_training

                terms, features = derived_training(ctx, state, plan.terms)
                plan.terms = terms
            fitted = fit(
                ctx,
                state,
                student,
                terms,
                TrainConfig.from_options(opts, device),
                prev=prev,
                on_epoch=epoch_reporter(ctx, PROGRESS_START, PROGRESS_END),
                features=features,
            )
        if state.runner_up is not None:  # family best: the derived rival, trained and judged (family_race.py)
            from edgedistill.workers.steps.family_race import race

            student, fitted = race(ctx, state, plan, TrainConfig.from_options(opts, device), student, fitted,
                                   PROGRESS_END)  # fmt: skip
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
        if (spiked := result.rollback_warning("training")) is not None:
            state.warnings.append(f"{spiked} (training.rollbacks)")
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


# Overall job progress (0-100) this step covers: its stage's span in events.STAGE_PROGRESS_END.
PROGRESS_START, PROGRESS_END = stage_span(Distill.stage)


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
