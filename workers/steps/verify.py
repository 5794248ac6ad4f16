"""Evaluate every model variant on the held-out test split, check the artifacts against the device
profile's budgets and write a probe file for on-device checks.

Variants: teacher (its cached outputs), student_fp32 (torch), onnx_fp32, onnx_int8, tflite_int8 /
tflite_int8_full (ai-edge-litert) and, for the full-int8 model, tflm: the real TFLite Micro
interpreter, sample by sample as firmware runs it, on at most TFLM_MAX_SAMPLES test samples.

Flash is checked for the int8 artifacts the device runs: all of them on CPUs and phones, the
full-int8 TFLite on MCUs. Budget failures: an op outside the profile's op_allowlist is an
OpNotAllowed input error (a smaller student cannot fix it); flash, arena or MACs over budget raise
ArtifactOverBudget, whose details carry the measured figures and measured/estimated ratios so the
runner can shrink the student and retry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.errors import ArtifactOverBudget, InputError, Int8OverBudget, PipelineError
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.metrics import evaluate, quality_key
from edgedistill.workers.steps.verify_multi import TFLM_MAX_SAMPLES

INT8_KINDS = artifact_kinds.int8_kinds()
TFLITE_KINDS = artifact_kinds.with_suffix(".tflite")  # the files whose ops the profile's op_allowlist governs
TFLM = artifact_kinds.TFLM_VARIANT  # the full-int8 TFLite run in the TFLite Micro interpreter
PROBE_SAMPLES = 32


class OpNotAllowed(InputError):
    """The int8 model uses ops the device's firmware does not register (profile op_allowlist)."""


def _primary_flash_kind(ctx: RunContext, state: RunState) -> str | None:
    """The artifact whose size budget["flash"] reports: the full-int8 TFLite for MCUs (the same choice
    as the report's device artifact), else the first int8 one. On CPUs and phones the report picks
    the device artifact later, from the benchmark's timings (workers.steps.device_artifact), which
    verify cannot know yet; every int8 artifact they may run is checked against max_model_bytes
    here, and device_artifact checks an fp32 ONNX pick's size itself, so any pick fits."""
    mcu = ctx.spec.profile.device_class == "mcu"
    order = [k for k in artifact_kinds.by_preference("mcu") if k in INT8_KINDS] if mcu else INT8_KINDS
    return next((k for k in order if k in state.artifacts), None)


def _multi_qat_applies(ctx: RunContext, state: RunState) -> bool:
    """options.qat auto, not tried yet, and a student qat_multi can train: float inputs, raw outputs."""
    from edgedistill.contracts.signature import qat_blocker
    from edgedistill.workers.steps.distill.qat import qat_settled

    sig = state.signature
    return (
        ctx.spec.options.qat == "auto"
        and not qat_settled(state)
        and state.distillation.get("method") != "transformer"
        and qat_blocker(sig, {o.name: o.kind for o in sig.outputs}) is None
    )


