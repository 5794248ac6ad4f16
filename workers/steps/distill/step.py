"""Step distill: train the student on the cached teacher outputs.

Reads state.student, state.data, state.teacher_outputs, spec.options; writes state.student (best
weights, eval mode, on the CPU), state.training (curve, best epoch, stop reason, speed, loss terms)
and state.metrics["student_fp32"] (test agreement with the teacher, test accuracy)."""

from __future__ import annotations

from typing import Any

from workers.pipeline.base import Step
from workers.pipeline.context import RunContext, RunState

# Overall job progress (0-100) covered by this step; the runner's stage table uses the same span.
PROGRESS_START, PROGRESS_END = 5.0, 70.0


class Distill(Step):
    name = "distill"
    stage = "distill"

    def run(self, ctx: RunContext, state: RunState) -> None:
        import torch

        from workers.steps.distill.losses import build_loss, method_terms
        from workers.steps.distill.trainer import (
            EpochRecord,
            SplitTensors,
            TrainConfig,
            accuracy,
            fidelity,
            predict,
            train_student,
        )

        opts, data, outs = ctx.spec.options, state.data, state.teacher_outputs
        device = torch.device(ctx.torch_device)
        terms = opts.losses or method_terms(
            opts.method,
            task=data.task,
            has_labels=data.has_labels,
            alpha=opts.alpha,
            temperature=opts.temperature,
        )
        available = {"student_logits", "teacher_logits"} | ({"labels"} if data.has_labels else set())
        loss_fn = build_loss(list(terms), task=data.task, available=available)
        splits = {
            name: SplitTensors.from_numpy(data.x_of(name), outs[name], data.y_of(name), task=data.task, device=device)
            for name in ("train", "val", "test")
        }

        def on_epoch(rec: EpochRecord) -> None:
            payload: dict[str, Any] = {
                "epoch": rec.epoch,
                "epochs": rec.epochs,
                "train_loss": rec.train_loss,
                "val_fidelity": rec.val_fidelity,
                "val_accuracy": rec.val_accuracy,
                "lr": rec.lr,
            }
            done = PROGRESS_START + (PROGRESS_END - PROGRESS_START) * rec.epoch / rec.epochs
            ctx.emit("epoch", payload, progress=done)

        student = state.student
        result = train_student(
            student,
            loss_fn,
            task=data.task,
            train=splits["train"],
            val=splits["val"],
            config=TrainConfig.from_options(opts, str(device)),
            on_epoch=on_epoch,
            check_cancel=ctx.check_cancel,
        )
        if hasattr(student, "fold_input_standardization"):
            student.fold_input_standardization()
        test = splits["test"]
        test_out = predict(student, test.x)
        state.metrics["student_fp32"] = {
            "test_fidelity": fidelity(test_out, test.t, data.task),
            "test_accuracy": accuracy(test_out, test.y, data.task),
        }
        state.student = student.cpu().eval()
        state.training = {
            **result.as_dict(),
            "device": str(device),
            "losses": loss_fn.describe(),
            "method": opts.method if not opts.losses else "custom",
        }
        ctx.emit(
            "progress",
            {
                "message": f"trained {len(result.curve)} epochs ({result.stop_reason}); best val fidelity "
                f"{result.best_val_fidelity:.4f} at epoch {result.best_epoch}"
            },
            progress=PROGRESS_END,
        )
