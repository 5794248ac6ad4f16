"""Loop throughput at realistic input sizes (issue 16, item 3): the engine's train_student against a
bare PyTorch KD loop on the same student, batch, input and data, in the same process, interleaved
(engine, bare, engine, bare, ...) so that other load on a shared CPU hits both sides alike.

The bare loop is what a user would write: tensors in memory, a shuffled index per epoch, Hinton KD
(T^2-scaled KL at T = 4, weight 0.7, + 0.3 cross-entropy), AdamW with cosine decay, nothing else. The
engine additionally evaluates validation fidelity after every epoch and keeps the best weights;
"train" compares the training steps alone (the engine's train_seconds), "wall" the whole call.

The student is the one the engine chooses for the input (choose_arch, cpu-x86 profile).

    .venv/bin/python -m bench.loop_throughput [--samples 2048] [--epochs 2] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.workers.steps.distill.losses import build_loss, method_terms
from edgedistill.workers.steps.distill.trainer import SplitTensors, TrainConfig, train_student
from edgedistill.workers.steps.students import StudentArch, build_module, choose_arch, estimate

SHAPES: tuple[tuple[int, int, int], ...] = ((1, 28, 28), (3, 32, 32), (3, 96, 96))
T, ALPHA = 4.0, 0.7


def bare_kd_loop(
    student: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *, epochs: int, batch: int, seed: int
) -> tuple[float, int]:
    """Seconds and samples of a plain KD loop (the reference the engine is held to)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    steps = math.ceil(n / batch)
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps)
    student.train()
    seen = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch):
            out = student(x[idx])
            log_p = nn.functional.log_softmax(t[idx] / T, dim=1)
            kd = nn.functional.kl_div(
                nn.functional.log_softmax(out / T, dim=1), log_p, reduction="batchmean", log_target=True
            )
            loss = ALPHA * T * T * kd + (1 - ALPHA) * nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += idx.numel()
    return time.perf_counter() - t0, seen


def engine_loop(
    student: nn.Module, train: SplitTensors, val: SplitTensors, *, epochs: int, batch: int, seed: int
) -> tuple[float, float, int]:
    terms = method_terms("kd", task="classification", has_labels=True, alpha=ALPHA, temperature=T)
    loss = build_loss(terms, task="classification", available={"student_logits", "teacher_logits", "labels"})
    cfg = TrainConfig(epochs=epochs, batch_size=batch, patience=10**6, seed=seed, device="cpu")
    t0 = time.perf_counter()
    res = train_student(student, loss, task="classification", train=train, val=val, config=cfg)
    return time.perf_counter() - t0, res.train_seconds, res.samples_seen


def measure(
    shape: tuple[int, int, int], *, samples: int, val: int, epochs: int, batch: int, reps: int
) -> dict[str, Any]:
    arch: StudentArch = choose_arch(
        modality="image", input_shape=shape, num_outputs=10, profile=builtin_profiles()["cpu-x86"],
        teacher_params=1_000_000,
    ).arch  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples + val, *shape)).astype(np.float32)
    t = rng.standard_normal((samples + val, 10)).astype(np.float32) * 3
    y = t.argmax(1).astype(np.int64)
    dev = torch.device("cpu")
    tr = SplitTensors.from_numpy(x[:samples], t[:samples], y[:samples], task="classification", device=dev)
    va = SplitTensors.from_numpy(x[samples:], t[samples:], y[samples:], task="classification", device=dev)
    init = build_module(arch).state_dict()

    def fresh() -> nn.Module:
        m = build_module(arch)
        m.load_state_dict(init)
        return m

    bare_s: list[float] = []
    eng_wall: list[float] = []
    eng_train: list[float] = []
    # one untimed warm-up of each side (allocator, oneDNN primitive caches), then interleaved reps
    bare_kd_loop(fresh(), tr.x, tr.t, _labels(tr), epochs=1, batch=batch, seed=0)
    engine_loop(fresh(), tr, va, epochs=1, batch=batch, seed=0)
    seen_e = seen_b = 0
    for rep in range(reps):
        wall, train_s, seen_e = engine_loop(fresh(), tr, va, epochs=epochs, batch=batch, seed=rep)
        eng_wall.append(wall)
        eng_train.append(train_s)
        b, seen_b = bare_kd_loop(fresh(), tr.x, tr.t, _labels(tr), epochs=epochs, batch=batch, seed=rep)
        bare_s.append(b)
    if seen_e != seen_b:
        raise RuntimeError(f"the loops saw different sample counts: engine {seen_e}, bare {seen_b}")
    est = estimate(arch)
    bare_rate = seen_b / statistics.median(bare_s)
    train_rate = seen_e / statistics.median(eng_train)
    wall_rate = seen_e / statistics.median(eng_wall)
    return {
        "student": f"{arch.family} w{arch.width} d{arch.depth} k{arch.dw_kernel}",
        "params": est.params,
        "macs": est.macs,
        "samples_per_rep": seen_e,
        "bare_per_s": bare_rate,
        "engine_train_per_s": train_rate,
        "engine_wall_per_s": wall_rate,
        "ratio_train": train_rate / bare_rate,
        "ratio_wall": wall_rate / bare_rate,
        "bare_s": bare_s,
        "engine_train_s": eng_train,
        "engine_wall_s": eng_wall,
    }


def _labels(s: SplitTensors) -> torch.Tensor:
    assert s.y is not None
    return s.y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="+", default=["1x28x28", "3x32x32", "3x96x96"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for s in args.shapes:
        shape = tuple(int(v) for v in s.split("x"))
        assert len(shape) == 3
        m = measure(shape, samples=args.samples, val=args.val, epochs=args.epochs, batch=args.batch, reps=args.reps)  # type: ignore[arg-type]
        rows.append({"shape": s, **m})
        print(
            f"{s:>8} {m['student']:<22} {m['params']:>7,} params {m['macs'] / 1e6:6.2f} M MACs | bare "
            f"{m['bare_per_s']:8,.0f}/s | engine train {m['engine_train_per_s']:8,.0f}/s ({m['ratio_train']:.2f}x) "
            f"| engine wall {m['engine_wall_per_s']:8,.0f}/s ({m['ratio_wall']:.2f}x)",
            flush=True,
        )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, {args.samples} samples, "
        f"{args.epochs} epochs x {args.reps} interleaved reps (medians)"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
