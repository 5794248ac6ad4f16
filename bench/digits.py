"""Shared by the benchmark scripts: scikit-learn's digits (ships with the package, no download), a fixed
held-out test set nobody trains on, and a teacher CNN large enough that compressing it matters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


@dataclass(frozen=True)
class DigitsSplit:
    x_rest: np.ndarray  # (N,1,8,8) float32: teacher training data and the transfer set
    y_rest: np.ndarray
    x_test: np.ndarray  # held out from teacher, student and calibration alike
    y_test: np.ndarray


def digits_split(seed: int = 0, test_size: float = 0.2) -> DigitsSplit:
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return DigitsSplit(x_rest, y_rest, x_test, y_test)


class TeacherCNN(nn.Module):
    """~0.63 M parameters: three conv blocks and a wide classifier head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(block(1, 64), block(64, 128), nn.MaxPool2d(2), block(128, 256), nn.MaxPool2d(2))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(256 * 2 * 2, 256), nn.ReLU(), nn.Linear(256, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_teacher(x: np.ndarray, y: np.ndarray, *, epochs: int = 30, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TeacherCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            xb = xt[idx]
            # Small random shifts: the teacher should be a good model, not an overfit one.
            xb = torch.roll(
                xb,
                shifts=(int(torch.randint(-1, 2, (1,), generator=gen)), int(torch.randint(-1, 2, (1,), generator=gen))),
                dims=(2, 3),
            )
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def export_teacher(model: nn.Module, out_dir: Path) -> dict[str, Path]:
    """The same trained teacher as ONNX and as TorchScript."""
    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 1, 8, 8)
    onnx_path, ts_path = out_dir / "teacher.onnx", out_dir / "teacher.ts"
    torch.onnx.export(
        model,
        (example,),
        str(onnx_path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    torch.jit.save(torch.jit.trace(model, example), str(ts_path))
    return {"onnx": onnx_path, "torchscript": ts_path}


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
