"""Host latency of every model artifact in the runtime a deployment would use, batch 1, plus the
teacher's latency on the same input, so the report can give a speed-up in the same runtime
(workers.steps.device_artifact): an ONNX teacher in onnxruntime and a TFLite one in LiteRT, each
at the profile's threads like the student's files; a torch teacher in torch, next to the fp32
student timed in torch at the same threads ("student_torch", not an artifact).

Timed region: one runtime call on an input already converted to the model's layout and dtype
(onnxruntime session.run; ai-edge-litert set_tensor + invoke + get_tensor). Threads: the profile's.
MCU profiles also get an *estimated* on-device latency = MACs x cycles_per_mac / clock_hz; it is
labelled source "estimated" and is not sent as a host measurement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts import artifact_kinds

# Host and device measure with the same timing code and runtime wrappers (edgedistill.runtimes).
from edgedistill.runtimes.timing import latency_stats, time_calls
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState

# The kinds the host times, in registry order.
ARTIFACT_KINDS = artifact_kinds.measured_by("host")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimated_mcu_latency(macs: int, cycles_per_mac: float, clock_hz: int) -> dict[str, Any]:
    ms = macs * cycles_per_mac / clock_hz * 1e3
    return {
        "source": "estimated",
        "estimated_ms": ms,
        "formula": "macs x cycles_per_mac / clock_hz",
        "inputs": {"macs": int(macs), "cycles_per_mac": cycles_per_mac, "clock_hz": clock_hz},
    }


def _timed_call(
    path: Path,
    kind: str,
    metadata: dict[str, Any],
    threads: int,
    x1: np.ndarray | None,
    one: dict[str, np.ndarray] | None,
) -> tuple[Callable[[], Any], str, str]:
    """A no-argument call that runs the artifact once on x1 (or one sample of each input by the teacher's
    name), prepared by its runtime wrapper so only the runtime is timed: the agent times devices with
    the same wrappers."""
    from edgedistill.runtimes import open_model

    model = open_model(path, kind, threads=threads, metadata=metadata)
    fn = model.timed_call_all(one) if one is not None else model.timed_call(x1 if x1 is not None else np.empty(0))
    return fn, model.runtime_name, model.runtime_version


def _export_for_timing(module: Any, x1: np.ndarray, path: Path, device: Any) -> None:
    import warnings

    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x1))
    if device is not None:
        xt = xt.to(device)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (xt,), str(path), dynamo=False, opset_version=17, input_names=["x"])


def _tflite_teacher_call(path: Path, threads: int, x1: np.ndarray) -> tuple[Callable[[], Any], str]:
    """One invoke of a single-input TFLite teacher on x1 (quantized with the model's own scale when its
    input is integer), on an interpreter with the profile's threads."""
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    d = interp.get_input_details()[0]
    if tuple(int(v) for v in d["shape"]) != tuple(x1.shape):
        interp.resize_tensor_input(d["index"], list(x1.shape))
    interp.allocate_tensors()
    dtype = np.dtype(d["dtype"])
    scale, zero = d.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        xe = np.clip(np.round(x1 / scale) + zero, info.min, info.max).astype(dtype)
    else:
        xe = np.ascontiguousarray(x1, dtype=dtype)
    index = d["index"]

    def call() -> None:
        interp.set_tensor(index, xe)
        interp.invoke()

    return call, str(getattr(ai_edge_litert, "__version__", "unknown"))


