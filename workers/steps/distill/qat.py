"""Quantization-aware distillation (method qat_kd, options.qat): fine-tune the distilled student with
fake-quant int8 while it keeps distilling from the teacher's cached outputs.

The fake-quant graph is the one the TFLite export converts: the student (BatchNorm folded into the
convolutions, as the whitepaper recommends for the last phase of QAT, Krishnamoorthi 2018,
arXiv:1806.08342, sec. 3.2) is made channel-last like export_tflite does, exported with
torch.export, and prepared by torchao's `prepare_qat_pt2e` with litert-torch's symmetric per-channel
int8 scheme whose observers are FusedMovingAvgObsFakeQuantize (weights per channel, activations per
tensor). litert-torch 0.10's QAT annotators match conv-BN patterns with a call that torch 2.13
refuses (torch.export of a plain function), so the config keeps the QAT observers and is annotated
with the static (conv, conv-relu, linear ...) patterns, which is exact once BN is folded.

After training, the float weights (trained under fake quantization) go back into the student, so
the ONNX fp32/int8 exports use them (onnxruntime recalibrates activation ranges), and
state.qat_model holds the fake-quant graph that export_tflite converts with its learned scales.

Students of multi-I/O teachers whose outputs are all exported raw (a detector's boxes and logit scores)
are prepared by qat_multi the same way and trained with the per-output terms; others get post-training
int8 with the reason (or a refusal when QAT was asked for).

Used explicitly (method qat_kd or options.qat = always) and automatically: verify raises
Int8OverBudget when post-training int8 loses more than options.accuracy_budget_pp, and the runner
resumes from this step (options.qat = auto), keeping the PTQ figures for the report."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgedistill.contracts.errors import InputError, Int8OverBudget, PipelineError
from edgedistill.workers.pipeline.base import Restart, Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.distill.qat_graph import QatModel, copy_back, fuse_batchnorm, qat_quantizer

# Loss terms the fake-quant graph can be trained with (no hooks into its layers).
LOGIT_TERMS = frozenset({"kd", "ce", "mse_logits", "mse_labels", "l1_logits", "lwf", "lwf_mse"})


def _layout_module(graph: Any, layout: str | None) -> Any:
    """The fake-quant graph behind the data's layout, with train()/eval() that exported graphs accept."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    class LayoutAdapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph = graph

        def train(self, mode: bool = True) -> LayoutAdapter:
            self.training = mode
            (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.graph)
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if layout == "NHWC":
                x = x.permute(0, 2, 3, 1) if x.dim() == 4 else x.permute(0, 2, 1).unsqueeze(1)
            return self.graph(x.contiguous())

    return LayoutAdapter()


