"""Step build_student: pick the student family and size for the data and the device profile.

Reads state.data, state.teacher, spec.profile, spec.options.student (and this step's config, which
the runner uses to pin a smaller size after an over-budget artifact); writes state.student (an
untrained torch module, seeded), state.sizing and state.student_arch (family,
width, depth, kernel, expansion, params, macs, est_int8_bytes, est_arena_bytes, chosen_because, sizing).

The module is the fixed choice (students.choose_arch / students_multi.choose_multi). Without a pinned
width and depth (options.sizing auto) this step also plans a search over smaller sizes (sizing.py):
state.sizing holds the ladder, which the distill step trains and judges against
options.quality_target, and state.student_arch["sizing"] the plan, or why there is no search.

With spec.init_from_path (lifelong distillation) the student is the earlier run's: its architecture
from that run's report and its weights imported from the earlier ONNX file (never unpickled)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from edgedistill.contracts.errors import ArtifactOverBudget, BudgetError, InputError, PipelineError
from edgedistill.contracts.spec import PipelineSpec
from edgedistill.workers.pipeline.base import Restart, Step, StepConfig
from edgedistill.workers.pipeline.context import RunContext, RunState

MAX_SHRINK_RETRIES = 3


class BuildStudentConfig(StepConfig):
    width: int | None = Field(default=None, ge=1)
    depth: int | None = Field(default=None, ge=1)
    kernel: int | None = Field(default=None, ge=1)
    expansion: int | None = Field(default=None, ge=1)
    derived_shrink: float | None = Field(default=None, gt=0, le=1)  # derived family: target x this after a retry


class BuildStudent(Step):
    """A later artifact over the profile's budget (ArtifactOverBudget) resumes the run from here with
    a smaller student pinned (prepare_restart), at most MAX_SHRINK_RETRIES times; everything from the
    student on is forgotten, while the teacher, the data and the cached teacher outputs stay."""

    name = "build_student"
    stage = "distill"
    order = 30
    config_cls = BuildStudentConfig
    restart = Restart(
        on=ArtifactOverBudget,
        resets=(
            "artifacts", "student", "student_arch", "baseline_student", "training", "metrics", "latency",
            "report", "distillation", "qat_model", "budget", "runner_up",
        ),
        keep={"metrics": ("teacher",), "budget": ("shrink_retries",)},
    )  # fmt: skip

    @classmethod
    def prepare_restart(cls, ctx: RunContext, state: RunState, exc: PipelineError, attempt: int) -> StepConfig:
        """The next smaller student that fits once the estimates are corrected by what was measured,
        recorded in state.budget["shrink_retries"] and as a warning; BudgetError when there is none."""
        if not state.student_arch:  # no student of this run's to shrink
            raise exc
        if state.student_arch.get("family") == "derived":
            from edgedistill.workers.steps.derived.build import retry_shrink

            return BuildStudentConfig(derived_shrink=retry_shrink(state, exc, attempt, MAX_SHRINK_RETRIES, ctx.emit))
        details = exc.details if isinstance(exc, ArtifactOverBudget) else {}
        smaller = smaller_student(state, ctx.spec, details) if attempt <= MAX_SHRINK_RETRIES else None
        if smaller is None:
            why = "even the smallest student" if attempt <= MAX_SHRINK_RETRIES else f"{MAX_SHRINK_RETRIES} retries"
            raise BudgetError(f"{exc} ({why}: giving up)", stage=exc.stage) from exc
        old = state.student_arch
        message = (
            f"{exc}; retrying with a smaller student: width {old.get('width')}->{smaller.width}, "
            f"depth {old.get('depth')}->{smaller.depth}"
        )
        state.warnings.append(message)
        record = {
            "attempt": attempt,
            "reason": str(exc),
            "details": dict(details),
            "from": {"width": old.get("width"), "depth": old.get("depth")},
            "to": {"width": smaller.width, "depth": smaller.depth},
        }
        state.budget.setdefault("shrink_retries", []).append(record)
        ctx.emit("warning", {"message": message})
        return BuildStudentConfig(
            width=smaller.width, depth=smaller.depth, kernel=smaller.kernel, expansion=smaller.expansion
        )

    def run(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.workers.steps.sizing import prepare, single_rung
        from edgedistill.workers.steps.students import (
            PREFERRED_MIN_DEPTH,
            budget_violation,
            choose_arch,
            grid_candidates,
        )

        assert isinstance(self.config, BuildStudentConfig)
        opts, data = ctx.spec.options, state.data
        if ctx.spec.init_from_path is not None and self.config.width is None:
            from edgedistill.workers.steps.distill.lifelong import build_previous_student

            build_previous_student(ctx, state)
            state.sizing = None
            state.student_arch["sizing"] = {"mode": "fixed", "reason": "continues the earlier student (init_from)"}
            return
        from edgedistill.workers.steps.derived.build import build_for_run as build_derived
        from edgedistill.workers.steps.derived.build import wants_derived

        if wants_derived(opts) and build_derived(ctx, state, self.config):  # issue 14: the teacher, slimmed
            return
        from edgedistill.workers.steps.family_race import no_race, plan_rival, races

        if races(opts):  # family best: the designed student below, the derived one as its rival
            if self.config.derived_shrink is not None and build_derived(ctx, state, self.config):
                no_race(state, "an over-budget restart shrank the derived student that won; no second race")
                return
            if self.config.width is None:
                plan_rival(ctx, state)
            else:
                no_race(state, "an over-budget restart shrank the designed student that won; no second race")
        from edgedistill.workers.steps.students_transformer import (
            auto_transformer,
            build_for_run,
            offer_transformer,
            wants_transformer,
        )

        if wants_transformer(opts, state.signature):  # issue 14: token-sequence teachers
            build_for_run(ctx, state, self.config)
            return
        if (shape := auto_transformer(ctx, state)) is not None:
            try:
                build_for_run(ctx, state, self.config, auto=shape)
                return
            except InputError as exc:  # auto chose it, so the designed student is still an answer
                state.warnings.append(f"family auto: no transformer student ({exc}); the designed student instead")
        from edgedistill.workers.steps.students_multi import needs_multi_student

        if state.signature is not None and needs_multi_student(state.signature):
            self._build_multi(ctx, state)
            offer_transformer(ctx, state)
            return
        width = self.config.width or opts.student.width
        depth = self.config.depth or opts.student.depth
        kernel = self.config.kernel or opts.student.kernel
        expansion = self.config.expansion or opts.student.expansion
        choice = choose_arch(
            modality=data.modality,
            input_shape=data.sample_shape,
            num_outputs=data.num_outputs,
            profile=ctx.spec.profile,
            teacher_params=state.teacher.param_count if state.teacher is not None else None,
            width=width,
            depth=depth,
            teacher_bytes=getattr(state.teacher, "file_bytes", None),
            kernel=kernel,
            expansion=expansion,
        )
        x_train = data.x_of("train")
        family = choice.arch.family

        def sizes() -> list[Any]:
            grid = grid_candidates(
                family, data.sample_shape, data.num_outputs, width=width, depth=depth, kernel=kernel,
                expansion=expansion,
            )  # fmt: skip
            return [
                single_rung(a, e, x_train, opts.seed) for a, e in grid if budget_violation(e, ctx.spec.profile) is None
            ]

        module, arch, state.sizing = prepare(
            ctx,
            state,
            single_rung(choice.arch, choice.estimate, x_train, opts.seed),
            choice.reason,
            sizes,
            min_depth=None if depth else PREFERRED_MIN_DEPTH[family],
            pinned=self._pinned(width, depth),
        )
        state.student, state.student_arch = module, arch
        if self.config.width is not None:
            state.student_arch["pinned_by_retry"] = True
        state.warnings.extend(choice.warnings)
        ctx.emit(
            "progress",
            {"message": f"student {arch['sizing']['chosen']}: {arch['params']:,} params, "
             f"{arch['macs']:,} MACs ({arch['chosen_because']})"},
        )  # fmt: skip

    def _pinned(self, width: int | None, depth: int | None) -> str | None:
        """Why the size is not searched because of pins, or None."""
        assert isinstance(self.config, BuildStudentConfig)
        if self.config.width is not None:
            return "the runner pinned a smaller student after an over-budget artifact"
        if width is not None and depth is not None:
            return "width and depth set in the options"
        return None

    def _build_multi(self, ctx: RunContext, state: RunState) -> None:
        """Several inputs/outputs or token ids: a students_multi.MultiStudent, sized like the others."""
        from edgedistill.workers.steps.sizing import multi_rung, prepare
        from edgedistill.workers.steps.students_multi import (
            PREFERRED_MIN_DEPTH,
            choose_multi,
            input_stats,
            multi_candidates,
        )

        assert isinstance(self.config, BuildStudentConfig)
        opts, profile, signature = ctx.spec.options, ctx.spec.profile, state.signature
        width = self.config.width or opts.student.width
        depth = self.config.depth or opts.student.depth
        stats = input_stats(signature, state.data.inputs_of("train"))
        teacher_params = state.teacher.param_count if state.teacher is not None else None
        from edgedistill.workers.steps.students_multi import anchor_grids

        # per-anchor heads sit on the teacher's anchor grid, inferred from its cached outputs
        teacher_train = state.teacher_outputs.get("train")
        grids, grid_notes = anchor_grids(signature, teacher_train)
        choice = choose_multi(
            signature, profile, stats, teacher_params=teacher_params, width=width, depth=depth, grids=grids
        )
        extras = {"grids": grids, "teacher_outputs": teacher_train, "grid_notes": grid_notes}

        def sizes() -> list[Any]:
            found = multi_candidates(
                signature, profile, stats, width=width, depth=depth, most_params=choice.estimate.params, grids=grids
            )
            return [multi_rung(signature, stats, w, d, v, e, opts.seed, **extras) for w, d, v, e in found]

        top = multi_rung(
            signature, stats, choice.width, choice.depth, choice.vocab, choice.estimate, opts.seed, **extras
        )
        module, arch, state.sizing = prepare(
            ctx, state, top, choice.reason, sizes, min_depth=None if depth else PREFERRED_MIN_DEPTH,
            pinned=self._pinned(width, depth),
        )  # fmt: skip
        state.student, state.student_arch = module, arch
        if self.config.width is not None:
            state.student_arch["pinned_by_retry"] = True
        ctx.emit(
            "progress",
            {"message": f"student multi w{arch['width']} d{arch['depth']}: {arch['params']:,} params, "
             f"{arch['macs']:,} MACs ({arch['chosen_because']})"},
        )  # fmt: skip


def smaller_student(state: RunState, spec: PipelineSpec, measured: dict[str, object]) -> Any:
    """The next student that fits once its estimates are corrected by what was measured."""
    from edgedistill.workers.steps.students import StudentArch, fits_after_correction, shrink

    arch = StudentArch.from_dict(state.student_arch)
    corrections: dict[str, float] = {}
    for measured_key, est_key in (("model_bytes", "est_int8_bytes"), ("arena_bytes", "est_arena_bytes")):
        value, estimated = measured.get(measured_key), state.student_arch.get(est_key)
        if isinstance(value, (int, float)) and isinstance(estimated, (int, float)) and estimated > 0:
            corrections[est_key] = max(1.0, float(value) / float(estimated))
    smaller = shrink(arch)
    while smaller is not None and not fits_after_correction(smaller, spec.profile, corrections):
        smaller = shrink(smaller)
    return smaller


def build_student(
    signature: Any, profile: Any, student: Any, stats: Any, *, teacher_params: int | None = None,
    teacher_bytes: int | None = None, seed: int = 0, teacher_outputs: Any = None,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """(untrained module, arch dict for state.student_arch) per the engine contract: the module takes
    the teacher's inputs in signature order and returns a tuple of raw outputs in signature order
    without class_index outputs. `student` is JobOptions.student (width/depth/kernel/expansion pins),
    `stats` is students_multi.input_stats of the training inputs; `teacher_outputs` (output name ->
    the teacher's cached train outputs) lets per-anchor heads sit on the teacher's inferred anchor grid
    (students_multi.anchor_grids)."""
    import torch

    from edgedistill.contracts.signature import UNTRAINED_KINDS
    from edgedistill.workers.steps.students import MLP, build_module, choose_arch
    from edgedistill.workers.steps.students_multi import (
        MultiStudent,
        TupleStudent,
        choose_multi,
        input_kind,
        needs_multi_student,
    )

    torch.manual_seed(seed)
    if needs_multi_student(signature):
        from edgedistill.workers.steps.students_multi import anchor_grids

        grids, grid_notes = anchor_grids(signature, teacher_outputs)
        choice = choose_multi(
            signature, profile, stats, teacher_params=teacher_params, width=student.width, depth=student.depth,
            grids=grids,
        )  # fmt: skip
        torch.manual_seed(seed)  # the chosen module was built during the search; rebuild it seeded
        module = type(choice.module)(signature, choice.width, choice.depth, choice.vocab, stats, grids)
        arch = choice.as_state(signature)
        primed = module.init_heads_from_teacher(signature, teacher_outputs) if isinstance(module, MultiStudent) else []
        if primed:
            arch["head_bias_init"] = {n: "the teacher's mean output per anchor of a cell and level" for n in primed}
        if grid_notes:
            arch["anchor_grid_inference"] = grid_notes
        return module, arch
    spec = signature.inputs[0]
    out = next(o for o in signature.outputs if o.kind not in UNTRAINED_KINDS)
    shape = tuple(int(d) for d in spec.per_sample if d is not None)
    if spec.layout == "NLC" and len(shape) == 2:  # (time, features): the DS-CNN takes (features, time)
        shape = (shape[1], shape[0])
    legacy = choose_arch(
        modality=input_kind(spec),
        input_shape=shape,
        num_outputs=int(out.per_sample[0]),
        profile=profile,
        teacher_params=teacher_params,
        width=student.width,
        depth=student.depth,
        teacher_bytes=teacher_bytes,
        kernel=student.kernel,
        expansion=student.expansion,
    )
    torch.manual_seed(seed)
    inner = build_module(legacy.arch)
    arch = legacy.as_state()
    name = spec.name
    if isinstance(inner, MLP) and name in stats:
        inner.set_input_statistics(torch.as_tensor(stats[name]["mean"]), torch.as_tensor(stats[name]["std"]))
        arch["input_standardization"] = {"mean": inner.input_mean.tolist(), "std": inner.input_std.tolist()}
    return TupleStudent(inner, channels_last=spec.layout == "NLC"), arch
