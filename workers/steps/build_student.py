"""Step build_student: pick the student family and size for the data and the device profile.

Reads state.data, state.teacher, spec.profile, spec.options.student (and this step's config, which
the runner uses to pin a smaller size after an over-budget artifact); writes state.student (an
untrained torch module, seeded) and state.student_arch (family, width, depth, kernel, expansion,
params, macs, est_int8_bytes, est_arena_bytes, chosen_because).

With spec.init_from_path (lifelong distillation) the student is the earlier run's: its architecture
from that run's report and its weights imported from the earlier ONNX file (never unpickled)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workers.pipeline.base import Step, StepConfig
from workers.pipeline.context import RunContext, RunState


class BuildStudentConfig(StepConfig):
    width: int | None = Field(default=None, ge=1)
    depth: int | None = Field(default=None, ge=1)
    kernel: int | None = Field(default=None, ge=1)
    expansion: int | None = Field(default=None, ge=1)


class BuildStudent(Step):
    name = "build_student"
    stage = "distill"
    config_cls = BuildStudentConfig

    def run(self, ctx: RunContext, state: RunState) -> None:
        import torch

        from workers.steps.students import MLP, build_module, choose_arch

        assert isinstance(self.config, BuildStudentConfig)
        opts, data = ctx.spec.options, state.data
        if ctx.spec.init_from_path is not None and self.config.width is None:
            from workers.steps.distill.lifelong import build_previous_student

            build_previous_student(ctx, state)
            return
        from workers.steps.students_transformer import build_for_run, offer_transformer, wants_transformer

        if wants_transformer(opts, state.signature):  # issue 14: token-sequence teachers
            build_for_run(ctx, state, self.config)
            return
        if state.signature is not None and needs_multi_student(state.signature):
            self._build_multi(ctx, state)
            offer_transformer(ctx, state)
            return
        choice = choose_arch(
            modality=data.modality,
            input_shape=data.sample_shape,
            num_outputs=data.num_outputs,
            profile=ctx.spec.profile,
            teacher_params=state.teacher.param_count if state.teacher is not None else None,
            width=self.config.width or opts.student.width,
            depth=self.config.depth or opts.student.depth,
            teacher_bytes=getattr(state.teacher, "file_bytes", None),
            kernel=self.config.kernel or opts.student.kernel,
            expansion=self.config.expansion or opts.student.expansion,
        )
        torch.manual_seed(opts.seed)
        module = build_module(choice.arch)
        x_train = data.x_of("train")
        if isinstance(module, MLP) and x_train.shape[0] > 1:  # data-free runs have no inputs yet
            x = torch.as_tensor(x_train)
            module.set_input_statistics(x.mean(0), x.std(0))
        state.student = module
        state.student_arch = choice.as_state()
        if self.config.width is not None:
            state.student_arch["pinned_by_retry"] = True
        if isinstance(module, MLP) and hasattr(module, "input_mean"):
            # how the float MLP standardises its inputs (folded into its first layer after training)
            state.student_arch["input_standardization"] = {
                "mean": module.input_mean.tolist(),
                "std": module.input_std.tolist(),
            }
        state.warnings.extend(choice.warnings)
        a = choice.arch
        ctx.emit(
            "progress",
            {
                "message": f"student {a.label()}: {choice.estimate.params:,} params, "
                f"{choice.estimate.macs:,} MACs ({choice.reason})"
            },
        )

    def _build_multi(self, ctx: RunContext, state: RunState) -> None:
        """Several inputs/outputs or token ids: students_multi.MultiStudent via build_student."""
        from workers.steps.students_multi import input_stats

        assert isinstance(self.config, BuildStudentConfig)
        opts = ctx.spec.options
        pins = opts.student.model_copy(
            update={k: v for k, v in (("width", self.config.width), ("depth", self.config.depth)) if v is not None}
        )
        stats = input_stats(state.signature, state.data.inputs_of("train"))
        module, arch = build_student(
            state.signature,
            ctx.spec.profile,
            pins,
            stats,
            teacher_params=state.teacher.param_count if state.teacher is not None else None,
            teacher_bytes=getattr(state.teacher, "file_bytes", None),
            seed=opts.seed,
        )
        state.student, state.student_arch = module, arch
        if self.config.width is not None:
            state.student_arch["pinned_by_retry"] = True
        ctx.emit(
            "progress",
            {"message": f"student multi w{arch['width']} d{arch['depth']}: {arch['params']:,} params, "
             f"{arch['macs']:,} MACs ({arch['chosen_because']})"},
        )  # fmt: skip


def needs_multi_student(signature: Any) -> bool:
    """Whether the signature needs a MultiStudent: anything but one float input with one trained
    (k,)-shaped output, which the single-input families (students.py) cover."""
    from workers.pipeline.signature import FLOAT_DTYPES, UNTRAINED_KINDS

    trained = [o for o in signature.outputs if o.kind not in UNTRAINED_KINDS]
    single_in = len(signature.inputs) == 1 and signature.inputs[0].dtype in FLOAT_DTYPES
    return not (
        single_in and len(trained) == 1 and len(trained[0].per_sample) == 1 and 2 <= len(signature.inputs[0].shape) <= 4
    )


def build_student(
    signature: Any, profile: Any, student: Any, stats: Any, *, teacher_params: int | None = None,
    teacher_bytes: int | None = None, seed: int = 0,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """(untrained module, arch dict for state.student_arch) per the engine contract: the module takes
    the teacher's inputs in signature order and returns a tuple of raw outputs in signature order
    without class_index outputs. `student` is JobOptions.student (width/depth/kernel/expansion pins),
    `stats` is students_multi.input_stats of the training inputs."""
    import torch

    from workers.pipeline.signature import UNTRAINED_KINDS
    from workers.steps.students import MLP, build_module, choose_arch
    from workers.steps.students_multi import TupleStudent, choose_multi, input_kind

    torch.manual_seed(seed)
    if needs_multi_student(signature):
        choice = choose_multi(
            signature, profile, stats, teacher_params=teacher_params, width=student.width, depth=student.depth
        )
        torch.manual_seed(seed)  # the chosen module was built during the search; rebuild it seeded
        module = type(choice.module)(signature, choice.width, choice.depth, choice.vocab, stats)
        return module, choice.as_state(signature)
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