def prepare_qat(student: Any, modality: str, example: np.ndarray) -> tuple[QatModel, Any]:
    """(fake-quant graph, BN-folded float student): channel-last, exported with a dynamic batch."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_train, quantize_pt2e

    from edgedistill.runtimes.common import to_model_layout
    from edgedistill.workers.steps.export_tflite import channel_last_module

    fused = fuse_batchnorm(student)
    module, layout = channel_last_module(fused, modality)
    x = torch.from_numpy(to_model_layout(np.ascontiguousarray(example[:4], dtype=np.float32), layout))
    if x.shape[0] < 2:
        x = torch.cat([x, x])
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    quantizer = qat_quantizer()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.export.export(module, (x,), dynamic_shapes=(({0: batch},),))
        graph = quantize_pt2e.prepare_qat_pt2e(program.module(), quantizer)
    move_exported_model_to_train(graph)
    return QatModel(graph=graph, layout=layout, quantizer=quantizer), fused


def qat_settled(state: RunState) -> bool:
    """Whether quantization-aware distillation ran or was tried and skipped (verify asks for it once)."""
    info = state.distillation.get("qat") or {}
    return bool(info.get("done") or info.get("skipped"))


def _should_run(ctx: RunContext, state: RunState) -> str | None:
    opts = ctx.spec.options
    info = state.distillation.get("qat") or {}
    if state.qat_model is not None or info.get("done"):
        return None
    if info.get("trigger"):
        return str(info["trigger"])
    if opts.method == "qat_kd" or state.distillation.get("method") == "qat_kd":
        return "method qat_kd"
    if opts.qat == "always":
        return "options.qat = always"
    return None


class QatKD(Step):
    """Reads state.student, state.data, state.teacher_outputs, state.distillation; writes state.student
    (float weights trained under fake quantization, BN folded), state.qat_model, state.distillation["qat"]
    and state.metrics["student_fp32"]. A no-op unless asked for (method qat_kd, options.qat, or the
    runner after an int8 accuracy drop over budget).

    A later post-training int8 drop over options.accuracy_budget_pp (Int8OverBudget) resumes the run
    from here: the PTQ figures are kept in state.distillation["qat"] for the report, the exported
    files and their measurements are dropped, and the exporters run again on the QAT student."""

    name = "qat_kd"
    stage = "distill"
    order = 50
    restart = Restart(
        on=Int8OverBudget,
        resets=("artifacts", "metrics", "latency"),
        keep={"metrics": ("teacher", "student_fp32")},
    )

    @classmethod
    def prepare_restart(cls, ctx: RunContext, state: RunState, exc: PipelineError, attempt: int) -> None:
        ctx.emit("warning", {"message": f"{exc}: running quantization-aware distillation, then exporting again"})
        details = exc.details if isinstance(exc, Int8OverBudget) else {}
        state.distillation["qat"] = {"trigger": str(exc), "ptq": details.get("ptq", {})}

    def run(self, ctx: RunContext, state: RunState) -> None:
        why = _should_run(ctx, state)
        if why is None:
            return
        from edgedistill.workers.steps.distill.multi import needs_multi

        if needs_multi(state.signature):
            self._run_multi(ctx, state, why)
            return
        import torch

        from edgedistill.workers.steps.distill.fitting import finish_student
        from edgedistill.workers.steps.distill.trainer import accuracy, fidelity, predict

        opts, data = ctx.spec.options, state.data
        terms = [LossTermLike(t) for t in (state.distillation.get("loss_terms") or [])]
        kept = [t.term for t in terms if t.term.key in LOGIT_TERMS]
        dropped = sorted({t.term.key for t in terms} - LOGIT_TERMS)
        if not kept:
            from edgedistill.workers.steps.distill.methods import default_terms

            kept = default_terms(
                "kd", task=data.task, has_labels=data.has_labels, alpha=opts.alpha, temperature=opts.temperature
            )
        if any(t.key in ("lwf", "lwf_mse") for t in kept) and ctx.spec.init_from_path is None:
            kept = [t for t in kept if t.key not in ("lwf", "lwf_mse")]
        prev = None
        if any(t.key in ("lwf", "lwf_mse") for t in kept):
            from edgedistill.workers.steps.distill.lifelong import previous_outputs

            prev = previous_outputs(ctx, state)
        ctx.emit("progress", {"message": f"quantization-aware distillation ({why}): {opts.qat_epochs} epochs"})
        try:
            qat, fused = prepare_qat(state.student, data.modality, data.x_of("train"))
        except Exception as exc:
            raise InputError(f"the student cannot be prepared for quantization-aware training: {exc}") from exc
        adapter = _layout_module(qat.graph, qat.layout)
        fitted = _fine_tune(ctx, state, adapter, kept, prev)
        adapter.eval()
        test_x = torch.from_numpy(np.ascontiguousarray(data.x_of("test"), dtype=np.float32))
        from edgedistill.workers.steps.data import primary_targets

        test_t = torch.from_numpy(primary_targets(data, state.teacher_outputs["test"]))
        y = data.y_of("test")
        test_y = None if y is None else torch.as_tensor(y)
        fq = predict(adapter, test_x)
        before = dict(state.metrics.get("student_fp32") or {})
        student = copy_back(qat.graph, fused)
        finish_student(ctx, state, student)
        state.qat_model = qat
        info = dict(state.distillation.get("qat") or {})
        info.update(
            {
                **_done_info(why, fitted, opts.qat_learning_rate),
                "terms_not_used": dropped,
                "scheme": "PT2E QAT: int8 symmetric per-channel weights, per-tensor activations, BN folded",
                "fake_quant_test": {
                    "fidelity": fidelity(fq, test_t, data.task),
                    "accuracy": accuracy(fq, test_y, data.task),
                },
                "float_before_qat": before,
                "float_after_qat": dict(state.metrics["student_fp32"]),
            }
        )
        state.distillation["qat"] = info

    def _run_multi(self, ctx: RunContext, state: RunState, why: str) -> None:
        """Students of multi-I/O teachers whose outputs are exported raw (qat_multi); others are refused
        when QAT was asked for, skipped with a warning when verify asked for it (options.qat auto)."""
        from edgedistill.contracts.signature import qat_blocker, unsupported_reason
        from edgedistill.workers.steps.distill.fitting import finish_student
        from edgedistill.workers.steps.distill.multi import student_test_metrics
        from edgedistill.workers.steps.distill.qat_multi import multi_adapter, prepare_qat_multi

        opts, data, sig = ctx.spec.options, state.data, state.signature
        info = dict(state.distillation.get("qat") or {})
        blocker = qat_blocker(sig, {o.name: o.kind for o in sig.outputs})
        if blocker is None and state.distillation.get("method") == "transformer":
            blocker = "has a transformer student (its attention terms read layers the fake-quant graph has not)"
        prepared = None
        if blocker is None:
            try:
                prepared = prepare_qat_multi(state.student, sig, data.inputs_of("train"))
            except Exception as exc:
                blocker = f"has a student that cannot be prepared for quantization-aware training ({str(exc)[:300]})"
        if prepared is None:
            reason = unsupported_reason(sig, opts)
            if reason is not None:  # asked for explicitly: refused (load_data normally refuses it earlier)
                raise InputError(reason)
            if not info.get("trigger"):
                raise InputError(f"quantization-aware fine-tuning ({why}) cannot run: this teacher {blocker}")
            msg = f"quantization-aware fine-tuning ({why}) is not applied: this teacher {blocker}"
            info["skipped"] = msg
            state.distillation["qat"] = info
            state.warnings.append(msg)
            ctx.emit("warning", {"message": msg})
            return
        qat, fused = prepared
        ctx.emit("progress", {"message": f"quantization-aware distillation ({why}): {opts.qat_epochs} epochs"})
        adapter = multi_adapter(qat, sig)
        fitted = _fine_tune(ctx, state, adapter, [])  # [] : fit builds the per-output terms
        adapter.eval()
        fq = student_test_metrics(state, opts, adapter)
        before = dict(state.metrics.get("student_fp32") or {})
        finish_student(ctx, state, copy_back(qat.graph, fused, strict=True))
        state.qat_model = qat
        after = state.metrics["student_fp32"]
        planned = {t["key"] for t in state.distillation.get("loss_terms") or []}
        info.update(
            {
                **_done_info(why, fitted, opts.qat_learning_rate),
                "terms_not_used": sorted(planned - {t.key for t in fitted.terms or []}),
                "scheme": "PT2E QAT of the raw multi-output student: int8 symmetric per-channel weights, "
                "per-tensor activations, BN folded",
                "fake_quant_test": {"headline": fq["headline"], "accuracy": fq["test_accuracy"]},
                "float_before_qat": {k: before.get(k) for k in ("headline", "test_accuracy")},
                "float_after_qat": {k: after.get(k) for k in ("headline", "test_accuracy")},
            }
        )
        state.distillation["qat"] = info


def _fine_tune(ctx: RunContext, state: RunState, adapter: Any, terms: list[Any], prev: Any = None) -> Any:
    """fitting.fit of the fake-quant graph for options.qat_epochs at qat_learning_rate, on the CPU,
    every epoch run (no early stop), its epochs reported as progress and its rewinds warned."""
    from edgedistill.workers.steps.distill.fitting import epoch_reporter, fit
    from edgedistill.workers.steps.distill.trainer import TrainConfig

    opts = ctx.spec.options
    config = replace(
        TrainConfig.from_options(opts, "cpu"),
        epochs=opts.qat_epochs,
        learning_rate=opts.qat_learning_rate,
        patience=max(opts.qat_epochs, 1),
    )
    start = ctx.progress
    fitted = fit(ctx, state, adapter, terms, config, prev=prev, on_epoch=epoch_reporter(ctx, start, start + 1))
    if (spiked := fitted.result.rollback_warning("quantization-aware fine-tuning")) is not None:
        state.warnings.append(f"{spiked} (distillation.qat.rollbacks)")
    return fitted


def _done_info(why: str, fitted: Any, learning_rate: float) -> dict[str, Any]:
    """The keys both QAT paths record in state.distillation["qat"] once the fine-tuning ran."""
    return {
        "done": True,
        "why": why,
        "epochs_run": len(fitted.result.curve),
        "learning_rate": learning_rate,
        "loss_terms": fitted.loss.describe(),
        "seconds": round(fitted.result.seconds, 3),
        # the fine-tuning's own curve and the spiked epochs it undid (trainer._spiked)
        **{k: v for k, v in fitted.result.as_dict().items() if k in ("curve", "rollbacks")},
    }


@dataclass(frozen=True)
class LossTermLike:
    """A loss term recorded in state.distillation["loss_terms"] ({key, weight, kwargs})."""

    raw: dict[str, Any]

    @property
    def term(self) -> Any:
        from edgedistill.contracts.spec import LossTerm

        return LossTerm(key=self.raw["key"], weight=self.raw["weight"], kwargs=self.raw.get("kwargs") or {})
