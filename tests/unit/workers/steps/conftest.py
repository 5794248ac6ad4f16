"""Fixtures for the export/verify/benchmark/report steps: tiny real models trained on small data
(sklearn's digits as 1x8x8 images, generated vectors and sequences), a fake teacher and a RunContext/
RunState pair to run steps with. Models are trained once per session and kept to a few seconds."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.contracts.events import PipelineEvent
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.data import TransferData, make_splits

# --------------------------------------------------------------------------------------------------
# models (TFLM-friendly ops only, like the engine's students)
# --------------------------------------------------------------------------------------------------


class TinyDSCNN(nn.Module):
    """Conv-BN-ReLU stem, one depthwise-separable block, mean pool, Linear. 2-D or (N, C, T) input."""

    def __init__(self, cin: int, classes: int, width: int = 8, seq: bool = False) -> None:
        super().__init__()
        self.seq = seq
        k, p = ((1, 3), (0, 1)) if seq else ((3, 3), (1, 1))
        self.features = nn.Sequential(
            nn.Conv2d(cin, width, k, padding=p, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, k, padding=p, groups=width, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(),
            nn.Conv2d(width, 2 * width, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.seq:
            x = x.unsqueeze(2)
        x = self.features(x)
        # keepdim + flatten: a bare mean(dim=(2, 3)) makes the channel-last TFLite add a TRANSPOSE.
        return self.fc(torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1))


def mlp(features: int, outputs: int, hidden: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, regression: bool = False) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    loss_fn: Any = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(xt.shape[0])
        for i in range(0, xt.shape[0], 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


# --------------------------------------------------------------------------------------------------
# teacher and state
# --------------------------------------------------------------------------------------------------


@dataclass
class FakeTeacher:
    """The Teacher interface the steps use, over a torch module (format "torchscript") or an ONNX file."""

    module: nn.Module
    format: str = "torchscript"
    path: Path = Path("teacher.pt")
    runtime_name: str = "torch"
    runtime_version: str = torch.__version__
    signature: Any = None
    file_bytes: int = 0
    calls: list[int] = field(default_factory=list)

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def macs(self) -> int | None:
        return 50_000

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        self.calls.append(int(x.shape[0]))
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "runtime": self.runtime_name, "runtime_version": self.runtime_version}


@dataclass
class Case:
    """One trained set-up: data, teacher, student (+ its arch dict)."""

    data: TransferData
    teacher: FakeTeacher
    student: nn.Module
    student_arch: dict[str, Any]

    def state(self) -> RunState:
        s = RunState()
        s.data = self.data
        s.teacher = self.teacher
        s.student = copy.deepcopy(self.student)
        s.student_arch = dict(self.student_arch)
        s.teacher_outputs = {k: self.teacher.predict(self.data.x_of(k)) for k in ("train", "val", "test")}
        s.training = {"best_epoch": 3, "epochs_run": 5, "seconds": 1.5, "curve": [{"epoch": 1, "train_loss": 1.0}]}
        return s


def _splits(n: int, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    splits, _ = make_splits(n, labels, val_fraction=0.15, test_fraction=0.15, seed=0)
    return splits


@pytest.fixture(scope="session")
def digits_case() -> Case:
    """sklearn digits as (N, 1, 8, 8) images: an MLP teacher and a tiny DS-CNN student."""
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    splits = _splits(x.shape[0], y)
    tr = splits["train"]
    teacher_net = nn.Sequential(nn.Flatten(), mlp(64, 10, hidden=64))
    train(teacher_net, x[tr], y[tr], epochs=15)
    student = train(TinyDSCNN(1, 10, width=16), x[tr], y[tr], epochs=20)
    data = TransferData(
        x=x, y=y, splits=splits, modality="image", task="classification", num_outputs=10,
        class_labels=[f"digit_{i}" for i in range(10)],
    )  # fmt: skip
    params = sum(p.numel() for p in student.parameters())
    arch = {"family": "ds_cnn2d", "width": 16, "depth": 1, "params": params, "macs": 30_000,
            "est_int8_bytes": 6_000, "est_arena_bytes": 3_000}  # fmt: skip
    return Case(data, FakeTeacher(teacher_net, file_bytes=20_000), student, arch)


@pytest.fixture(scope="session")
def vector_case() -> Case:
    """Generated 12-feature regression data (2 targets): MLP teacher and smaller MLP student."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    w = rng.normal(size=(12, 2)).astype(np.float32)
    y = (np.tanh(x @ w) + 0.05 * rng.normal(size=(400, 2))).astype(np.float32)
    splits = _splits(x.shape[0], None)
    tr = splits["train"]
    teacher_net = train(mlp(12, 2, hidden=64), x[tr], y[tr], epochs=30, regression=True)
    student = train(mlp(12, 2, hidden=16), x[tr], y[tr], epochs=30, regression=True)
    data = TransferData(x=x, y=y, splits=splits, modality="vector", task="regression", num_outputs=2)
    params = sum(p.numel() for p in student.parameters())
    arch = {"family": "mlp", "width": 16, "depth": 1, "params": params, "macs": 224}
    return Case(data, FakeTeacher(teacher_net, file_bytes=8_000), student, arch)


