"""Training throughput of the engine's distillation loop (train_student) on cached teacher outputs.

Compare with toolchain.md's bare PyTorch KD loop: 17,931 samples/s for a 4k-parameter student on
1x8x8 input at batch 256 on 2 CPU cores; the engine should reach at least 70% of it.

    .venv/bin/python -m bench.distill_throughput [--device cpu|cuda] [--epochs 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from edgedistill.workers.steps.distill.losses import build_loss, method_terms
from edgedistill.workers.steps.distill.trainer import SplitTensors, TrainConfig, train_student
from edgedistill.workers.steps.students import StudentArch, build_module

CONFIGS = ((8, 4), (12, 3), (16, 3))  # ~3-5.5k parameters on 1x8x8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, 1, 8, 8)).astype(np.float32)
    t = rng.standard_normal((args.samples, 10)).astype(np.float32)
    y = rng.integers(0, 10, args.samples)
    dev = torch.device(args.device)
    train = SplitTensors.from_numpy(x, t, y, task="classification", device=dev)
    val = SplitTensors.from_numpy(x[:512], t[:512], y[:512], task="classification", device=dev)
    terms = method_terms("kd", task="classification", has_labels=True, alpha=0.7, temperature=4.0)
    loss = build_loss(terms, task="classification", available={"student_logits", "teacher_logits", "labels"})

    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'width':>5} {'depth':>5} {'params':>7} {'samples/s':>10}")
    for width, depth in CONFIGS:
        arch = StudentArch("ds_cnn2d", (1, 8, 8), 10, width, depth)
        # one warm-up run (allocator, kernels), then the measured one
        for _ in range(2):
            student = build_module(arch)
            result = train_student(
                student, loss, task="classification", train=train, val=val,
                config=TrainConfig(epochs=args.epochs, batch_size=args.batch, patience=10**6, device=args.device),
            )  # fmt: skip
        params = sum(p.numel() for p in student.parameters())
        print(f"{width:>5} {depth:>5} {params:>7,} {result.samples_per_second:>10,.0f}")


if __name__ == "__main__":
    main()
