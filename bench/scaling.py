"""How a job's cost grows with the work (issue 16, item 2): wall time and peak RSS of the job's whole
process tree against the transfer-set size (1k, 10k, 60k Fashion-MNIST images, 28x28) and the input
size (28x28, 64x64 and 128x128x3 at a fixed count: the same images upscaled, three channels repeated).

Each point is one `edgedistill compress` run in its own process (the CLI runs the same run_pipeline as
a worker), sampled with psutil every 50 ms: the peak is the largest sum of RSS over the process and all
its children at one instant. The teacher is a fixed, randomly initialised CNN with global average
pooling (ONNX, one per input size): cost does not depend on what the teacher learnt. The method is
fitnet (KD + FitNets hints), so the teacher-feature cache is part of every run; options.features.cache_mb
bounds that cache, options.teacher_outputs_mb the cached teacher outputs.

    .venv/bin/python -m bench.scaling --out /tmp/scaling [--sizes 1000 10000 60000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from bench.idx import load_fashion_mnist

POLL_S = 0.05


class GapTeacher(nn.Module):
    """Four conv blocks (32-64-96-128, stride 2 after the first) and global average pooling: any input size."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(((cin, 32), (32, 64), (64, 96), (96, 128))):
            layers += [nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def teacher_for(shape: tuple[int, int, int], path: Path) -> Path:
    if path.exists():
        return path
    torch.manual_seed(0)
    model = GapTeacher(shape[0]).eval()
    torch.onnx.export(
        model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=17, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    return path


def images(x28: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Fashion-MNIST images at (C, H, W): nearest-neighbour upscaling, the channel repeated."""
    c, h, _ = shape
    x = x28 if h == 28 else np.repeat(np.repeat(x28, h // 28 + 1, axis=2), h // 28 + 1, axis=3)[:, :, :h, :h]
    return np.ascontiguousarray(np.repeat(x, c, axis=1), dtype=np.float32)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += p.memory_info().rss
    return total


def run_job(teacher: Path, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-c", "import sys; from edgedistill.service.cli import main; sys.exit(main())", "compress"]
    cmd += [str(teacher), "--data", str(data), "--profile", "cpu-x86", "--out", str(out), *extra]
    t0 = time.perf_counter()
    log_path = out.parent / f"{out.name}.log"  # a file, not a pipe: a full pipe would stall the job
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(ps))
        except psutil.Error:
            break
        time.sleep(POLL_S)
    seconds = time.perf_counter() - t0
    log = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"compress failed ({proc.returncode}):\n{log[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    # The CLI's "✓ <stage> (<seconds> s)" lines: where the job's time goes.
    stages = {m[1]: float(m[2]) for m in re.finditer(r"✓ (\w+) \(([\d.]+) s\)", log)}
    return {"seconds": seconds, "peak_rss": peak, "report": report, "stages": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 60000], help="samples at 28x28")
    ap.add_argument(
        "--shapes", nargs="*", default=["1x64x64", "3x128x128"], help="the 28x28 point is on the size curve"
    )
    ap.add_argument("--shape-samples", type=int, default=1000, help="samples per point of the input-size curve")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--method", default="fitnet")
    ap.add_argument("--width", type=int, default=None, help="pin the student width (default: automatic)")
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--cache-mb", type=float, default=None, help="options.features.cache_mb (default 512)")
    args = ap.parse_args()
    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    fm = load_fashion_mnist()
    x_all = np.concatenate([fm.x_train, fm.x_test])
    y_all = np.concatenate([fm.y_train, fm.y_test])
    options: dict[str, Any] = {"epochs": args.epochs, "method": args.method, "benchmark_runs": 50, "device": "cpu"}
    if args.cache_mb is not None:
        options["features"] = {"cache_mb": args.cache_mb}
    (root / "options.json").write_text(json.dumps(options))
    extra = ["--options", str(root / "options.json")]
    extra += ["--width", str(args.width)] if args.width else []
    extra += ["--depth", str(args.depth)] if args.depth else []

    points = [("size", "1x28x28", n) for n in args.sizes]
    points += [("shape", s, args.shape_samples) for s in args.shapes]
    results: list[dict[str, Any]] = []
    path = root / "scaling.json"
    for curve, s, n in points:
        shape = tuple(int(v) for v in s.split("x"))
        assert len(shape) == 3
        teacher = teacher_for(shape, root / f"teacher_{s}.onnx")  # type: ignore[arg-type]
        data = root / f"data_{s}_{n}.npz"
        x = images(x_all[:n], shape)  # type: ignore[arg-type]
        np.savez(data, x=x, y=y_all[:n])
        data_bytes = x.nbytes
        del x
        out = root / f"run_{curve}_{s}_{n}"
        r = run_job(teacher, data, out, extra)
        rep = r["report"]
        feats = (rep.get("distillation") or {}).get("features") or {}
        row = {
            "curve": curve,
            "shape": s,
            "samples": n,
            "seconds": round(r["seconds"], 1),
            "peak_rss_mib": round(r["peak_rss"] / 2**20, 1),
            "x_mib": round(data_bytes / 2**20, 1),
            "teacher_outputs_mib": round(n * 10 * 4 / 2**20, 2),
            "feature_cache_mib": round(((feats.get("cache") or {}).get("bytes") or 0) / 2**20, 1),
            "feature_notes": feats.get("notes"),
            "student": rep.get("student"),
            "timings": rep.get("timings"),
            "stage_seconds": r["stages"],
        }
        results.append(row)
        path.write_text(json.dumps({"options": options, "rows": results}, indent=2, default=str))
        print(
            f"{curve:>5} {s:>9} {n:>6}: {row['seconds']:7.1f} s, peak RSS {row['peak_rss_mib']:8.1f} MiB "
            f"(x {row['x_mib']:.0f} MiB, teacher outputs {row['teacher_outputs_mib']} MiB, "
            f"feature cache {row['feature_cache_mib']} MiB)",
            flush=True,
        )
        data.unlink()
    print(f"figures in {path}")


if __name__ == "__main__":
    main()