@pytest.fixture(scope="session")
def sequence_case() -> Case:
    """(N, 3, 16) sequences, 3 classes by dominant frequency; no labels stored (teacher-only)."""
    rng = np.random.default_rng(1)
    n, t = 300, 16
    cls = rng.integers(0, 3, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 3, 1))
    freq = (cls + 1)[:, None, None] * np.pi / 8
    x = (np.sin(freq * np.arange(t) + phase) + 0.1 * rng.normal(size=(n, 3, t))).astype(np.float32)
    splits = _splits(n, None)
    tr = splits["train"]
    teacher_net = nn.Sequential(nn.Flatten(), mlp(3 * t, 3, hidden=64))
    train(teacher_net, x[tr], cls[tr].astype(np.int64), epochs=20)
    student = train(TinyDSCNN(3, 3, seq=True), x[tr], cls[tr].astype(np.int64), epochs=20)
    data = TransferData(x=x, y=None, splits=splits, modality="sequence", task="classification", num_outputs=3)
    arch = {"family": "ds_cnn1d", "width": 8, "depth": 1, "params": 200, "macs": 10_000}
    return Case(data, FakeTeacher(teacher_net, file_bytes=12_000), student, arch)


# --------------------------------------------------------------------------------------------------
# context
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    ctx: RunContext
    events: list[PipelineEvent]

    def of_kind(self, kind: str) -> list[PipelineEvent]:
        return [e for e in self.events if e.kind == kind]


def make_run(tmp_path: Path, profile: str | Any = "cpu-x86", **options: Any) -> Run:
    prof = builtin_profiles()[profile] if isinstance(profile, str) else profile
    opts = {"calibration_samples": 64, "benchmark_runs": 5, "benchmark_warmup": 1, **options}
    spec = PipelineSpec(
        teacher_path=tmp_path / "teacher.pt",
        data_path=tmp_path / "data.npz",
        profile=prof,
        options=JobOptions(**opts),
        out_dir=tmp_path / "out",
    )
    events: list[PipelineEvent] = []
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Run(RunContext(spec=spec, work_dir=work, emit_sink=events.append), events)


@pytest.fixture
def run_factory(tmp_path: Path) -> Any:
    def factory(profile: str | Any = "cpu-x86", **options: Any) -> Run:
        return make_run(tmp_path, profile, **options)

    return factory


@pytest.fixture
def make_profile() -> Any:
    """make_profile(builtin_name, **changes) -> a re-validated variant of a built-in profile."""
    return profile_with


def profile_with(name: str, **changes: Any) -> Any:
    """A built-in profile with some fields replaced (budgets merged), re-validated."""
    from edgedistill.contracts.profiles import parse_profile

    base = builtin_profiles()[name].as_yaml_dict()
    budgets = {**base["budgets"], **changes.pop("budgets", {})}  # type: ignore[dict-item]
    return parse_profile({**base, **changes, "budgets": budgets, "name": f"{name}-test"})


def copy_state(state: RunState) -> RunState:
    """A state whose containers can be changed without touching the original (modules and files shared)."""
    s = copy.copy(state)
    s.artifacts = dict(state.artifacts)
    s.metrics = copy.deepcopy(state.metrics)
    s.budget = copy.deepcopy(state.budget)
    s.latency = list(state.latency)
    s.warnings = list(state.warnings)
    s.report = dict(state.report)
    return s


EXPORT_STEPS = (
    "edgedistill.workers.steps.export_onnx:ExportOnnx",
    "edgedistill.workers.steps.quantize:QuantizeOnnx",
    "edgedistill.workers.steps.export_tflite:ExportTflite",
    "edgedistill.workers.steps.mcu:ExportCArray",
)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    """exported(profile, case) -> (Run, RunState) after the export steps, built once per pair; each
    call returns a fresh state copy. Cases: "digits", "vector", "sequence"."""
    import importlib

    cache: dict[tuple[str, str], tuple[Run, RunState]] = {}

    def get(profile: str, case: str) -> tuple[Run, RunState]:
        if (profile, case) not in cache:
            c: Case = request.getfixturevalue(f"{case}_case")
            run = make_run(tmp_path_factory.mktemp(f"{profile}-{case}"), profile)
            state = c.state()
            for target in EXPORT_STEPS:
                module, _, name = target.partition(":")
                getattr(importlib.import_module(module), name)().run(run.ctx, state)
            cache[(profile, case)] = (run, state)
        run, state = cache[(profile, case)]
        return run, copy_state(state)

    return get
