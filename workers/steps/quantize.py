"""Static int8 quantization of the student's ONNX file (kind onnx_int8) with onnxruntime.quantization.

quant_pre_process (shape inference + graph optimisation) then quantize_static in QDQ format, QInt8
activations and weights, per-channel weights, calibrated on training samples with the job's method
(minmax / entropy / percentile). Input and output stay float; scale/zero-point of the QDQ pairs next
to them are read back from the file into the sidecar."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file

FILENAME = "student_int8.onnx"
CALIBRATION_BATCH = 32
CHECK_SAMPLES = 256


def calibration_samples(x_train: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded random subset of the training inputs (all of them when there are fewer)."""
    n = x_train.shape[0]
    if n == 0:
        raise PipelineError("no training samples to calibrate the int8 model with")
    if count >= n:
        return np.ascontiguousarray(x_train, dtype=np.float32)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return np.ascontiguousarray(x_train[idx], dtype=np.float32)


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in methods:
        raise PipelineError(f"unknown calibration method {name!r}; use one of {', '.join(methods)}")
    return methods[name]


def even_batch_size(n: int, limit: int) -> int:
    """The largest batch <= limit that divides n. The entropy and percentile calibrators stack the
    outputs of all batches into one array, which fails when the last batch is shorter."""
    return next(b for b in range(min(limit, n), 0, -1) if n % b == 0)


def _reader(samples: dict[str, np.ndarray], limit: int = CALIBRATION_BATCH) -> Any:
    """Calibration batches of every model input by name (token ids and masks fed as they are)."""
    from onnxruntime.quantization import CalibrationDataReader

    n = int(next(iter(samples.values())).shape[0])
    batch = even_batch_size(n, limit)

    class _Batches(CalibrationDataReader):
        """Feeds the calibration samples in equal batches (the batch axis is dynamic)."""

        def __init__(self) -> None:
            self._starts = iter(range(0, n, batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._starts, None)
            if start is None:
                return None
            return {name: x[start : start + batch] for name, x in samples.items()}

    return _Batches()


def pre_process(src: Path, pre: Path) -> None:
    """quant_pre_process with the working directory in pre's (temporary) folder: when its symbolic shape
    inference gives up, onnxruntime saves "sym_shape_infer_temp.onnx" plus external data into the
    current directory, which would otherwise litter the worker's."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, before = src.resolve(), pre.resolve(), os.getcwd()
    os.chdir(pre.parent)  # contextlib.chdir is 3.11+
    try:
        quant_pre_process(str(src), str(pre))
    finally:
        os.chdir(before)


def quantize_onnx_int8(
    src: Path,
    dst: Path,
    samples: np.ndarray | dict[str, np.ndarray],
    method: str,
    work_dir: Path,
    *,
    batch_limit: int | None = None,
) -> None:
    """quant_pre_process then quantize_static (QDQ, QInt8/QInt8, per-channel) from src to dst.
    samples: the single input's batch, or every input's by name (integer inputs are never quantised:
    onnxruntime quantises float tensors only, an Embedding's table included, its ids not).
    batch_limit: the model's fixed batch, when it has one (calibration feeds batches of at most it)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not isinstance(samples, dict):
        samples = {onnx.load(str(src)).graph.input[0].name: samples}
    # The pre-processed model is an intermediate: it lives in a temp folder that is always removed.
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".quant-") as tmp_dir:
        pre = Path(tmp_dir) / "pre.onnx"
        pre_process(src, pre)
        # The histogram calibrators print() progress; keep the CLI's output to our own events.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(pre),
                str(dst),
                _reader(samples, batch_limit or CALIBRATION_BATCH),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                # 7-bit weights: x86 CPUs without VNNI (AVX2) run int8 through u8s8 16-bit multiply-adds
                # that saturate with full-range weights (onnxruntime's documented accuracy trap; digits
                # lost 7 pp on an AVX2 EPYC); the 7-bit range costs nothing measurable where VNNI exists.
                reduce_range=True,
                calibrate_method=_calibration_method(method),
            )


def quantize_onnx_dynamic(src: Path, dst: Path, work_dir: Path) -> None:
    """quant_pre_process then quantize_dynamic: int8 MatMul / Gather weights, activations quantised at
    run time. Used for transformer students (students_transformer.py), where static QDQ of the
    attention activations lost accuracy and speed (docs/benchmarks.md, "Transformer distillation")."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".quant-") as tmp_dir:
        pre = Path(tmp_dir) / "pre.onnx"
        pre_process(src, pre)
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"])


def static_facts(calibration: str, samples: int) -> dict[str, Any]:
    """What quantize_onnx_int8 did, for an artifact's metadata."""
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activations": "QInt8",
        "weights": "QInt8 per-channel",
        "calibration": calibration,
        "calibration_samples": samples,
    }


def dynamic_facts() -> dict[str, Any]:
    """What quantize_onnx_dynamic did, for an artifact's metadata."""
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "format": "integer ops (MatMulInteger, DynamicQuantizeLinear)",
        "weights": "QInt8 (MatMul, Gather)",
        "activations": "quantised at run time",
    }


