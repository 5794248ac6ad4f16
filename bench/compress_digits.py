"""Compression benchmark (issue 2): a ~0.64 M-param CNN teacher trained on scikit-learn's digits is
compressed for the cpu, mobile and mcu profiles; every artifact is evaluated on a held-out test set
that neither the teacher nor the student nor calibration ever saw. One table, one run.

    .venv/bin/python -m bench.compress_digits [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bench.digits import accuracy, digits_split, export_teacher, train_teacher
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from edgedistill.runtimes.litert import run_tflite
from edgedistill.runtimes.onnx import run_onnx
from edgedistill.runtimes.tflm import run_tflm
from edgedistill.workers.pipeline.runner import run_pipeline

PROFILES = ("cpu-x86", "mobile-arm64", "mcu-cortex-m4")
TARGETS = {
    "params_x": 8.0,  # student >= 8x fewer parameters
    "kept_pct": 98.0,  # student keeps >= 98 % of teacher accuracy
    "int8_drop_pp": 0.5,  # int8 loses <= 0.5 pp vs the float student
    "bytes_x": 25.0,  # int8 artifact >= 25x smaller than the teacher file
    "latency_x": 10.0,  # int8 student >= 10x faster than the teacher on CPU
}


def _compress(teacher: Path, data: Path, profile: str, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    spec = PipelineSpec(
        teacher_path=teacher,
        data_path=data,
        profile=builtin_profiles()[profile],
        options=JobOptions.model_validate(options),
        out_dir=out,
    )
    t0 = time.perf_counter()
    result = run_pipeline(spec)
    return {"result": result, "seconds": time.perf_counter() - t0}


def _evaluate(result: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    arts = result.artifacts
    acc: dict[str, float] = {"student_fp32": accuracy(run_onnx(arts["onnx_fp32"].path, x), y)}
    acc["onnx_int8"] = accuracy(run_onnx(arts["onnx_int8"].path, x), y)
    for kind in ("tflite_int8", "tflite_int8_full"):
        if kind in arts:
            acc["tflite_int8"] = accuracy(run_tflite(arts[kind].path, x), y)
    if "tflite_int8_full" in arts:
        out, _arena = run_tflm(arts["tflite_int8_full"].path, x)
        acc["tflm"] = accuracy(out, y)
    return acc


def _throughput_ratio(teacher: Path, student: Path, x: np.ndarray, batch: int = 64, reps: int = 30) -> float:
    """Samples/s of the int8 student over the teacher at a batch where compute, not per-call overhead,
    dominates (one thread each, same runtime)."""
    import onnxruntime as ort

    def rate(path: Path) -> float:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x[:batch]}
        for _ in range(5):
            sess.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(reps):
            sess.run(None, feed)
        return batch * reps / (time.perf_counter() - t0)

    return rate(student) / rate(teacher)


def _p50(report: dict[str, Any], kind: str) -> float | None:
    for m in report["latency"]["measurements"]:
        if m.get("artifact_kind") == kind and m.get("source") == "host":
            return float(m["p50_ms"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=JobOptions().epochs)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep artifacts and a JSON of the figures here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    console = Console(width=240)
    root = args.out or Path(tempfile.mkdtemp(prefix="edgedistill-bench-"))
    root.mkdir(parents=True, exist_ok=True)

    split = digits_split(seed=args.seed)
    t0 = time.perf_counter()
    teacher = train_teacher(split.x_rest, split.y_rest, epochs=args.teacher_epochs, seed=args.seed)
    console.print(f"teacher trained in {time.perf_counter() - t0:.1f} s")
    files = export_teacher(teacher, root / "teacher")
    data = root / "transfer.npz"
    np.savez(data, x=split.x_rest, y=split.y_rest)
    with torch.no_grad():
        teacher_acc = accuracy(teacher(torch.from_numpy(split.x_test)).numpy(), split.y_test)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    teacher_bytes = files["onnx"].stat().st_size

    base = {"seed": args.seed, "epochs": args.epochs, "device": "cpu"}
    rows: list[dict[str, Any]] = []
    runs = [(p, "onnx", base) for p in PROFILES]
    runs += [("cpu-x86", "torchscript", base), ("cpu-x86", "labels-only", {**base, "alpha": 0.0})]
    for profile, variant, options in runs:
        teacher_file = files["torchscript" if variant == "torchscript" else "onnx"]
        run = _compress(teacher_file, data, profile, root / f"{profile}-{variant}", options)
        result, report = run["result"], run["result"].report
        acc = _evaluate(result, split.x_test, split.y_test)
        primary = report["headline"]["primary_artifact"]
        int8_acc = acc["tflite_int8"] if primary.startswith("tflite") else acc["onnx_int8"]
        rows.append(
            {
                "profile": profile,
                "variant": variant,
                "accuracy": acc,
                "student_params": report["student"]["params"],
                "params_x": teacher_params / report["student"]["params"],
                "primary": primary,
                "primary_bytes": result.artifacts[primary].size_bytes,
                "bytes_x": teacher_bytes / result.artifacts[primary].size_bytes,
                "teacher_p50_ms": _p50(report, "teacher"),
                "int8_p50_ms": _p50(report, "onnx_int8"),
                "latency_x": (_p50(report, "teacher") or 0) / (_p50(report, "onnx_int8") or float("inf")),
                "throughput_x_b64": _throughput_ratio(files["onnx"], result.artifacts["onnx_int8"].path, split.x_test),
                "kept_pct": 100 * int8_acc / teacher_acc,
                "int8_drop_pp": 100 * (acc["student_fp32"] - int8_acc),
                "seconds": run["seconds"],
                "arena_bytes": (report.get("budget") or {}).get("ram", {}).get("used"),
            }
        )
        console.print(f"{profile}/{variant}: {run['seconds']:.1f} s")

    table = Table(title=f"digits: teacher {teacher_params:,} params, {teacher_bytes:,} B, test acc {teacher_acc:.4f}")
    columns = ["profile", "teacher", "student KD", "labels-only", "int8 ONNX", "int8 TFLite", "TFLM", "params x"]
    columns += ["bytes x (primary)", "latency x (ORT b1)", "throughput x (b64)", "kept %", "int8 drop pp", "run s"]
    for col in columns:
        table.add_column(col)
    labels_only = next(r for r in rows if r["variant"] == "labels-only")["accuracy"]["student_fp32"]
    for r in rows:
        a = r["accuracy"]
        table.add_row(
            f"{r['profile']} ({r['variant']})",
            f"{teacher_acc:.4f}",
            f"{a['student_fp32']:.4f}",
            f"{labels_only:.4f}" if r["variant"] != "labels-only" else "—",
            f"{a['onnx_int8']:.4f}",
            f"{a['tflite_int8']:.4f}" if "tflite_int8" in a else "—",
            f"{a['tflm']:.4f}" if "tflm" in a else "—",
            f"{r['params_x']:.1f}",
            f"{r['bytes_x']:.1f} ({r['primary']}, {r['primary_bytes']:,} B)",
            f"{r['latency_x']:.1f} ({r['teacher_p50_ms']:.3f} / {r['int8_p50_ms']:.3f} ms)",
            f"{r['throughput_x_b64']:.1f}",
            f"{r['kept_pct']:.1f}",
            f"{r['int8_drop_pp']:+.2f}",
            f"{r['seconds']:.0f}",
        )
    console.print(table)
    console.print("targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
    (root / "figures.json").write_text(json.dumps({"teacher_acc": teacher_acc, "rows": rows}, indent=2, default=str))
    console.print(f"artifacts and figures.json in {root}")


if __name__ == "__main__":
    main()
