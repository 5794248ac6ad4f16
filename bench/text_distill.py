"""Transformer distillation on real reviews (issue 14): a 4-layer transformer teacher trained here on
r-cran-modeldata's small_fine_foods (bench.material's reader, vocabulary and tokenizer), exported to
ONNX, distilled by the engine into a 2-layer transformer student with and without attention transfer:

- "kd": options.student.family transformer, method kd (logits KD + label CE, no feature terms);
- "transformer": method transformer (the same + MiniLM attention / value relation + TinyBERT hidden);
- "minilm" (optional, --arms): method transformer with options.losses keeping MiniLM's two terms only.

Each arm runs 3 seeds. The transfer set is the 4000 training reviews (the engine splits it into
train/val/test); the figures are on the 1000 testing reviews, which neither teacher nor student saw:
accuracy vs labels, top-1 agreement with the teacher, file size, and batch-1 latency with onnxruntime
(1 thread, the same for every model). The teacher quantized on its own (no distillation: static QDQ as
the engine quantizes other students, and dynamic as it quantizes transformer students) are reference
rows.

    .venv/bin/python -m bench.text_distill --work /tmp/text_distill [--epochs 15] [--seeds 0 1 2] \
        [--arms kd transformer minilm]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.material import SEQ_LEN, _export_onnx, _fit, build_vocab, reviews, text_transformer_module, tokenize

LAYERS, WIDTH, HEADS = 4, 64, 4


def teacher_module() -> Any:
    """bench.material's review-classifier design, LAYERS deep."""
    return text_transformer_module(LAYERS, WIDTH, HEADS)


def build_teacher(work: Path, epochs: int) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    import torch

    tr_text, tr_y, te_text, te_y = reviews()
    vocab = build_vocab(tr_text)
    ids, mask = tokenize(tr_text, vocab)
    ids_t, mask_t = tokenize(te_text, vocab)
    transfer = {"input_ids": ids, "attention_mask": mask, "y": tr_y}
    heldout = {"input_ids": ids_t, "attention_mask": mask_t, "y": te_y}
    path = work / "teacher.onnx"
    if not path.exists():
        torch.manual_seed(0)
        model = _fit(teacher_module(), (ids, mask), tr_y, "ce", epochs=epochs, batch=64, lr=2e-3)
        _export_onnx(
            model,
            (torch.zeros(1, SEQ_LEN, dtype=torch.int64), torch.ones(1, SEQ_LEN, dtype=torch.int64)),
            path,
            ["input_ids", "attention_mask"],
            ["logits"],
        )
    np.savez(work / "transfer.npz", **transfer)
    return path, transfer, heldout


