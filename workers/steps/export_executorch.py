"""Export the student to ExecuTorch ``.pte`` programs lowered to XNNPACK (kinds executorch_fp32 and
executorch_int8) and verify each in ExecuTorch's own Python runtime (edgedistill.runtimes.executorch)
on the test split, with the fidelity metrics verify gives every artifact.

- Module: what the ONNX exporter exports (a tabular MLP with its input standardisation as float
  Sub/Div in front, a several-input/-output student as heads.export_module under the teacher's names).
  Images stay NCHW, token ids int64, I/O float.
- int8: PT2E static quantization with executorch's XNNPACKQuantizer (symmetric, per-channel weights,
  int8 activations), calibrated on the samples the ONNX and TFLite quantizers use
  (options.calibration_samples, options.seed), then lowered with XnnpackPartitioner. What XNNPACK
  does not take (embeddings, reductions outside a delegate) runs on ExecuTorch's portable CPU kernels;
  the artifact's ``delegation`` says which ops.
- Batch: dynamic, 1..MAX_BATCH (XNNPACK sizes its buffers for the bound). The capture for calibration
  must already be dynamic that wide: the converted graph keeps its batch guards.

Tested with executorch 1.5.1, torch 2.13.0, torchao 0.18.0 (pyproject extra ``executorch``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgedistill.contracts.errors import ArtifactRunError, PipelineError, RuntimeUnavailable
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file

KINDS = ("executorch_fp32", "executorch_int8")
FILENAMES = {"executorch_fp32": "student_fp32.pte", "executorch_int8": "student_int8.pte"}
MAX_BATCH = 64
CALIBRATION_BATCH = 32
RUNTIME = "executorch"
INSTALL_HINT = "pip install 'executorch>=1.5,<1.6' (or edgedistill[executorch])"
# fp32 XNNPACK vs torch on CPU: the same maths up to summation order and FMA.
ATOL = 1e-4
RTOL = 1e-3
_EXPORT_LOCK = threading.Lock()  # torch.export and the quantizer patch global state; one export at a time

Inputs = tuple[Any, ...]  # torch tensors in the module's argument order


# --------------------------------------------------------------------------------------------------
# torch -> .pte
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delegation:
    """How much of the lowered graph XNNPACK took; the rest runs on portable CPU kernels."""

    backend: str
    delegated_subgraphs: int
    delegated_nodes: int
    non_delegated_nodes: int
    non_delegated_ops: dict[str, int]

    @property
    def fully_delegated(self) -> bool:
        # getitem unpacks the delegate's output tuple: bookkeeping, not a CPU kernel.
        return self.delegated_subgraphs > 0 and set(self.non_delegated_ops) <= {"getitem"}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fully_delegated": self.fully_delegated}


def _capture(module: Any, examples: Inputs, max_batch: int) -> Any:
    """torch.export with dim 0 of every input sharing one dynamic symbol 1..max_batch."""
    import torch
    from torch.export import Dim

    # export specializes a size-1 dim to the constant 1 and then refuses it as dynamic: trace with 2.
    traced = tuple(t[:1].expand(2, *t.shape[1:]).contiguous() for t in examples)
    batch = Dim("batch", min=1, max=max_batch)
    # Keyed by tensor, so it fits any forward signature (heads.export_module takes *inputs).
    shapes = torch.export.ShapesCollection()
    for t in traced:
        shapes[t] = {0: batch}
    return torch.export.export(module, traced, dynamic_shapes=shapes.dynamic_shapes(module, traced))


def quantize_int8(module: Any, examples: Inputs, calibration: Sequence[Inputs], max_batch: int) -> Any:
    """XNNPACKQuantizer (symmetric, per-channel) PT2E int8 of module, calibrated on the batches."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    # executorch's quantizer subclasses torchao's Quantizer: prepare/convert must be torchao's too.
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise PipelineError("int8 quantization needs at least one calibration batch", stage="export")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_capture(module, examples, max_batch).module(), quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
    return convert_pt2e(prepared)


def _delegation(edge: Any) -> Delegation:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    ops = {str(op): int(b.non_delegated) for op, b in info.delegation_by_operator.items() if b.non_delegated}
    return Delegation(
        backend="XnnpackPartitioner",
        delegated_subgraphs=int(info.num_delegated_subgraphs),
        delegated_nodes=int(info.num_delegated_nodes),
        non_delegated_nodes=int(info.num_non_delegated_nodes),
        non_delegated_ops=ops,
    )