class Benchmark(Step):
    """Reads state.artifacts, state.data, state.teacher, state.student_arch; appends to state.latency."""

    name = "benchmark"
    stage = "benchmark"
    order = 110

    def run(self, ctx: RunContext, state: RunState) -> None:
        opts = ctx.spec.options
        profile = ctx.spec.profile
        threads = profile.threads
        x_test = state.data.x_of("test")
        x1 = np.ascontiguousarray((x_test if x_test.shape[0] else state.data.x_of("train"))[:1], dtype=np.float32)
        from edgedistill.workers.steps.export_multi import is_multi

        multi = is_multi(state)
        one: dict[str, np.ndarray] | None = None
        if multi:
            split = "test" if len(state.data.splits["test"]) else "train"
            one = {k: v[:1] for k, v in state.data.inputs_of(split).items()}

        for kind in ARTIFACT_KINDS:
            art = state.artifacts.get(kind)
            if art is None:
                continue
            ctx.check_cancel()
            ctx.emit("progress", {"message": f"timing {kind}: {opts.benchmark_runs} runs at batch 1"})
            fn, runtime, version = _timed_call(art.path, kind, art.metadata, threads, None if multi else x1, one)
            samples = time_calls(fn, warmup=opts.benchmark_warmup, runs=opts.benchmark_runs)
            self._record(ctx, state, kind, runtime, version, threads, samples)

        self._teacher(ctx, state, x1, threads)

        if profile.device_class == "mcu" and profile.clock_hz and profile.cycles_per_mac:
            macs = (state.student_arch or {}).get("macs")
            if macs:
                est = estimated_mcu_latency(int(macs), profile.cycles_per_mac, profile.clock_hz)
                entry = {"artifact_kind": artifact_kinds.tflm_kind(), "runtime": "tflite-micro (estimate)", **est}
                state.latency.append(entry)
                ctx.emit(
                    "progress",
                    {"message": f"estimated on-device latency {est['estimated_ms']:.2f} ms ({est['formula']})"},
                )
                target = profile.budgets.latency_target_ms
                if target is not None and est["estimated_ms"] > target:
                    msg = f"estimated on-device latency {est['estimated_ms']:.1f} ms is over the {target} ms target"
                    state.warnings.append(msg)
                    ctx.emit("warning", {"message": msg})

    def _teacher(self, ctx: RunContext, state: RunState, x1: np.ndarray, threads: int) -> None:
        from edgedistill.runtimes.onnx import OnnxModel

        teacher = state.teacher
        if teacher is None:
            return
        opts = ctx.spec.options
        ctx.emit("progress", {"message": "timing the teacher at batch 1"})
        fixed = getattr(teacher.signature, "fixed_batch", None)
        io = getattr(teacher, "io", None)
        multi = io is not None and (len(io.inputs) > 1 or io.inputs[0].dtype not in ("float32", "float16", "float64"))
        if multi:
            # several inputs or token ids: the teacher's own predict_all on one sample of each input
            split = "test" if len(state.data.splits["test"]) else "train"
            one = {k: v[:1] for k, v in state.data.inputs_of(split).items()}
            with torch_threads(threads):
                samples = time_calls(
                    lambda: teacher.predict_all(one, batch_size=1),
                    warmup=opts.benchmark_warmup,
                    runs=opts.benchmark_runs,
                )
            runtime, version = teacher.runtime_name, teacher.runtime_version
        elif teacher.format == "tflite":
            # A LiteRT interpreter of our own at the profile's threads, as for the student's TFLite files.
            fn, version = _tflite_teacher_call(teacher.path, threads, x1)
            samples = time_calls(fn, warmup=opts.benchmark_warmup, runs=opts.benchmark_runs)
            runtime = teacher.runtime_name
        elif teacher.format == "onnx" and fixed in (None, 1):
            # An ORT session of our own fixes the thread count, as for the student's ONNX files.
            runner = OnnxModel(teacher.path, threads)
            xt = x1.astype(np.dtype(getattr(teacher.signature, "input_dtype", "float32")), copy=False)
            samples = time_calls(lambda: runner.run_batch(xt), warmup=opts.benchmark_warmup, runs=opts.benchmark_runs)
            runtime, version = runner.runtime_name, runner.runtime_version
        else:
            with torch_threads(threads):
                samples = time_calls(
                    lambda: teacher.predict(x1, batch_size=1), warmup=opts.benchmark_warmup, runs=opts.benchmark_runs
                )
            runtime, version = teacher.runtime_name, teacher.runtime_version
        self._record(ctx, state, "teacher", runtime, version, threads, samples)
        if runtime.startswith("torch") and not multi:
            self._student_torch(ctx, state, x1, threads)
            self._teacher_onnx(ctx, state, x1, threads)

    def _teacher_onnx(self, ctx: RunContext, state: RunState, x1: np.ndarray, threads: int) -> None:
        """A torch teacher exported to ONNX (a temporary file, not an artifact) and timed in onnxruntime
        at the profile's threads: the like-for-like reference for the student's ONNX files. Skipped,
        with a progress note, when the export fails or its output differs from the teacher's."""
        import tempfile

        from edgedistill.runtimes.onnx import OnnxModel

        module = getattr(state.teacher, "_module", None)
        if module is None:
            return
        opts = ctx.spec.options
        with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
            path = Path(tmp) / "teacher.onnx"
            try:
                _export_for_timing(module, x1, path, getattr(state.teacher, "_device", None))
                runner = OnnxModel(path, threads)
                got = runner.run_batch(x1)
                want = np.asarray(state.teacher.predict(x1, batch_size=1), dtype=np.float32)
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-4):
                    raise ValueError("its ONNX export computes something else")
            except Exception as exc:  # any exporter failure: no like-for-like ONNX figure, said so
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                ctx.emit("progress", {"message": f"no ONNX timing of the teacher ({first})"})
                return
            ctx.emit("progress", {"message": "timing the teacher exported to ONNX (same runtime as the student)"})
            samples = time_calls(lambda: runner.run_batch(x1), warmup=opts.benchmark_warmup, runs=opts.benchmark_runs)
            self._record(ctx, state, "teacher_onnx", runner.runtime_name, runner.runtime_version, threads, samples)

    def _student_torch(self, ctx: RunContext, state: RunState, x1: np.ndarray, threads: int) -> None:
        """The fp32 student in torch at the teacher's threads: a torch teacher's same-runtime comparison
        (its artifacts run in onnxruntime / LiteRT, whose speed-up over torch is the runtime's, not the
        student's)."""
        import torch

        student = state.student
        if student is None:
            return
        opts = ctx.spec.options
        ctx.emit("progress", {"message": "timing the fp32 student in torch (same runtime as the teacher)"})
        xt = torch.from_numpy(np.ascontiguousarray(x1))
        device_before = next((p.device for p in student.parameters()), torch.device("cpu"))
        student.to("cpu").eval()
        runtime = "torch"
        try:
            with torch_threads(threads), torch.inference_mode():
                model: Any = student
                if getattr(state.teacher, "runtime_name", "") == "torch.jit":
                    # A TorchScript teacher runs as a traced graph: so does the student, like for like.
                    try:
                        model, runtime = torch.jit.trace(student, xt), "torch.jit"
                    except Exception:
                        model, runtime = student, "torch"  # untraceable: eager, still torch's kernels and threads
                samples = time_calls(lambda: model(xt), warmup=opts.benchmark_warmup, runs=opts.benchmark_runs)
        finally:
            student.to(device_before)
        self._record(ctx, state, "student_torch", runtime, str(torch.__version__), threads, samples)

    def _record(
        self,
        ctx: RunContext,
        state: RunState,
        kind: str,
        runtime: str,
        version: str,
        threads: int,
        samples: list[int],
    ) -> None:
        m: dict[str, Any] = {
            "artifact_kind": kind,
            "source": "host",
            "runtime": runtime,
            "runtime_version": version,
            "threads": threads,
            "count": len(samples),
            **latency_stats(samples),
        }
        state.latency.append(m)
        ctx.emit("measurement", dict(m))