def predict(path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    from edgedistill.runtimes.onnx import OnnxModel

    return OnnxModel(path, threads=1).predict_all({k: data[k] for k in ("input_ids", "attention_mask")})["logits"]


def latency_ms(path: Path, data: dict[str, np.ndarray], runs: int) -> float:
    """Median batch-1 latency, onnxruntime CPU, 1 thread."""
    from edgedistill.runtimes.onnx import OnnxModel

    sess = OnnxModel(path, threads=1).session
    feeds = [{k: data[k][i : i + 1] for k in ("input_ids", "attention_mask")} for i in range(runs)]
    for f in feeds[:20]:
        sess.run(None, f)
    times = []
    for f in feeds:
        t = time.perf_counter()
        sess.run(None, f)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def run_arm(work: Path, teacher: Path, arm: str, seed: int, epochs: int, steps: tuple[str, ...]) -> dict[str, Any]:
    from edgedistill.contracts.profiles import builtin_profiles
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    out = work / f"{arm}_s{seed}"
    opts: dict[str, Any] = {
        "method": "kd" if arm == "kd" else "transformer",
        "student": {"family": "transformer", "depth": 2},
        "epochs": epochs,
        "patience": epochs,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "seed": seed,
        "qat": "never",
        "device": "cpu",
    }
    if arm == "minilm":  # attention transfer alone: MiniLM's two terms, no TinyBERT hidden states
        opts["losses"] = [{"key": "minilm_attention"}, {"key": "minilm_value"}]
    spec = PipelineSpec(
        teacher_path=teacher, data_path=work / "transfer.npz", profile=builtin_profiles()["cpu-x86"],
        options=JobOptions(**opts), out_dir=out,
    )  # fmt: skip
    started = time.monotonic()
    events: list[Any] = []
    res = run_pipeline(spec, events.append, steps=steps)
    seconds = time.monotonic() - started
    return {"out": out, "seconds": seconds, "artifacts": res.artifacts}


def save(work: Path, rows: dict[str, list[dict[str, Any]]]) -> None:
    (work / "text_distill_rows.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=15, help="student epochs")
    ap.add_argument("--teacher-epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=int, default=300, help="latency samples")
    ap.add_argument("--arms", nargs="+", default=["kd", "transformer"], choices=["kd", "transformer", "minilm"])
    args = ap.parse_args()
    import torch

    from edgedistill.workers.steps.quantize import quantize_onnx_dynamic, quantize_onnx_int8

    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    teacher, transfer, heldout = build_teacher(args.work, args.teacher_epochs)
    print(f"teacher ready ({time.monotonic() - started:.0f} s)", flush=True)
    y = heldout["y"]
    t_logits = predict(teacher, heldout)
    t_int8 = args.work / "teacher_int8.onnx"
    if not t_int8.exists():
        calib = {k: transfer[k][:256] for k in ("input_ids", "attention_mask")}
        quantize_onnx_int8(teacher, t_int8, calib, "minmax", args.work)
    t_dyn = args.work / "teacher_int8_dynamic.onnx"
    if not t_dyn.exists():
        quantize_onnx_dynamic(teacher, t_dyn, args.work)
    rows: dict[str, list[dict[str, Any]]] = {}

    def row(name: str, path: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        out = predict(path, heldout)
        r = {
            "accuracy": float((out.argmax(1) == y).mean()),
            "agreement": float((out.argmax(1) == t_logits.argmax(1)).mean()),
            "bytes": path.stat().st_size,
            "latency_ms": latency_ms(path, heldout, args.runs),
            **(extra or {}),
        }
        rows.setdefault(name, []).append(r)
        print(name, json.dumps(r), flush=True)
        return r

    row("teacher fp32 (4 layers, d=64, 4 heads)", teacher)
    row("teacher int8 only (onnxruntime quantize_static, QDQ)", t_int8)
    row("teacher int8 only (onnxruntime quantize_dynamic)", t_dyn)
    save(args.work, rows)
    base = ("load_teacher", "load_data", "build_student", "distill", "export_onnx", "quantize_onnx")
    for seed in args.seeds:
        for arm in args.arms:
            out = args.work / f"{arm}_s{seed}"
            if not (out / "student_int8.onnx").exists():  # a finished arm is kept (the bench resumes)
                res = run_arm(args.work, teacher, arm, seed, args.epochs, base)
                (out / "seconds.txt").write_text(f"{res['seconds']:.1f}")
            arch = (
                json.loads((out / "report.json").read_text()).get("student", {})
                if (out / "report.json").exists()
                else {}
            )
            extra = {
                "seed": seed,
                "seconds": float((out / "seconds.txt").read_text()),
                **({"arch": arch} if arch else {}),
            }
            row(f"student {arm} fp32", out / "student_fp32.onnx", extra)
            row(f"student {arm} int8", out / "student_int8.onnx", extra)
            save(args.work, rows)
    summary = {
        name: {
            k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for k in ("accuracy", "agreement", "bytes", "latency_ms")
            for v in [[r[k] for r in rs]]
        }
        | {"n": len(rs)}
        for name, rs in rows.items()
    }
    (args.work / "text_distill.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    print("\n| model | n | accuracy % | agreement with teacher % | file KiB | b1 latency ms |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['n']} | {100 * s['accuracy'][0]:.1f} ± {100 * s['accuracy'][1]:.1f} | "
            f"{100 * s['agreement'][0]:.1f} ± {100 * s['agreement'][1]:.1f} | {s['bytes'][0] / 1024:.0f} | "
            f"{s['latency_ms'][0]:.3f} |"
        )
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
