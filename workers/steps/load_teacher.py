"""Step load_teacher: sniff and open the uploaded teacher with its runtime.

Reads spec.teacher_path; writes state.teacher (workers.steps.teacher.Teacher)."""

from __future__ import annotations

from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState


class LoadTeacher(Step):
    name = "load_teacher"
    stage = "load"
    order = 10

    def run(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.workers.steps.teacher import load_teacher

        teacher = load_teacher(ctx.spec.teacher_path, device=ctx.torch_device)
        state.teacher = teacher
        sig = teacher.signature
        shape = "x".join(map(str, sig.input_shape)) if sig.input_shape else "shape from data"
        ctx.emit(
            "progress",
            {"message": f"loaded {teacher.format} teacher ({teacher.param_count:,} parameters, input {shape})"},
            progress=1.0,
        )
        if teacher.format == "pt2":  # torch.export records every input and output: known now
            from edgedistill.workers.steps.teacher_record import emit_teacher_signature

            emit_teacher_signature(ctx, teacher, teacher.declared_io)
