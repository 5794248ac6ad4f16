"""One text and one audio task from real data in the Fashion-MNIST columns (issue 16): what the job's
device artifact buys over quantizing the teacher alone, with the labels-only student beside it.

Tasks (bench/material.py cases, built from packages, nothing downloaded):
- text: `text_transformer`, a 2-layer transformer over int64 token ids + attention mask trained on
  r-cran-modeldata's small_fine_foods reviews (4000 train, 1000 held-out test reviews, "great" vs other);
  scored as accuracy against the held-out labels.
- audio: `vad`, a Conv1d + GRU voice-activity teacher over 64 mel frames of real speech
  (pocketsphinx-testdata, alsa-utils) spliced with silence and noise, 16 per-frame sigmoid outputs;
  scored as frame accuracy against the held-out clips' energy labels (threshold 0.5), on recordings
  no teacher or student saw.

Rows per task: teacher fp32 (ONNX); teacher int8 with onnxruntime alone (quantize_dynamic for the
token-id teacher: its static QDQ loses 4 pp, docs/benchmarks.md; quantize_static QDQ per-channel on 256
transfer samples for the audio teacher); NNCF PTQ of the ONNX teacher when nncf installs and takes the
graph (the reason otherwise); per profile, the labels-only student (method labels_only; the engine
offers it for class-score outputs only, so the VAD row says so) and edgedistill's device artifact
(method kd, the student the engine picks), and on the text task also the kd job with
`student.family: transformer` (the 2-layer transformer student the engine offers a transformer
teacher). Each job runs the real engine (run_pipeline) on the case's transfer set; each file is run
in its own runtime (onnxruntime, ai-edge-litert, TFLite Micro for the MCU file) on the held-out set.
Latency: the same runtime threads for every file, p50 of batch-1 calls and of 64-sample predictions.

    OMP_NUM_THREADS=1 .venv/bin/python -u -m bench.real_tasks --work /tmp/rt [--tasks text vad] [--seeds 0 1 2]
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

from bench.conformance import _engine_data, io_check, run_artifact
from bench.fashion_mnist import CALIBRATION, NNCF_SUBSET, calibration_rows, compress, nncf_int8, ort_int8
from bench.material import Case, build_case, inputs_of, load_npz
from edgedistill.runtimes.timing import latency_stats, time_calls

TASKS = {"text": "text_transformer", "vad": "vad"}
THRESHOLD = 0.5


def score(task: str, out: dict[str, np.ndarray], held: dict[str, np.ndarray]) -> float:
    """Accuracy against the held-out labels: top-1 (text) or per-frame at 0.5 (vad), over the rows scored."""
    value = next(iter(out.values()))
    y = held["y"][: len(value)]
    if task == "text":
        return float((value.argmax(1) == y).mean())
    return float(((value > THRESHOLD) == (y > THRESHOLD)).mean())


def agreement(task: str, out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float:
    """Top-1 (text) or per-frame decision (vad) agreement with the fp32 teacher, over the rows scored."""
    a = next(iter(out.values()))
    b = next(iter(ref.values()))[: len(a)]
    if task == "text":
        return float((a.argmax(1) == b.argmax(1)).mean())
    return float(((a > THRESHOLD) == (b > THRESHOLD)).mean())


def ort_dynamic(src: Path, dst: Path) -> float:
    """onnxruntime quantize_dynamic (int8 MatMul / Gather weights), what an ORT user does for transformers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.perf_counter()
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return time.perf_counter() - t0


