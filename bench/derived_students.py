"""Fashion-MNIST (Debian dataset-fashion-mnist, full 60k train / 10k test): the teacher-derived student
(options.student.family derived: the teacher's graph channel-pruned, distilled with hints at the same
layers) against the designed student at the same flash budget, the teacher quantized alone, and the
designed student trained on labels only.

The teacher is bench/fashion_teacher.py's CNN (trained here once per --out folder). The designed student
runs first (sizing fixed, so one training); the derived student's reduction is then the teacher's
estimated int8 bytes over the designed student's, so both target the same flash. Every job goes through
the real engine (run_pipeline) on the MCU profile with the training images (all 60k, or --train-samples)
as the transfer set; every
accuracy comes from running the job's device artifact (or the int8 teacher) in its runtime on the 10k test
images. One seed unless --seeds says more.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.derived_students --out /tmp/fm_derived [--epochs 3]
        [--train-samples 12000] [--no-labels-only]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.fashion_mnist import CALIBRATION, _acc, _calibration, _ms, compress, ort_int8, run_any
from bench.fashion_teacher import ensure_teacher
from bench.idx import load_fashion_mnist

PROFILE = "mcu-cortex-m4"


def teacher_int8_bytes(teacher: Path, x: np.ndarray) -> int:
    """The teacher's estimated int8 bytes, as the derived family measures it (students_multi.measure)."""
    from edgedistill.workers.steps.derived.build import base_student
    from edgedistill.workers.steps.derived.convert import convert_teacher
    from edgedistill.workers.steps.students_multi import measure
    from edgedistill.workers.steps.teacher import load_teacher

    t = load_teacher(teacher)
    name = t.io.inputs[0].name
    t.complete_io({name: x[:8]})
    sig = t.io.model_copy(update={"outputs": tuple(o.model_copy(update={"kind": "logits"}) for o in t.io.outputs)})
    base, _ = base_student(convert_teacher(t, {name: x[:64]}), sig)
    return int(measure(base, sig).est_int8_bytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=3, help="student epochs per job")
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--no-labels-only", action="store_true")
    ap.add_argument("--no-hint-ablation", action="store_true", help="skip the derived student without hint losses")
    ap.add_argument(
        "--train-samples", type=int, default=60_000, help="transfer set: the first N training images (the jobs "
        "split it into train/val/test); accuracy is always on the official 10k test images",
    )  # fmt: skip
    ap.add_argument("--max-train-seconds", type=float, default=None, help="options.max_train_seconds of every job")
    ap.add_argument("--qat", default="never", choices=["auto", "always", "never"], help="options.qat of every job")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist()
    meta = ensure_teacher(root, epochs=args.teacher_epochs)
    teacher = root / "teacher.onnx"
    n = min(args.train_samples, data.x_train.shape[0])
    transfer = root / f"transfer_{n}.npz"
    if not transfer.exists():
        np.savez(transfer, x=data.x_train[:n], y=data.y_train[:n])
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        return rows.setdefault(name, {"name": name, "acc": [], "bytes": [], "wall_s": []})

    r = row("teacher fp32 (ONNX)")
    r["acc"].append(_acc(run_any(teacher, data.x_test, 1), data.y_test))
    r["bytes"].append(teacher.stat().st_size)
    r["params"] = meta["params"]
    for seed in args.seeds:
        dst = root / f"teacher_ort_int8_s{seed}.onnx"
        s = ort_int8(teacher, dst, _calibration(data.x_train, CALIBRATION, seed))
        r = row("teacher int8 (onnxruntime quantize_static)")
        r["acc"].append(_acc(run_any(dst, data.x_test, 1), data.y_test))
        r["bytes"].append(dst.stat().st_size)
        r["wall_s"].append(s)
    t_bytes = teacher_int8_bytes(teacher, data.x_train)

    def job(name: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        opts = {
            "seed": seed, "epochs": args.epochs, "device": "cpu", "sizing": "fixed", "benchmark_runs": 20,
            "qat": args.qat, "max_train_seconds": args.max_train_seconds,
        }  # fmt: skip
        result, seconds = compress(teacher, transfer, PROFILE, root / f"{name.split()[0]}-s{seed}", opts | options)
        primary = result.report["headline"]["primary_artifact"]
        path = result.artifacts[primary].path
        st = result.report["student"]
        r = row(name)
        r["acc"].append(_acc(run_any(path, data.x_test, 1), data.y_test))
        r["bytes"].append(path.stat().st_size)
        r["wall_s"].append(seconds)
        r.update(
            artifact=primary, params=st.get("params"), macs=st.get("macs"), est_int8_bytes=st.get("est_int8_bytes"),
            epochs_run=result.report.get("training", {}).get("epochs_run"), family=st.get("family"),
            why=st.get("chosen_because"),
        )  # fmt: skip
        print(
            f"{name} seed {seed}: {primary} {r['acc'][-1]:.4f}, {path.stat().st_size:,} B, {seconds:.0f} s", flush=True
        )
        return st

    for seed in args.seeds:
        designed = job("designed-kd student", seed, {"method": "kd"})
        if not args.no_labels_only:
            job("designed-labels-only student", seed, {"method": "labels_only"})
        reduction = max(1.0, t_bytes / float(designed["est_int8_bytes"]))
        job(
            "derived-kd student (+ hints)",
            seed,
            {"method": "kd", "student": {"family": "derived", "reduction": reduction}},
        )
        rows["derived-kd student (+ hints)"]["reduction"] = round(reduction, 2)
        if not args.no_hint_ablation:  # the same derived student on KD + CE only (options.losses: no hint term)
            terms = [{"key": "kd", "weight": 0.7, "kwargs": {"temperature": 4.0}}, {"key": "ce", "weight": 0.3}]
            derived = {"family": "derived", "reduction": reduction}
            job("derived-nohints student (KD + CE only)", seed, {"method": "kd", "student": derived, "losses": terms})

    teacher_acc = rows["teacher fp32 (ONNX)"]["acc"][0]
    print(
        f"\nFashion-MNIST 10k test, profile {PROFILE}; teacher {meta['params']:,} params ({meta['epochs']} epochs); "
        f"students {args.epochs} epochs on {n:,} transfer images (qat {args.qat}); seeds {args.seeds}"
    )
    head = f"{'model':46} {'artifact':18} {'accuracy %':>14} {'kept %':>7} {'bytes':>9} {'params':>8} {'MACs':>10}"
    print(head)
    print("-" * len(head))
    for r in rows.values():
        kept = 100 * float(np.mean(r["acc"])) / teacher_acc
        print(
            f"{r['name']:46} {r.get('artifact', 'onnx'):18} {_ms(r['acc']):>14} {kept:7.1f} "
            f"{int(np.mean(r['bytes'])):>9,} {r.get('params') or '':>8} {r.get('macs') or '':>10}"
        )
    (root / "derived_students.json").write_text(json.dumps({"rows": list(rows.values()), "teacher": meta}, indent=2))
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}: {root / 'derived_students.json'}")


if __name__ == "__main__":
    main()
