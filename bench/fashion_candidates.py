"""Every candidate the Fashion-MNIST jobs compared (report.json "candidates": the teacher quantized alone,
the student's own best file for the device class, which the job chose), each file run in its runtime on
the official 10k test images, mean ± std over the job seeds. Reads the job folders bench.fashion_mnist
left (<out>/<profile>-<method>-s<seed>); runs no training.

    .venv/bin/python -m bench.fashion_candidates --out /tmp/fm --profiles cpu-x86 mobile-arm64 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.fashion_mnist import _acc, _ms, run_any
from bench.idx import load_fashion_mnist


def candidate_rows(root: Path, profile: str, method: str, seeds: list[int]) -> dict[str, dict[str, Any]]:
    data = load_fashion_mnist()
    rows: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        job = root / f"{profile}-{method}-s{seed}"
        report = json.loads((job / "report.json").read_text())
        files = report["artifacts"]
        for c in report["candidates"]["rows"]:
            kind = c.get("artifact_kind")
            if not kind or kind not in files:
                continue
            r = rows.setdefault(
                c["name"], {"label": c["label"], "kind": kind, "acc": [], "chosen": [], "bytes": c["bytes"]}
            )
            r["acc"].append(_acc(run_any(job / files[kind]["filename"], data.x_test, 1), data.y_test))
            r["chosen"].append(bool(c["chosen"]))
            r.setdefault("p50_ms", []).append(c.get("p50_ms"))
            r["why"] = report["candidates"]["why"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profiles", nargs="+", default=["cpu-x86", "mobile-arm64"])
    ap.add_argument("--methods", nargs="+", default=["labels_only", "kd"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    out: list[dict[str, Any]] = []
    print(f"{'profile':14} {'method':12} {'candidate':52} {'file':16} {'accuracy %':>14} {'bytes':>9} {'chosen':>7}")
    for profile in args.profiles:
        for method in args.methods:
            for name, r in candidate_rows(args.out, profile, method, args.seeds).items():
                print(
                    f"{profile:14} {method:12} {r['label'][:52]:52} {r['kind']:16} {_ms(r['acc']):>14} "
                    f"{r['bytes']:>9,} {sum(r['chosen'])}/{len(r['chosen']):>5}"
                )
                out.append({"profile": profile, "method": method, "name": name, **r})
    (args.out / "fashion_candidates.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