def file_latency(kind: str, path: Path, inputs: dict[str, np.ndarray], threads: int, runs: int) -> dict[str, float]:
    """p50 ms of one batch-1 runtime call and of predicting 64 samples (the runtime's own batching:
    one call for ONNX, 64 calls for batch-1 TFLite files)."""
    from edgedistill.runtimes import open_model

    model = open_model(path, kind, threads=threads)
    one = model.timed_call_all(inputs)
    p1 = latency_stats(time_calls(one, warmup=20, runs=runs))["p50_ms"]
    x64 = {k: v[:64] for k, v in inputs.items()}
    p64 = latency_stats(time_calls(lambda: model.predict_all(x64), warmup=2, runs=max(10, runs // 10)))["p50_ms"]
    return {"b1_ms": p1, "b64_ms": p64}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * std:.2f}"


class Rows:
    """Rows by name, each with per-seed scores and the files whose size and latency are measured."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def get(self, task: str, name: str) -> dict[str, Any]:
        return self.rows.setdefault(
            f"{task}: {name}", {"task": task, "name": name, "acc": [], "agree": [], "wall_s": []}
        )

    def add(self, task: str, name: str, acc: float, agree: float, wall_s: float | None, kind: str, path: Path) -> None:
        r = self.get(task, name)
        r["acc"].append(acc)
        r["agree"].append(agree)
        if wall_s is not None:
            r["wall_s"].append(wall_s)
        r.setdefault("file", (kind, path))


def teacher_rows(
    task: str, case: Case, held: dict[str, np.ndarray], rows: Rows, seeds: list[int], work: Path
) -> dict[str, np.ndarray]:
    """The teacher fp32 and the teacher quantized alone (ORT; NNCF when it takes the graph). Returns the
    fp32 teacher's held-out outputs, the reference for agreement."""
    inputs = inputs_of(case, held)
    ref = run_artifact("onnx_fp32", case.teacher, case, inputs)
    rows.add(task, "teacher fp32", score(task, ref, held), 1.0, None, "onnx_fp32", case.teacher)
    train = inputs_of(case, load_npz(case.transfer))
    total = len(next(iter(train.values())))
    for seed in seeds:
        if task == "text":  # no calibration: one file, judged once per seed like the others
            name = "teacher int8 (onnxruntime quantize_dynamic)"
            dst = work / f"{case.name}_teacher_ort_int8_s{seeds[0]}.onnx"
            seconds = ort_dynamic(case.teacher, dst) if seed == seeds[0] else None
        else:
            name = "teacher int8 (onnxruntime quantize_static)"
            dst = work / f"{case.name}_teacher_ort_int8_s{seed}.onnx"
            idx = calibration_rows(total, CALIBRATION, seed)
            seconds = ort_int8(case.teacher, dst, {k: v[idx] for k, v in train.items()})
        out = run_artifact("onnx_int8", dst, case, inputs)
        rows.add(task, name, score(task, out, held), agreement(task, out, ref), seconds, "onnx_int8", dst)
        nn_dst = work / f"{case.name}_teacher_nncf_int8_s{seed}.onnx"
        idx = calibration_rows(total, NNCF_SUBSET, seed)
        try:
            s2 = nncf_int8(case.teacher, nn_dst, {k: v[idx] for k, v in train.items()})
        except Exception as exc:  # NNCF refusing a graph is a finding, not a crash
            rows.get(task, "teacher int8 (NNCF PTQ)")["note"] = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            )
            continue
        if s2 is None:
            rows.get(task, "teacher int8 (NNCF PTQ)")["note"] = "nncf is not installed"
            continue
        out = run_artifact("onnx_int8", nn_dst, case, inputs)
        rows.add(
            task, "teacher int8 (NNCF PTQ)", score(task, out, held), agreement(task, out, ref), s2, "onnx_int8", nn_dst
        )
    return ref


def student_rows(
    task: str,
    case: Case,
    held: dict[str, np.ndarray],
    ref: dict[str, np.ndarray],
    rows: Rows,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> None:
    inputs = inputs_of(case, held)
    for profile in args.profiles:
        variants: list[tuple[str, str, dict[str, Any]]] = [
            ("labels-only student", "labels_only", {}),
            ("edgedistill (kd)", "kd", {}),
        ]
        if task == "text" and args.text_transformer:  # the family the engine offers transformer teachers
            variants.append(
                ("edgedistill (kd, student family transformer)", "kd", {"student": {"family": "transformer"}})
            )
        for label, method, extra in variants:
            name = f"{profile}: {label}"
            if method == "labels_only" and task == "vad":
                rows.get(task, name)["note"] = (
                    "not offered: the engine's labels_only trains label cross-entropy on a class-score "
                    "output; VAD's 16 per-frame sigmoid outputs have no such labels path"
                )
                continue
            for seed in args.seeds:
                opts: dict[str, Any] = {"seed": seed, "epochs": args.epochs, "device": "cpu", "method": method}
                opts.update(case.options)
                opts.update(extra)
                tag = "-transformer" if extra else ""
                out_dir = args.work / "runs" / f"{task}-{profile}-{method}{tag}-s{seed}"
                result, seconds = compress(case.teacher, _engine_data(case, args.work), profile, out_dir, opts)
                primary = result.report["headline"]["primary_artifact"]
                path = result.artifacts[primary].path
                out = run_artifact(primary, path, case, inputs)
                rows.add(task, name, score(task, out, held), agreement(task, out, ref), seconds, primary, path)
                r = rows.get(task, name)
                r.setdefault("io_kept", io_check(result.artifacts["onnx_fp32"].path, case, held))
                r.setdefault("quality_met", []).append(result.report["headline"].get("quality_met"))
                st = result.report["student"]
                r.setdefault(
                    "student", f"{st.get('family')} w{st.get('width')} d{st.get('depth')}, {st.get('params')} params"
                )
                r.setdefault("scored_rows", len(next(iter(out.values()))))
                log(f"{task} {profile} {method} seed {seed}: {primary} acc {r['acc'][-1]:.4f}, {seconds:.0f} s")


def table(rows: Rows, seeds: list[int], threads: int) -> Table:
    t = Table(title=f"real tasks, held-out sets; seeds {seeds}; {threads} runtime thread(s)")
    cols = ("task", "model", "artifact", "accuracy % (mean ± std)", "agreement % with teacher", "bytes",
            "p50 b1 ms", "p50 64 ms", "job wall s", "note")  # fmt: skip
    for c in cols:
        t.add_column(c)
    for r in rows.rows.values():
        kind, lat = (r["file"][0], r.get("latency")) if "file" in r else ("—", None)
        t.add_row(
            r["task"], r["name"], kind, _mean_std(r["acc"]), _mean_std(r["agree"]),
            f"{r['bytes']:,}" if "bytes" in r else "—",
            f"{lat['b1_ms']:.3f}" if lat else "—", f"{lat['b64_ms']:.2f}" if lat else "—",
            f"{statistics.fmean(r['wall_s']):.1f}" if r["wall_s"] else "—", r.get("note", ""),
        )  # fmt: skip
    return t


def main(argv: list[str] | None = None) -> Rows:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True, help="material, runs and real_tasks.json go here")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--profiles", nargs="+", default=["mobile-arm64"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="student epochs per job (early stopping still applies)")
    ap.add_argument("--threads", type=int, default=1, help="runtime threads for latency, the same for every file")
    ap.add_argument(
        "--text-transformer", action=argparse.BooleanOptionalAction, default=True,
        help="also a kd job with options.student.family transformer on the text task",
    )  # fmt: skip
    ap.add_argument("--runs", type=int, default=200, help="timed batch-1 calls (64-sample predictions: a tenth)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    console = Console(width=220)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = Rows()
    for task in args.tasks:
        case = build_case(TASKS[task], args.work)
        held = load_npz(case.heldout)
        ref = teacher_rows(task, case, held, rows, args.seeds, args.work)
        student_rows(task, case, held, ref, rows, args, console.print)
        inputs = inputs_of(case, held)
        for r in rows.rows.values():
            if r["task"] == task and "file" in r:
                kind, path = r["file"]
                r["bytes"] = path.stat().st_size
                # the MCU file's host latency says nothing about a Cortex-M; its size and accuracy do
                if kind != "tflite_int8_full":
                    r["latency"] = file_latency(kind, path, inputs, args.threads, args.runs)
    console.print(table(rows, args.seeds, args.threads))
    out = [{k: (v if k != "file" else [v[0], str(v[1])]) for k, v in r.items()} for r in rows.rows.values()]
    path = args.work / "real_tasks.json"
    path.write_text(
        json.dumps({"seeds": args.seeds, "epochs": args.epochs, "threads": args.threads, "rows": out}, indent=2)
    )
    console.print(f"figures in {path}")
    return rows


if __name__ == "__main__":
    main()