def export_pte(
    module: Any, examples: Inputs, *, calibration: Sequence[Inputs] | None = None, max_batch: int = MAX_BATCH
) -> tuple[bytes, Delegation]:
    """(.pte bytes, delegation) of module lowered to XNNPACK: fp32 when calibration is None, else int8."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if max_batch < 2:
        raise ValueError("max_batch must be >= 2 (a dynamic batch needs a range)")
    module = module.cpu().eval()
    with _EXPORT_LOCK, torch.no_grad(), warnings.catch_warnings():
        # torch/torchao deprecation noise from inside the export stack, not actionable here.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        if calibration is not None:
            module = quantize_int8(module, examples, calibration, max_batch)
        edge = to_edge_transform_and_lower(_capture(module, examples, max_batch), partitioner=[XnnpackPartitioner()])
        delegation = _delegation(edge)
        return bytes(edge.to_executorch().buffer), delegation


# --------------------------------------------------------------------------------------------------
# what the step exports and checks against
# --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """The module to export with its example and calibration inputs, the test inputs by the teacher's
    names and the torch reference outputs on them."""

    module: Any
    examples: Inputs
    calibration: list[Inputs]
    calibration_samples: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    test_inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    multi: bool
    changes_vs_teacher: list[str]
    float_preprocessing: bool


def _to_torch(x: np.ndarray) -> Any:
    import torch

    a = np.ascontiguousarray(x.astype(np.int64) if x.dtype.kind in "iub" else x.astype(np.float32))
    return torch.from_numpy(a)


def _batches(arrays: Sequence[np.ndarray], size: int) -> list[Inputs]:
    n = int(arrays[0].shape[0])
    return [tuple(_to_torch(a[s : s + size]) for a in arrays) for s in range(0, n, size)]


def plan(ctx: RunContext, state: RunState) -> Plan:
    """Single-input students as ExportOnnx exports them; several inputs/outputs as export_multi does."""
    from edgedistill.workers.steps.export_multi import calibration_inputs, deploy_module, is_multi, torch_predict_all
    from edgedistill.workers.steps.export_onnx import io_names, torch_predict
    from edgedistill.workers.steps.quantize import calibration_samples
    from edgedistill.workers.steps.students import standardized_export
    from edgedistill.workers.steps.students_multi import example_inputs

    opts, data = ctx.spec.options, state.data
    if len(data.splits["test"]) == 0:
        raise PipelineError("the test split is empty: nothing to verify the .pte programs on", stage="export")
    if is_multi(state):
        sig = state.signature
        module = deploy_module(state)
        samples = calibration_inputs(state, opts.calibration_samples, opts.seed)
        test = data.inputs_of("test")
        changes = [
            f"input {spec.name!r} takes int64 (the teacher's: {spec.dtype})"
            for spec in sig.inputs
            if not spec.dtype.startswith("float") and spec.dtype != "int64"
        ]
        return Plan(
            module=module,
            examples=tuple(_to_torch(t.numpy()) for t in example_inputs(sig)),
            calibration=_batches([samples[n] for n in sig.input_names], CALIBRATION_BATCH),
            calibration_samples=int(next(iter(samples.values())).shape[0]),
            input_names=tuple(sig.input_names),
            output_names=tuple(sig.output_names),
            test_inputs=test,
            reference=torch_predict_all(module, sig, test),
            multi=True,
            changes_vs_teacher=changes,
            float_preprocessing=False,
        )
    # An MLP keeps its input standardisation as float ops in front of the int8 layers (export_tflite's docstring).
    module, _, float_pre = standardized_export(state.student, float_io=True)
    x_cal = calibration_samples(data.x_of("train"), opts.calibration_samples, opts.seed)
    x_test = np.ascontiguousarray(data.x_of("test"), dtype=np.float32)
    in_name, out_name = io_names(state)
    return Plan(
        module=module.cpu().eval(),
        examples=(_to_torch(x_test[:1]),),
        calibration=_batches([x_cal], CALIBRATION_BATCH),
        calibration_samples=int(x_cal.shape[0]),
        input_names=(in_name,),
        output_names=(out_name,),
        test_inputs={in_name: x_test},
        reference={out_name: torch_predict(state.student, x_test)},
        multi=False,
        changes_vs_teacher=[],
        float_preprocessing=float_pre,
    )


# --------------------------------------------------------------------------------------------------
# fidelity on the test split: the metrics verify computes for every artifact
# --------------------------------------------------------------------------------------------------


def fidelity(
    ctx: RunContext, state: RunState, outputs: dict[str, np.ndarray], student: dict[str, np.ndarray], runtime: str
) -> dict[str, Any]:
    """One variant's metrics as verify records them: metrics.evaluate for one class-score or regression
    output (verify.py), else per output with metrics.evaluate_outputs (verify_multi.py); plus the drop
    against the float student's (``student``: its outputs on the test split, by the teacher's names)."""
    from edgedistill.workers.steps.distill.multi import needs_multi

    if needs_multi(state.signature):
        return _per_output(ctx, state, outputs, student, runtime)
    from edgedistill.workers.steps.data import primary_targets
    from edgedistill.workers.steps.metrics import evaluate, quality_key

    data = state.data
    y = data.y_of("test")
    teacher = primary_targets(data, state.teacher_outputs["test"])
    ref = next(iter(student.values()))
    got = evaluate(next(iter(outputs.values())), task=data.task, teacher=teacher, student=ref, labels=y)
    base = evaluate(ref, task=data.task, teacher=teacher, student=None, labels=y)
    key = quality_key(data.task, y is not None)
    got.update(runtime=runtime, quality_metric=key, drop_vs_student_fp32_pp=100.0 * (base[key] - got[key]))
    return got


def _per_output(
    ctx: RunContext, state: RunState, outputs: dict[str, np.ndarray], student: dict[str, np.ndarray], runtime: str
) -> dict[str, Any]:
    """verify_multi's judgement of one variant (its closure ``judge`` is not importable): per-output
    metrics, the weighted headline, the quality problem and the drop against the float student."""
    from edgedistill.workers.steps.distill.multi import _weight, thresholds
    from edgedistill.workers.steps.metrics import evaluate_outputs, quality_problem, variant_headline

    sig, data, opts = state.signature, state.data, ctx.spec.options
    teacher = state.teacher_outputs["test"]
    y = data.y_of("test")
    kinds = {o.name: str(o.kind) for o in sig.outputs}
    weights = {n: _weight(opts, n) for n in sig.output_names}

    def judge(outs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        return evaluate_outputs(
            kinds, outs, teacher, labels=y, primary=data.primary_output, thresholds=thresholds(sig, opts),
            scores={o.name: o.scores for o in sig.outputs if o.scores},
        )  # fmt: skip

    per = judge(outputs)
    headline = variant_headline(per, weights)
    return {
        "runtime": runtime,
        "samples": int(next(iter(outputs.values())).shape[0]),
        "outputs": per,
        "headline": headline,
        "quality_problem": quality_problem(per),
        "drop_vs_student_fp32_pp": 100.0 * (variant_headline(judge(student), weights) - headline),
    }


# --------------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------------


def _signature(model: Any, layout: str) -> dict[str, Any]:
    def tensors(specs: Any, names: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"name": n, "dtype": str(s.dtype), "shape": ["batch", *s.per_sample]}
            for s, n in zip(specs, names, strict=True)
        ]

    return {
        "inputs": tensors(model.inputs, model.input_names),
        "outputs": tensors(model.outputs, model.output_names),
        "layout": layout,
        "max_batch": model.max_batch,
    }


class ExportExecutorch(Step):
    """Reads state.student (state.export_module / state.signature for several inputs or outputs),
    state.data, state.teacher_outputs; writes state.artifacts["executorch_fp32"] and/or
    ["executorch_int8"], whichever the profile targets."""

    name = "export_executorch"
    stage = "export"
    order = 85  # after the TFLite exports, before the C arrays

    def run(self, ctx: RunContext, state: RunState) -> None:
        kinds = [k for k in KINDS if k in ctx.spec.profile.targets]
        if not kinds:
            return
        from edgedistill.runtimes.executorch import ExecutorchModel, installed
        from edgedistill.workers.steps.export_multi import max_diffs

        try:
            import executorch  # noqa: F401  (the exporter and the runtime ship in one distribution)
        except ImportError as exc:
            raise PipelineError(f"the ExecuTorch targets need executorch: {INSTALL_HINT}", stage=self.stage) from exc
        p = plan(ctx, state)
        teacher_io = {"inputs": list(p.input_names), "outputs": list(p.output_names)}
        for kind in kinds:
            ctx.check_cancel()
            int8 = kind == "executorch_int8"
            ctx.emit(
                "progress",
                {"message": f"lowering the student to {kind} (XNNPACK"
                 + (f", int8 calibrated on {p.calibration_samples} training samples)" if int8 else ")")},
            )  # fmt: skip
            filename = FILENAMES[kind]
            with staged_file(ctx.work_dir, filename) as tmp:
                try:
                    pte, delegation = export_pte(p.module, p.examples, calibration=p.calibration if int8 else None)
                except PipelineError:
                    raise
                except Exception as exc:
                    raise PipelineError(
                        f"ExecuTorch export ({kind}) of the student failed: {exc}", stage=self.stage
                    ) from exc
                tmp.write_bytes(pte)
                ctx.emit("progress", {"message": f"running {kind} on {len(state.data.splits['test'])} test samples"})
                try:
                    model = ExecutorchModel(tmp, 1, metadata={"teacher_io": teacher_io})
                    got = model.predict_all(p.test_inputs)
                except RuntimeUnavailable as exc:
                    raise PipelineError(str(exc), stage=self.stage) from exc
                except ArtifactRunError as exc:
                    raise PipelineError(f"the {kind} program does not run: {exc}", stage=self.stage) from exc
                diffs = max_diffs(got, p.reference)
                self._check(kind, got, p, diffs, state)
                metrics = fidelity(ctx, state, got, p.reference, RUNTIME)
                signature = _signature(model, "as-is" if p.multi else _layout(state.data.modality))
            version = (installed() or (RUNTIME, "unknown"))[1]
            metadata: dict[str, Any] = {
                "signature": signature,
                "teacher_io": teacher_io,
                "changes_vs_teacher": p.changes_vs_teacher,
                "precision": "int8" if int8 else "fp32",
                "io": "float32",
                "runtime": RUNTIME,
                "runtime_version": version,
                "exporter": "torch.export (dynamic batch) -> executorch.exir.to_edge_transform_and_lower"
                "(XnnpackPartitioner) -> to_executorch()",
                "delegation": delegation.as_dict(),
                "check": {"samples": int(next(iter(got.values())).shape[0]), "max_abs_diff_vs_torch": diffs},
                "verification": metrics,
            }
            if int8:
                metadata["quantization"] = {
                    "tool": "PT2E (executorch XNNPACKQuantizer, symmetric per-channel)",
                    "activations": "int8",
                    "weights": "int8 per-channel",
                    "calibration": "quantizer default observers (options.calibration applies to ONNX)",
                    "calibration_samples": p.calibration_samples,
                }
                if state.qat_model is not None:
                    metadata["quantization"]["note"] = "post-training int8: the QAT graph is litert-torch's"
            if p.float_preprocessing:
                metadata["float_preprocessing"] = "per-feature (x - mean) / std (sub, div) before the int8 layers"
            if not delegation.fully_delegated:
                ops = ", ".join(sorted(k for k in delegation.non_delegated_ops if k != "getitem"))
                ctx.emit("progress", {"message": f"{kind}: {ops} run on ExecuTorch's portable kernels, not XNNPACK"})
            record_artifact(ctx, state, kind=kind, path=ctx.work_dir / filename, metadata=metadata)

    def _check(self, kind: str, got: dict[str, np.ndarray], p: Plan, diffs: dict[str, float], state: RunState) -> None:
        if not all(np.isfinite(v).all() for v in got.values() if v.dtype.kind == "f"):
            raise PipelineError(f"the {kind} program produced invalid outputs", stage=self.stage)
        if kind != "executorch_fp32":
            return
        kinds = {o.name: o.kind for o in state.signature.outputs} if p.multi else {}
        for name, d in diffs.items():
            ref = p.reference[name]
            tol = ATOL + RTOL * float(np.max(np.abs(ref))) if ref.size else ATOL
            if d > tol and kinds.get(name) != "class_index":
                raise PipelineError(
                    f"the {kind} output {name!r} disagrees with the torch student (max |diff| {d:.3g} > {tol:.3g})",
                    stage=self.stage,
                )


def _layout(modality: str) -> str:
    from edgedistill.workers.steps.export_onnx import DATA_LAYOUTS

    return DATA_LAYOUTS.get(modality, "as-is")
