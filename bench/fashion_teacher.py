"""The Fashion-MNIST teacher of bench/fashion_mnist.py: a BatchNorm CNN trained here on the official
60k training images (optionally with random horizontal flips and 2-pixel shifts) and exported to ONNX with
torch.onnx. Trained once per output folder: a rerun reuses teacher.onnx and teacher.json.

    .venv/bin/python -m bench.fashion_teacher --out /tmp/fm [--epochs 3] [--augment]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.idx import load_fashion_mnist


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class FashionCNN(nn.Module):
    """Three conv blocks (24-48-96 channels, each followed by 2x2 max-pooling) and a 192-unit head:
    about 0.2 M parameters and 3 M MACs per image, sized so that a few epochs on 60k images fit on
    a shared 2-core CPU."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(1, 24), nn.MaxPool2d(2), _block(24, 48), nn.MaxPool2d(2), _block(48, 96), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(96 * 3 * 3, 192), nn.ReLU(), nn.Linear(192, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(xb.shape[0], generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(2, 3))


@torch.inference_mode()
def predict(model: nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    model.eval()
    return torch.cat([model(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]).numpy()


def train(
    x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, augment: bool = False, log: Any = print
) -> nn.Module:
    torch.manual_seed(seed)
    model = FashionCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(128):
            loss = nn.functional.cross_entropy(
                model(_augment(xt[idx], gen) if augment else xt[idx]), yt[idx], label_smoothing=0.05
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"teacher epoch {epoch + 1}/{epochs}: loss {float(loss.detach()):.3f}, {time.perf_counter() - t0:.0f} s")
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def ensure_teacher(out: Path, *, epochs: int, seed: int = 0, augment: bool = False, log: Any = print) -> dict[str, Any]:
    """teacher.onnx + teacher.json (test accuracy, params, training seconds) in `out`, trained if missing."""
    meta_path, onnx_path = out / "teacher.json", out / "teacher.onnx"
    if meta_path.exists() and onnx_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        return meta
    out.mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist()
    t0 = time.perf_counter()
    model = train(data.x_train, data.y_train, epochs=epochs, seed=seed, augment=augment, log=log)
    seconds = time.perf_counter() - t0
    export_onnx(model, onnx_path)
    meta = {
        "test_accuracy": float((predict(model, data.x_test).argmax(1) == data.y_test).mean()),
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "augment": augment,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "onnx_bytes": onnx_path.stat().st_size,
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--augment", action="store_true", help="flips and shifts (pays off only with more epochs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a shared, busy CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(ensure_teacher(args.out, epochs=args.epochs, seed=args.seed, augment=args.augment), indent=2))


if __name__ == "__main__":
    main()
