"""PNG plots of bench/scaling.py's figures: one per curve (transfer-set size, input size), wall time
and peak RSS of the job's process tree on two axes.

    .venv/bin/python -m bench.scaling_plot /tmp/scaling/scaling.json [more.json ...] --out-dir docs/img
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _pixels(shape: str) -> int:
    c, h, w = (int(v) for v in shape.split("x"))
    return c * h * w


def _plot(rows: list[dict[str, Any]], x_key: str, xlabel: str, title: str, path: Path, labels: list[str]) -> None:
    xs = [r[x_key] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(xs, [r["seconds"] for r in rows], "o-", color="tab:blue", label="job wall time (s)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("job wall time (s)", color="tab:blue")
    ax.set_xscale("log")
    ax.set_xticks(xs, labels)
    ax.minorticks_off()
    ax2 = ax.twinx()
    ax2.plot(xs, [r["peak_rss_mib"] for r in rows], "s--", color="tab:red", label="peak RSS, process tree (MiB)")
    ax2.set_ylabel("peak RSS of the job's process tree (MiB)", color="tab:red")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("figures", type=Path, nargs="+", help="scaling.json files of runs with the same options")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    runs = [json.loads(f.read_text()) for f in args.figures]
    if any(r["options"] != runs[0]["options"] for r in runs):
        raise SystemExit("the runs were made with different options; plot them separately")
    data = runs[0]
    rows = [row for r in runs for row in r["rows"]]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    opts = data["options"]
    method, epochs = opts.get("method", "kd"), opts.get("epochs")
    size = sorted((r for r in rows if r["curve"] == "size"), key=lambda r: r["samples"])
    if size:
        _plot(
            size, "samples", "transfer-set samples (Fashion-MNIST, 1x28x28)",
            f"edgedistill compress, cpu-x86, {method}, {epochs} epoch(s): cost vs transfer-set size",
            args.out_dir / "scaling_size.png", [f"{r['samples']:,}" for r in size],
        )  # fmt: skip
    shaped = [r for r in rows if r["curve"] == "shape"]
    base = [r for r in size if shaped and r["samples"] == shaped[0]["samples"]]  # the 28x28 point
    shape = sorted(base + shaped, key=lambda r: _pixels(r["shape"]))
    for r in shape:
        r["pixels"] = _pixels(r["shape"])
    if len(shape) > 1:
        _plot(
            shape, "pixels", f"input size per sample ({shape[0]['samples']:,} samples)",
            f"edgedistill compress, cpu-x86, {method}, {epochs} epoch(s): cost vs input size",
            args.out_dir / "scaling_input.png", [r["shape"] for r in shape],
        )  # fmt: skip
    print(f"plots in {args.out_dir}")


if __name__ == "__main__":
    main()
