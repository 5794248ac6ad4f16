"""Step build_student: pick the student family and size for the data and the device profile.

Reads state.data, state.teacher, spec.profile, spec.options.student (and this step's config, which
the runner uses to pin a smaller size after an over-budget artifact); writes state.student (an
untrained torch module, seeded) and state.student_arch (family, width, depth, kernel, expansion,
params, macs, est_int8_bytes, est_arena_bytes, chosen_because).

With spec.init_from_path (lifelong distillation) the student is the earlier run's: its architecture
from that run's report and its weights imported from the earlier ONNX file (never unpickled)."""

from __future__ import annotations

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
