"""Fashion-MNIST, full 60k/10k (issue 16): what edgedistill's chosen artifact buys over the routes a
user would take instead, per built-in profile, in one run.

Rows per profile: the teacher (fp32 ONNX); the teacher quantized alone with onnxruntime's
quantize_static (QDQ, per-channel int8, MinMax on 256 training images: the Olive/ORT route); the
teacher quantized with NNCF post-training quantization (ONNX backend, 300 images) when nncf is
installed; the labels-only student (method labels_only, same student and schedule, through the same
pipeline); edgedistill's chosen (primary) artifact with method kd. Every job goes through the real
engine (workers.pipeline.runner.run_pipeline), with the 60k training images as the transfer set; every
accuracy is measured by running the file in its runtime on the official 10k test images, which no
teacher, student or calibration step sees. Latency: onnxruntime (CPU EP) and ai-edge-litert, the
same thread count for every model, batch 1 and 64.

    .venv/bin/python -m bench.fashion_mnist --out /tmp/fm [--seeds 0 1 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.fashion_teacher import ensure_teacher
from bench.idx import load_fashion_mnist
from edgedistill.runtimes.timing import latency_stats, time_calls

PROFILES = ("cpu-x86", "mobile-arm64", "mcu-cortex-m4")
CALIBRATION = 256
NNCF_SUBSET = 300


def _acc(out: np.ndarray, y: np.ndarray) -> float:
    return float((out.argmax(1) == y).mean())


def _calibration(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return x[calibration_rows(x.shape[0], n, seed)]


def calibration_rows(total: int, n: int, seed: int) -> np.ndarray:
    """n distinct row indices of the training data, the same for every input of a sample."""
    return np.random.default_rng(seed).choice(total, min(n, total), replace=False)


Feeds = np.ndarray | dict[str, np.ndarray]  # one array for the input named "input", or arrays by input name


def _feeds(calib: Feeds) -> dict[str, np.ndarray]:
    return dict(calib) if isinstance(calib, dict) else {"input": calib}


def ort_int8(src: Path, dst: Path, calib: Feeds) -> float:
    """The teacher alone through onnxruntime.quantization (quant_pre_process + quantize_static QDQ)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = _feeds(calib)
    n = len(next(iter(feeds.values())))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(0, n, 32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            i = next(self._it, None)
            return None if i is None else {k: v[i : i + 32] for k, v in feeds.items()}

    t0 = time.perf_counter()
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre))
    quantize_static(
        str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    pre.unlink()
    return time.perf_counter() - t0


def nncf_int8(src: Path, dst: Path, calib: Feeds) -> float | None:
    """NNCF post-training quantization of the ONNX teacher; None when nncf is not installed."""
    try:
        import nncf
    except ImportError:
        return None
    import onnx

    t0 = time.perf_counter()
    model = onnx.load(str(src))
    feeds = _feeds(calib)
    n = len(next(iter(feeds.values())))
    dataset = nncf.Dataset([{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n)])
    q = nncf.quantize(model, dataset, subset_size=n)
    onnx.save(q, str(dst))
    return time.perf_counter() - t0


def _session(path: Path, threads: int) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def run_any(path: Path, x: np.ndarray, threads: int) -> np.ndarray:
    """Outputs of an .onnx or .tflite file over x, in its own runtime."""
    if path.suffix == ".onnx":
        fn = _session(path, threads)
        return np.concatenate([fn(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    from edgedistill.runtimes.litert import run_tflite

    return run_tflite(path, x, threads=threads)


def latency(path: Path, x: np.ndarray, threads: int, runs: int) -> dict[str, float]:
    """p50 ms at batch 1 and at batch 64 (and samples/s at 64), one runtime session per file."""
    if path.suffix == ".onnx":
        fn = _session(path, threads)
        b1, b64 = (lambda: fn(x[:1])), (lambda: fn(x[:64]))
        p1 = latency_stats(time_calls(b1, warmup=20, runs=runs))["p50_ms"]
        p64 = latency_stats(time_calls(b64, warmup=3, runs=max(10, runs // 10)))["p50_ms"]
    else:
        from edgedistill.runtimes.litert import TfliteModel

        m = TfliteModel(path, threads)
        e1 = m.encode(x[:1])
        m._set_batch(1)
        p1 = latency_stats(time_calls(lambda: m.invoke_encoded(e1), warmup=20, runs=runs))["p50_ms"]
        if m.dynamic_batch:
            e64 = m.encode(x[:64])
            m._set_batch(64)
            p64 = latency_stats(time_calls(lambda: m.invoke_encoded(e64), warmup=3, runs=max(10, runs // 10)))["p50_ms"]
        else:  # a static batch-1 model (PT2E export): 64 calls, as the device would make them
            e = [m.encode(x[i : i + 1]) for i in range(64)]
            runs64 = max(10, runs // 10)
            p64 = latency_stats(time_calls(lambda: [m.invoke_encoded(v) for v in e], warmup=3, runs=runs64))["p50_ms"]
    return {"b1_ms": p1, "b64_ms": p64, "b64_per_s": 64_000 / p64}


def compress(teacher: Path, data: Path, profile: str, out: Path, options: dict[str, Any]) -> tuple[Any, float]:
    from edgedistill.contracts.profiles import builtin_profiles
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    spec = PipelineSpec(
        teacher_path=teacher,
        data_path=data,
        profile=builtin_profiles()[profile],
        options=JobOptions.model_validate(options),
        out_dir=out,
    )
    t0 = time.perf_counter()
    result = run_pipeline(spec)
    return result, time.perf_counter() - t0


def _ms(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def race_table(rows: dict[str, dict[str, Any]]) -> Table:
    """options.student.family best: per job, both students on the job's validation split (the race),
    the kept one's file on the official test and the runner-up's int8 ONNX on the job's test split."""
    table = Table(title="family best: the designed and the derived student of each job")
    for col in ("job", "seed", "designed val kept %", "derived val kept %", "kept", "kept file acc % (10k)",
                "kept bytes", "runner-up int8 acc % (job test)", "runner-up bytes"):  # fmt: skip
        table.add_column(col)
    for r in rows.values():
        for i, cand in enumerate(r.get("candidates") or []):
            race = (r["races"][i] or {}) if "races" in r else {}
            by = {x["family"]: x for x in race.get("rows", [])}
            up: dict[str, Any] = next((c for c in (cand or {}).get("rows", []) if c["name"] == "runner_up"), {})
            kept: dict[str, Any] = next((c for c in (cand or {}).get("rows", []) if c["name"] == "student"), {})
            table.add_row(
                r["name"], str(i),
                *(f"{100 * by[f]['kept']:.1f}" if f in by and by[f].get("kept") is not None else "—"
                  for f in ("designed", "derived")),
                str(race.get("chosen", "—")), f"{100 * r['acc'][i]:.2f}", f"{kept.get('bytes') or 0:,}",
                f"{100 * up['quality']:.2f}" if up.get("quality") is not None else str(up.get("note") or "—"),
                f"{up.get('bytes') or 0:,}",
            )  # fmt: skip
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="teacher, artifacts and fashion_mnist.json go here")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="student epochs per job (early stopping still applies)")
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--profiles", nargs="+", default=list(PROFILES))
    ap.add_argument("--threads", type=int, default=1, help="runtime threads for latency, the same for every model")
    ap.add_argument("--runs", type=int, default=200, help="timed calls at batch 1 (batch 64: a tenth)")
    ap.add_argument(
        "--job-seeds", type=int, nargs="+", default=None, help="seeds of the pipeline jobs (default --seeds)"
    )
    ap.add_argument("--max-train-seconds", type=float, default=None, help="options.max_train_seconds of every job")
    ap.add_argument("--sizing", default=None, choices=["auto", "fixed"], help="options.sizing of every job")
    ap.add_argument("--qat", default=None, choices=["auto", "always", "never"], help="options.qat of every job")
    ap.add_argument("--no-baselines", action="store_true", help="skip the teacher fp32 / int8 rows")
    ap.add_argument("--family", default=None, help="options.student.family of every job (best: both families raced)")
    ap.add_argument("--methods", nargs="+", default=["labels_only", "kd"], choices=["labels_only", "kd"])
    ap.add_argument("--tag", default="", help="suffix of the JSON file (runs split by profile)")
    args = ap.parse_args()
    # The shared CPU: one torch thread is faster than two when other processes hold the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    console = Console(width=200)
    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist()
    teacher_meta = ensure_teacher(root, epochs=args.teacher_epochs, log=console.print)
    teacher = root / "teacher.onnx"
    transfer = root / "transfer.npz"
    if not transfer.exists():
        np.savez(transfer, x=data.x_train, y=data.y_train)
    x_test, y_test = data.x_test, data.y_test

    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        return rows.setdefault(name, {"name": name, "acc": [], "wall_s": [], "files": []})

    if not args.no_baselines:
        r = row("teacher fp32")
        r["acc"].append(_acc(run_any(teacher, x_test, args.threads), y_test))
        r["files"].append(teacher)
    for seed in [] if args.no_baselines else args.seeds:
        calib = _calibration(data.x_train, CALIBRATION, seed)
        dst = root / f"teacher_ort_int8_s{seed}.onnx"
        s = ort_int8(teacher, dst, calib)
        r = row("teacher int8 (onnxruntime quantize_static)")
        r["acc"].append(_acc(run_any(dst, x_test, args.threads), y_test))
        r["wall_s"].append(s)
        r["files"].append(dst)
        dst = root / f"teacher_nncf_int8_s{seed}.onnx"
        s2 = nncf_int8(teacher, dst, _calibration(data.x_train, NNCF_SUBSET, seed))
        if s2 is not None:
            r = row("teacher int8 (NNCF PTQ)")
            r["acc"].append(_acc(run_any(dst, x_test, args.threads), y_test))
            r["wall_s"].append(s2)
            r["files"].append(dst)
        console.print(f"seed {seed}: teacher int8 via ORT {s:.1f} s, NNCF {s2 if s2 is None else round(s2, 1)} s")

    for profile in args.profiles:
        variants = (("labels-only student", "labels_only"), ("edgedistill (kd)", "kd"))
        for variant, method in [v for v in variants if v[1] in args.methods]:
            for seed in args.job_seeds or args.seeds:
                opts: dict[str, Any] = {"seed": seed, "epochs": args.epochs, "device": "cpu", "method": method}
                if args.max_train_seconds:
                    opts["max_train_seconds"] = args.max_train_seconds
                opts.update({k: v for k, v in (("sizing", args.sizing), ("qat", args.qat)) if v is not None})
                if args.family:
                    opts["student"] = {"family": args.family}
                result, seconds = compress(teacher, transfer, profile, root / f"{profile}-{method}-s{seed}", opts)
                primary = result.report["headline"]["primary_artifact"]
                r = row(f"{profile}: {variant}")
                r.update(profile=profile, primary=primary, student=result.report["student"])
                # what the job itself compared: the teacher quantized alone vs the student (report.candidates)
                r.setdefault("candidates", []).append(result.report.get("candidates"))
                r.setdefault("races", []).append(result.report["student"].get("family_race"))
                path = result.artifacts[primary].path
                r["acc"].append(_acc(run_any(path, x_test, args.threads), y_test))
                r["wall_s"].append(seconds)
                r["files"].append(path)
                r.setdefault("onnx_int8", []).append(result.artifacts["onnx_int8"].path)
                tr = result.report.get("training", {})
                r.setdefault("epochs_run", []).append(tr.get("epochs_run"))
                r.setdefault("train_seconds", []).append(tr.get("seconds"))
                r.setdefault("train_samples_per_s", []).append(tr.get("samples_per_second"))
                r.setdefault("stop_reason", []).append(tr.get("stop_reason"))
                console.print(f"{profile} {method} seed {seed}: {primary} acc {r['acc'][-1]:.4f}, {seconds:.0f} s")

    # Latency and size from the first seed's files; the same threads and probe images for every model.
    for r in rows.values():
        f0: Path = r["files"][0]
        r["bytes"] = f0.stat().st_size
        r["latency"] = latency(f0, x_test, args.threads, args.runs)
        if "onnx_int8" in r and f0.suffix != ".onnx":  # the same student's int8 ONNX, for the ORT comparison
            r["latency_onnx_int8"] = latency(r["onnx_int8"][0], x_test, args.threads, args.runs)

    table = Table(title=f"Fashion-MNIST 10k test; teacher {teacher_meta['params']:,} params; seeds {args.seeds}")
    for col in ("model", "artifact", "accuracy % (mean ± std)", "bytes", "p50 b1 ms", "p50 b64 ms", "b64 img/s"):
        table.add_column(col)
    table.add_column("ORT int8 b1 / b64 ms")
    table.add_column("job wall s")
    for r in rows.values():
        lat, lo = r["latency"], r.get("latency_onnx_int8")
        table.add_row(
            r["name"],
            r.get("primary", r["files"][0].name),
            _ms(r["acc"]),
            f"{r['bytes']:,}",
            f"{lat['b1_ms']:.3f}",
            f"{lat['b64_ms']:.2f}",
            f"{lat['b64_per_s']:,.0f}",
            f"{lo['b1_ms']:.3f} / {lo['b64_ms']:.2f}" if lo else "—",
            f"{statistics.fmean(r['wall_s']):.0f}" if r["wall_s"] else "—",
        )
    console.print(table)
    if args.family == "best":
        console.print(race_table(rows))
    out = {
        "teacher": teacher_meta,
        "seeds": args.seeds,
        "job_seeds": args.job_seeds or args.seeds,
        "student_epochs": args.epochs,
        "max_train_seconds": args.max_train_seconds,
        "threads": args.threads,
        "rows": [{k: v for k, v in r.items() if k not in ("files", "onnx_int8")} for r in rows.values()],
    }
    path = root / f"fashion_mnist{args.tag}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"figures in {path}")


if __name__ == "__main__":
    main()