class QuantizeOnnx(Step):
    """Reads state.artifacts["onnx_fp32"], state.data; writes state.artifacts["onnx_int8"]."""

    name = "quantize_onnx"
    stage = "quantize"
    order = 70

    def run(self, ctx: RunContext, state: RunState) -> None:
        if "onnx_int8" not in ctx.spec.profile.targets:
            return
        import onnx

        from edgedistill.runtimes.onnx import run_onnx
        from edgedistill.workers.steps.export_onnx import max_abs_diff
        from edgedistill.workers.steps.model_info import describe_onnx

        fp32 = state.artifacts.get("onnx_fp32")
        if fp32 is None:
            raise PipelineError("onnx_int8 needs the fp32 ONNX model; export_onnx did not run", stage=self.stage)
        opts = ctx.spec.options
        from edgedistill.workers.steps.export_multi import is_multi

        if is_multi(state):
            self._run_multi(ctx, state, fp32)
            return
        samples = calibration_samples(state.data.x_of("train"), opts.calibration_samples, opts.seed)
        ctx.emit(
            "progress",
            {"message": f"calibrating int8 ONNX on {samples.shape[0]} training samples ({opts.calibration})"},
        )
        x_check = state.data.x_of("test")[:CHECK_SAMPLES]
        if x_check.shape[0] == 0:
            x_check = samples[:CHECK_SAMPLES]

        with staged_file(ctx.work_dir, FILENAME) as tmp:
            try:
                quantize_onnx_int8(fp32.path, tmp, samples, opts.calibration, ctx.work_dir)
                onnx.checker.check_model(str(tmp))
            except PipelineError:
                raise
            except Exception as exc:
                raise PipelineError(f"int8 quantization of the ONNX model failed: {exc}", stage=self.stage) from exc
            got = run_onnx(tmp, x_check)
            ref = run_onnx(fp32.path, x_check)
            if got.shape != ref.shape or not np.isfinite(got).all():
                raise PipelineError("the int8 ONNX model produced invalid outputs", stage=self.stage)
            info = describe_onnx(tmp)

        info["signature"]["layout"] = fp32.metadata.get("signature", {}).get("layout")
        record_artifact(
            ctx,
            state,
            kind="onnx_int8",
            path=ctx.work_dir / FILENAME,
            metadata={
                **info,
                "precision": "int8",
                "quantization": {
                    **static_facts(opts.calibration, int(samples.shape[0])),
                    "pre_process": "quant_pre_process",
                },
                "check": {"samples": int(x_check.shape[0]), "max_abs_diff_vs_fp32": max_abs_diff(got, ref)},
            },
        )

    def _run_multi(self, ctx: RunContext, state: RunState, fp32: Any) -> None:
        """Several inputs (token ids as int64, as the fp32 file takes them) and outputs by name."""
        import onnx

        from edgedistill.runtimes.onnx import OnnxModel
        from edgedistill.workers.steps.export_multi import calibration_inputs, check_inputs, max_diffs
        from edgedistill.workers.steps.model_info import describe_onnx

        opts = ctx.spec.options
        samples = calibration_inputs(state, opts.calibration_samples, opts.seed)
        samples = {k: v.astype(np.int64) if v.dtype.kind in "iub" else v.astype(np.float32) for k, v in samples.items()}
        n = int(next(iter(samples.values())).shape[0])
        ctx.emit("progress", {"message": f"calibrating int8 ONNX on {n} training samples ({opts.calibration})"})
        x = check_inputs(state, CHECK_SAMPLES)
        dynamic = state.student_arch.get("family") == "transformer"
        with staged_file(ctx.work_dir, FILENAME) as tmp:
            try:
                if dynamic:
                    quantize_onnx_dynamic(fp32.path, tmp, ctx.work_dir)
                else:
                    quantize_onnx_int8(fp32.path, tmp, samples, opts.calibration, ctx.work_dir)
                onnx.checker.check_model(str(tmp))
            except Exception as exc:
                raise PipelineError(f"int8 quantization of the ONNX model failed: {exc}", stage=self.stage) from exc
            got = OnnxModel(tmp).predict_all(x)
            diffs = max_diffs(got, OnnxModel(fp32.path).predict_all(x))
            info = describe_onnx(tmp)
        record_artifact(
            ctx,
            state,
            kind="onnx_int8",
            path=ctx.work_dir / FILENAME,
            metadata={
                **info,
                "precision": "int8",
                "teacher_io": fp32.metadata.get("teacher_io"),
                "changes_vs_teacher": fp32.metadata.get("changes_vs_teacher", []),
                "quantization": {
                    **(dynamic_facts() if dynamic else static_facts(opts.calibration, n)),
                    "integer_inputs": "fed as int64, not quantised",
                },
                "check": {"samples": int(next(iter(x.values())).shape[0]), "max_abs_diff_vs_fp32": diffs},
            },
        )
