"""The teacher-only rows of bench/fashion_mnist.py (fp32, onnxruntime int8, NNCF int8) re-measured
from the files a run left in its --out folder, on their own: accuracy on the 10k test images and
latency at batch 1 / 64, same runtime and threads as the main bench.

    .venv/bin/python -m bench.fashion_baselines --out /tmp/fm [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.fashion_mnist import _acc, _ms, latency, run_any
from bench.idx import load_fashion_mnist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_fashion_mnist()
    groups = {
        "teacher fp32": [args.out / "teacher.onnx"],
        "teacher int8 (onnxruntime quantize_static)": [args.out / f"teacher_ort_int8_s{s}.onnx" for s in args.seeds],
        "teacher int8 (NNCF PTQ)": [args.out / f"teacher_nncf_int8_s{s}.onnx" for s in args.seeds],
    }
    rows: list[dict[str, Any]] = []
    for name, files in groups.items():
        files = [f for f in files if f.exists()]
        if not files:
            continue
        acc = [_acc(run_any(f, data.x_test, args.threads), data.y_test) for f in files]
        lat = latency(files[0], data.x_test, args.threads, args.runs)
        rows.append({"name": name, "acc": acc, "bytes": files[0].stat().st_size, "latency": lat})
        print(
            f"{name}: {_ms(acc)} % (n={len(acc)}), {files[0].stat().st_size:,} B, b1 {lat['b1_ms']:.3f} ms, "
            f"b64 {lat['b64_ms']:.2f} ms ({lat['b64_per_s']:,.0f} img/s)",
            flush=True,
        )
    (args.out / "fashion_baselines.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
