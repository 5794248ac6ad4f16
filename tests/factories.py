"""Test-data factories: tiny teachers saved in every accepted format, transfer-data .npz files and
hostile files (pickles, traversal, zip bombs). Everything is generated; nothing is downloaded."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's bundled digits as (1797, 1, 8, 8) float32 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None, :, :], d.target.astype(np.int64)


class DigitsTeacher(nn.Module):
    """~25k-parameter CNN: big enough that the student must be several times smaller."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 40), nn.ReLU(), nn.Linear(40, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, regression: bool = False) -> nn.Module:
    # Callers may be inside torch.inference_mode() when a cached teacher is first built.
    with torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loss_fn: nn.Module = nn.MSELoss() if regression else nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(xt)).split(64):
                opt.zero_grad()
                loss_fn(model(xt[idx]), yt[idx]).backward()
                opt.step()
    return model.eval()


@cache
def digits_teacher() -> nn.Module:
    x, y = digits()
    with torch.inference_mode(False):  # parameters made in inference mode could never train
        return fit(DigitsTeacher(), x, y, epochs=4)


def save_teacher(model: nn.Module, example: torch.Tensor, path: Path, fmt: str, *, dynamic_batch: bool = True) -> Path:
    """Save model as onnx (TorchScript exporter), torchscript or pt2 at path."""
    model = model.eval()
    if fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}} if dynamic_batch else None,
            )  # fmt: skip
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.script(model), str(path))
    elif fmt == "pt2":
        dims = ({0: torch.export.Dim("n", min=1, max=1 << 20)},) if dynamic_batch else None
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dims), str(path))
    else:
        raise ValueError(fmt)
    return path


SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


class NaNTeacher(nn.Module):
    """Outputs NaN for every sample (e.g. a broken normalisation layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class ProbTeacher(nn.Module):
    """A classifier that ends in softmax: its outputs are probabilities, not logits."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=1)


def vector_regression(
    n: int = 300, features: int = 6, targets: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Generated regression data with features on very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32) * np.logspace(-1, 2, features).astype(np.float32)
    w = rng.normal(size=(features, targets)).astype(np.float32)
    y = np.tanh((x / x.std(0)) @ w).astype(np.float32)
    return x, y


def make_ctx(
    tmp_path: Path,
    *,
    teacher: Path | None = None,
    data: Path | None = None,
    profile: Any = "mcu-cortex-m4",
    **options: Any,
) -> tuple[Any, list[Any]]:
    """A RunContext for running steps directly, and the list its events are collected in."""
    from edgedistill.contracts.profiles import builtin_profiles
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.context import RunContext

    spec = PipelineSpec(
        teacher_path=teacher or tmp_path / "teacher.onnx",
        data_path=data,
        profile=builtin_profiles()[profile] if isinstance(profile, str) else profile,
        options=JobOptions(**options),
        out_dir=tmp_path / "out",
    )
    events: list[Any] = []
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return RunContext(spec=spec, work_dir=work, emit_sink=events.append), events


def custom_profile(base: str, **budgets: Any) -> Any:
    """A built-in profile with some budgets replaced, validated like a user's profile file."""
    from edgedistill.contracts.profiles import builtin_profiles, parse_profile

    raw = builtin_profiles()[base].as_yaml_dict()
    raw["budgets"] = {**raw["budgets"], **budgets}  # type: ignore[dict-item]
    raw["name"] = f"{base}-custom"
    return parse_profile(raw)