class Verify(Step):
    """Reads state.data, state.teacher_outputs, state.student, state.artifacts, state.student_arch;
    writes state.metrics, state.budget, state.warnings and state.artifacts["probe"]."""

    name = "verify"
    stage = "verify"
    order = 100

    def run(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.runtimes import open_model
        from edgedistill.runtimes.tflm import run_tflm
        from edgedistill.workers.steps.distill.multi import needs_multi
        from edgedistill.workers.steps.export_onnx import torch_predict

        data = state.data
        if needs_multi(state.signature):
            self._run_multi(ctx, state)
            return
        x = data.x_of("test")
        if x.shape[0] == 0:
            raise PipelineError("the test split is empty: nothing to verify on", stage=self.stage)
        y = data.y_of("test")
        task = data.task
        from edgedistill.workers.steps.data import primary_targets

        teacher = primary_targets(data, state.teacher_outputs["test"])
        student = torch_predict(state.student, x)

        outputs: dict[str, np.ndarray] = {"teacher": teacher, "student_fp32": student}
        for kind in artifact_kinds.student_model_kinds():
            if kind in state.artifacts:
                ctx.check_cancel()
                ctx.emit("progress", {"message": f"evaluating {kind} on {x.shape[0]} test samples"})
                art = state.artifacts[kind]
                outputs[kind] = open_model(art.path, kind, metadata=art.metadata).predict(x)

        metrics: dict[str, Any] = {}
        for variant, out in outputs.items():
            metrics[variant] = evaluate(out, task=task, teacher=teacher, student=student, labels=y)
            metrics[variant]["runtime"] = _runtime_of(variant)
        metrics["teacher"].pop("max_abs_diff_vs_student_fp32", None)
        metrics["teacher"].pop("mean_abs_diff_vs_student_fp32", None)

        arena: int | None = None
        tflm_kind = artifact_kinds.tflm_kind()
        if tflm_kind in state.artifacts:
            ctx.check_cancel()
            n = min(x.shape[0], TFLM_MAX_SAMPLES)
            ctx.emit("progress", {"message": f"running the TFLite Micro interpreter on {n} test samples"})
            tflm_out, arena = run_tflm(state.artifacts[tflm_kind].path, x[:n])
            outputs[TFLM] = tflm_out
            metrics[TFLM] = evaluate(
                tflm_out, task=task, teacher=teacher[:n], student=student[:n], labels=None if y is None else y[:n]
            )
            metrics[TFLM]["runtime"] = "tflite-micro"
            metrics[TFLM]["subset"] = n < x.shape[0]
            if n < x.shape[0]:
                metrics[TFLM]["note"] = f"first {n} of {x.shape[0]} test samples (TFLM runs one at a time)"
            metrics[TFLM][f"max_abs_diff_vs_{tflm_kind}"] = float(np.max(np.abs(tflm_out - outputs[tflm_kind][:n])))

        over = self._quality_drops(ctx, state, metrics, task, y is not None)
        state.metrics = metrics

        self._check_budgets(ctx, state, arena)
        self._write_probe(ctx, state, x, y, outputs)
        record_quality(ctx, state, _primary_flash_kind(ctx, state))
        self._after_quality(ctx, state, metrics, over)

    def _run_multi(self, ctx: RunContext, state: RunState) -> None:
        """Per-output metrics for every variant (verify_multi), budgets as for any run, the quality check."""
        from edgedistill.workers.steps.verify_multi import verify_multi

        if len(state.data.splits["test"]) == 0:
            raise PipelineError("the test split is empty: nothing to verify on", stage=self.stage)
        metrics = verify_multi(ctx, state)
        state.metrics = metrics
        self._check_budgets(ctx, state, None)
        from edgedistill.workers.steps.probe_multi import write_multi_probe

        write_multi_probe(ctx, state, PROBE_SAMPLES)
        record_quality(ctx, state, _primary_flash_kind(ctx, state))
        budget = ctx.spec.options.accuracy_budget_pp
        from edgedistill.workers.steps.verify_multi import int8_drops

        over = int8_drops(metrics, INT8_KINDS, budget)
        if over and _multi_qat_applies(ctx, state):
            ptq = {
                k: {m: v for m, v in metrics[k].items() if m in ("headline", "drop_vs_student_fp32_pp", "samples")}
                for k in ("student_fp32", *INT8_KINDS, TFLM)
                if k in metrics
            }
            raise Int8OverBudget("; ".join(over), stage=self.stage, details={"ptq": ptq, "warnings": over})
        for msg in over:
            state.warnings.append(f"{msg} (budget {budget} pp)")
            ctx.emit("warning", {"message": msg})

    # ----------------------------------------------------------------------------------------------

    def _quality_drops(
        self, ctx: RunContext, state: RunState, metrics: dict[str, Any], task: str, has_labels: bool
    ) -> list[str]:
        """Record each int8 variant's drop vs the float student; returns the over-budget messages."""
        key = quality_key(task, has_labels)
        base = metrics["student_fp32"].get(key)
        budget = ctx.spec.options.accuracy_budget_pp
        over: list[str] = []
        qat_done = bool((state.distillation.get("qat") or {}).get("done"))
        for variant in (*INT8_KINDS, TFLM):
            if variant not in metrics or base is None or key not in metrics[variant]:
                continue
            drop = 100.0 * (base - metrics[variant][key])
            metrics[variant]["quality_metric"] = key
            metrics[variant]["drop_vs_student_fp32_pp"] = drop
            if drop > budget:
                tail = (
                    "even after quantization-aware distillation"
                    if qat_done
                    else "quantization-aware training would recover part of it"
                )
                over.append(
                    f"{variant}: {key} {100 * metrics[variant][key]:.2f}% is {drop:.2f} pp below the float "
                    f"student's {100 * base:.2f}% (budget {budget} pp); {tail}"
                )
        return over

    def _after_quality(self, ctx: RunContext, state: RunState, metrics: dict[str, Any], over: list[str]) -> None:
        """Over the accuracy budget: ask the runner for quantization-aware distillation (options.qat
        auto, not done yet), else warn."""
        qat_done = bool((state.distillation.get("qat") or {}).get("done"))
        if over and ctx.spec.options.qat == "auto" and not qat_done:
            ptq = {
                k: {m: v for m, v in metrics[k].items() if m in ("accuracy", "top1_agreement", "r2", "r2_vs_teacher",
                                                                  "drop_vs_student_fp32_pp", "samples")}
                for k in ("student_fp32", *INT8_KINDS, TFLM)
                if k in metrics
            }  # fmt: skip
            raise Int8OverBudget("; ".join(over), stage=self.stage, details={"ptq": ptq, "warnings": over})
        for msg in over:
            state.warnings.append(msg)
            ctx.emit("warning", {"message": msg})

    def _check_budgets(self, ctx: RunContext, state: RunState, arena_measured: int | None) -> None:
        from edgedistill.workers.steps.mcu import arena_reservation
        from edgedistill.workers.steps.model_info import tflite_ops

        profile = ctx.spec.profile
        b = profile.budgets
        arch = state.student_arch or {}
        budget: dict[str, Any] = dict(state.budget)
        violations: list[str] = []
        details: dict[str, Any] = {}
        corrections: dict[str, float] = {}

        # Flash: every int8 artifact deployed to the device must fit. On an MCU that is the full-int8
        # TFLite only: its ONNX files stay on the host (and QDQ ONNX is larger than the flatbuffer).
        sizes = {k: state.artifacts[k].size_bytes for k in INT8_KINDS if k in state.artifacts}
        primary = _primary_flash_kind(ctx, state)
        on_mcu = artifact_kinds.runnable_on("mcu")
        deployed = {k: v for k, v in sizes.items() if k in on_mcu} if profile.device_class == "mcu" else sizes
        budget["flash"] = {
            "artifact_kind": primary,
            "used_bytes": sizes.get(primary) if primary else None,
            "available_bytes": b.max_model_bytes,
            "per_artifact_bytes": sizes,
            "checked": sorted(deployed),
            "measured": True,
        }
        for k, size in deployed.items():
            if size > b.max_model_bytes:
                violations.append(f"{k} is {size:,} bytes, over max_model_bytes={b.max_model_bytes:,}")
        if deployed:
            largest = max(deployed.values())
            details["model_bytes"] = largest  # the runner reads model_bytes / arena_bytes
            if arch.get("est_int8_bytes"):
                corrections["est_int8_bytes"] = largest / float(arch["est_int8_bytes"])

        # RAM: the tensor arena TFLM measured (MCU), else the student's estimate for information.
        if arena_measured is not None:
            tfl = state.artifacts[artifact_kinds.tflm_kind()]
            reservation = arena_reservation(arena_measured, tfl.path)
            budget["tflm_arena"] = reservation
            budget["ram"] = {
                "used_bytes": reservation["reserved_bytes"],
                "measured_arena_bytes": arena_measured,
                "available_bytes": b.max_ram_bytes,
                "measured": True,
                "by": "tflite-micro RecordingMicroAllocator (+ margin, see tflm_arena)",
            }
            details["arena_bytes"] = reservation["reserved_bytes"]
            if arch.get("est_arena_bytes"):
                corrections["est_arena_bytes"] = reservation["reserved_bytes"] / float(arch["est_arena_bytes"])
            if b.max_ram_bytes is not None and reservation["reserved_bytes"] > b.max_ram_bytes:
                violations.append(
                    f"the tensor arena needs {reservation['reserved_bytes']:,} bytes (TFLM measured "
                    f"{arena_measured:,} + margin), over max_ram_bytes={b.max_ram_bytes:,}"
                )
        else:
            budget["ram"] = {
                "used_bytes": arch.get("est_arena_bytes"),
                "available_bytes": b.max_ram_bytes,
                "measured": False,
                "by": "estimate from the student's layers",
            }

        # Compute: the student's multiply-accumulates per inference.
        macs = arch.get("macs")
        budget["macs"] = {"used": macs, "available": b.max_macs}
        if macs is not None and b.max_macs is not None and int(macs) > b.max_macs:
            violations.append(f"the student needs {int(macs):,} MACs per inference, over max_macs={b.max_macs:,}")
            details["macs"] = int(macs)

        # Ops: the firmware's op resolver must have every op of the device's TFLite model.
        op_errors: list[str] = []
        if profile.op_allowlist:
            allowed = set(profile.op_allowlist)
            budget["ops"] = {}
            for kind in TFLITE_KINDS:
                if kind in state.artifacts:
                    ops = tflite_ops(state.artifacts[kind].path)
                    extra = sorted(set(ops) - allowed)
                    budget["ops"][kind] = {"used": ops, "not_allowed": extra}
                    if extra:
                        op_errors.append(f"{kind} uses {', '.join(extra)}")

        for entry in ("flash", "ram"):
            used, avail = budget[entry].get("used_bytes"), budget[entry].get("available_bytes")
            budget[entry]["fits"] = None if used is None or avail is None else used <= avail
        budget["macs"]["fits"] = None if macs is None or b.max_macs is None else int(macs) <= b.max_macs
        budget["violations"] = violations + op_errors
        state.budget = budget

        if op_errors:
            from edgedistill.workers.steps.tflm_ops import explain

            extra_ops = sorted({op for v in budget["ops"].values() for op in v["not_allowed"]})
            raise OpNotAllowed(
                f"the int8 model uses ops that profile {profile.name!r} does not allow: {'; '.join(op_errors)}."
                f"{explain(extra_ops)} Allowed: {', '.join(profile.op_allowlist or [])}",
                stage=self.stage,
            )
        if violations:
            details.update({"violations": violations, "corrections": corrections, "profile": profile.name})
            raise ArtifactOverBudget("; ".join(violations), stage=self.stage, details=details)

    def _write_probe(
        self, ctx: RunContext, state: RunState, x: np.ndarray, y: np.ndarray | None, outputs: dict[str, np.ndarray]
    ) -> None:
        n = min(PROBE_SAMPLES, x.shape[0])
        arrays: dict[str, np.ndarray] = {"x": np.ascontiguousarray(x[:n], dtype=np.float32)}
        if y is not None:
            arrays["y"] = y[:n]
        for name in ("teacher", "student_fp32", *INT8_KINDS, TFLM):
            if name in outputs and outputs[name].shape[0] >= n:
                arrays[f"out_{name}"] = np.ascontiguousarray(outputs[name][:n], dtype=np.float32)
        from edgedistill.workers.steps.probe_multi import save_probe

        save_probe(
            ctx,
            state,
            arrays,
            {
                "samples": n,
                "input_layout": "the data's layout (NCHW / NCT / NF); convert with each artifact's signature.layout",
                "outputs": "float32; int8 models' outputs are dequantized with the model's own scale/zero-point",
            },
        )


def record_quality(ctx: RunContext, state: RunState, deployed: str | None) -> None:
    """metrics.quality_problem on the artifact the device runs (else the float student). A student far
    below its teacher is not failed here: the run completes with state.quality set, which the report,
    summary.md and the job page show as a prominent warning above every figure."""
    from edgedistill.workers.steps.metrics import quality_problem

    variant = deployed if deployed in state.metrics and "outputs" in state.metrics[deployed] else "student_fp32"
    per = state.metrics.get(variant, {}).get("outputs")
    if per is None:  # single-output run: judge its one output with the metric of its kind
        per = _single_output_metrics(state, variant)
    problem = quality_problem(per) if per else None
    state.quality = {"problem": problem, "variant": variant, "action": "warning" if problem else None}
    state.warnings[:] = [w for w in state.warnings if not w.startswith("quality warning (")]  # verify may rerun
    if problem:
        msg = f"quality warning ({variant}): the student does not reproduce its teacher: {problem}"
        state.warnings.insert(0, msg)
        ctx.emit("warning", {"message": msg})


def _single_output_metrics(state: RunState, variant: str) -> dict[str, Any] | None:
    m = state.metrics.get(variant, {})
    sig = state.signature
    if sig is None or not m:
        return None
    out = sig.outputs[0]
    if out.kind in ("logits", "probabilities", "log_probabilities") and "top1_agreement" in m:
        from edgedistill.workers.steps.data import primary_targets

        t = primary_targets(state.data, state.teacher_outputs["test"])
        counts = np.bincount(t.argmax(1), minlength=t.shape[1])
        return {out.name: {"kind": out.kind, "top1_agreement": m["top1_agreement"],
                           "constant_agreement": float(counts.max() / max(1, counts.sum()))}}  # fmt: skip
    if out.kind == "regression" and "r2_vs_teacher" in m:
        return {out.name: {"kind": "regression", "headline": m["r2_vs_teacher"], "headline_name": "R^2 vs the teacher"}}
    return None


def _runtime_of(variant: str) -> str:
    found = artifact_kinds.runtime_of(variant)
    if found is not None:
        return found
    return "torch" if variant == "student_fp32" else "teacher"
