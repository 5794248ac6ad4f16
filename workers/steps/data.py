"""Transfer data: the user's .npz read safely, validated against the teacher, split deterministically.

One array per teacher input, keyed by the input's name (``x`` is accepted for a single-input
teacher): token ids and masks stay integers (int64), everything else is float32. The first input
is also ``x`` ((N, F) vector, (N, C, T) sequence or (N, C, H, W) image data) for the steps that
handle one input. y (optional) holds class labels or regression targets of the primary output.
Without labels the student is judged by agreement with the teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import DataFileError, NpzSummary, check_npz

Modality = Literal["vector", "sequence", "image"]
Task = Literal["classification", "regression"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
MIN_SAMPLES = 10
MIN_PER_CLASS_FOR_STRATIFY = 3


def infer_modality(sample_shape: tuple[int, ...]) -> Modality:
    if len(sample_shape) == 1:
        return "vector"
    if len(sample_shape) == 2:
        return "sequence"
    if len(sample_shape) == 3:
        return "image"
    raise InputError(f"per-sample shape {sample_shape} is not (F,), (C, T) or (C, H, W)")


@dataclass
class TransferData:
    """The whole data set in memory (float32 x) plus the index of each split."""

    x: np.ndarray
    y: np.ndarray | None  # int64 class labels or float32 targets (N, k)
    splits: dict[str, np.ndarray]  # split name -> sorted row indices
    modality: Modality
    task: Task
    num_outputs: int  # classes (classification) or target width (regression)
    class_labels: list[str] | None = None
    stratified: bool = False
    notes: list[str] = field(default_factory=list)
    # Data-free runs: the train/val rows are generated (after distillation) and test rows, if any, are
    # real data used only for evaluation.
    synthetic: bool = False
    # every teacher input by name, in the teacher's order (x is the first one); None: just x
    arrays: dict[str, np.ndarray] | None = None
    input_names: tuple[str, ...] = ("input",)
    primary_output: str | None = None  # the teacher output y belongs to and single-output steps use

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def x_of(self, split: str) -> np.ndarray:
        return self.x[self.splits[split]]

    def all_inputs(self) -> dict[str, np.ndarray]:
        return dict(self.arrays) if self.arrays is not None else {self.input_names[0]: self.x}

    def inputs_of(self, split: str) -> dict[str, np.ndarray]:
        """Every input's rows of one split by input name, in the teacher's input order."""
        idx = self.splits[split]
        return {name: arr[idx] for name, arr in self.all_inputs().items()}

    def y_of(self, split: str) -> np.ndarray | None:
        return None if self.y is None else self.y[self.splits[split]]

    def sizes(self) -> dict[str, int]:
        return {k: int(v.size) for k, v in self.splits.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "samples": int(self.x.shape[0]),
            "sample_shape": list(self.sample_shape),
            "modality": self.modality,
            "task": self.task,
            "num_outputs": self.num_outputs,
            "labels": self.has_labels,
            "splits": self.sizes(),
            "inputs": {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in self.all_inputs().items()},
            "stratified": self.stratified,
            **({"synthetic": True, "notes": list(self.notes)} if self.synthetic else {}),
        }


def _labels_and_names(npz: Any, summary: NpzSummary) -> tuple[np.ndarray | None, list[str] | None]:
    """y (as stored) and the class names when the file has them as a 1-D string array."""
    y = np.asarray(npz["y"]) if summary.has_labels else None
    names = None
    if "class_names" in summary.arrays:
        raw = np.asarray(npz["class_names"])
        if raw.dtype.kind in "US" and raw.ndim == 1:
            names = [str(v) for v in raw.tolist()]
    return y, names


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """x as float32, y as given (or None) and class_names when stored; headers are checked first."""
    summary = check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            x = np.asarray(npz["x"])
            y, names = _labels_and_names(npz, summary)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"data file {path.name!r} cannot be read: {exc}") from exc
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(x.shape[0], -1).any(axis=1).sum())
        raise DataFileError(f"data x contains NaN or Inf values in {bad} of {x.shape[0]} samples")
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataFileError("data y contains NaN or Inf values")
    return x, y, names


def read_npz_inputs(
    path: Path, input_names: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], np.ndarray | None, list[str] | None]:
    """One array per teacher input (by name; ``x`` for a single-input teacher), y and class names.
    Integer arrays stay integers (int64: token ids, masks), others become float32."""
    summary = check_npz(path, input_names=input_names)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in input_names:
                key = name if name in summary.arrays or len(input_names) > 1 else "x"
                if key not in summary.arrays:
                    found = ", ".join(sorted(summary.arrays))
                    raise DataFileError(f"data has no array for the teacher's input {name!r} (found: {found})")
                arr = np.asarray(npz[key])
                arrays[name] = arr.astype(np.int64 if arr.dtype.kind in "iub" else np.float32, copy=False)
            y, names = _labels_and_names(npz, summary)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"data file {path.name!r} cannot be read: {exc}") from exc
    rows = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(rows.values())) > 1:
        raise DataFileError(
            "the input arrays have different numbers of samples ("
            + ", ".join(f"{k}: {n}" for k, n in rows.items())
            + ")"
        )
    for k, v in arrays.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).reshape(v.shape[0], -1).any(axis=1).sum())
            raise DataFileError(f"data {k!r} contains NaN or Inf values in {bad} of {v.shape[0]} samples")
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataFileError("data y contains NaN or Inf values")
    return arrays, y, names


def _is_integral(y: np.ndarray) -> bool:
    if y.dtype.kind in "iub":
        return True
    return bool(y.ndim == 1 and np.all(np.mod(y, 1) == 0))


def decide_task(y: np.ndarray | None, teacher_outputs: int, requested: str) -> Task:
    """classification when asked, when labels are integers, or (no labels) when the teacher has
    several outputs; regression otherwise."""
    if requested in ("classification", "regression"):
        return requested  # type: ignore[return-value]
    if y is not None:
        return "classification" if _is_integral(y) and y.ndim == 1 and teacher_outputs >= 2 else "regression"
    return "classification" if teacher_outputs >= 2 else "regression"


def prepare_labels(y: np.ndarray | None, task: Task, num_outputs: int) -> np.ndarray | None:
    if y is None:
        return None
    if task == "classification":
        if y.ndim != 1 or not _is_integral(y):
            raise InputError(f"classification needs integer class labels y of shape (N,); got {y.dtype} {y.shape}")
        labels = y.astype(np.int64)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_outputs:
            raise InputError(
                f"labels y range over [{lo}, {hi}] but the teacher has {num_outputs} outputs "
                f"(classes 0..{num_outputs - 1})"
            )
        return labels
    targets = y.astype(np.float32).reshape(y.shape[0], -1)
    if targets.shape[1] != num_outputs:
        raise InputError(
            f"regression targets y have {targets.shape[1]} columns but the teacher has {num_outputs} outputs"
        )
    return targets


def make_splits(
    n: int, labels: np.ndarray | None, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, np.ndarray], bool]:
    """Seeded train/val/test indices; stratified when every class has enough samples."""
    from sklearn.model_selection import train_test_split

    if n < MIN_SAMPLES:
        raise InputError(f"the transfer data has {n} samples; at least {MIN_SAMPLES} are needed to train and test")
    idx = np.arange(n)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise InputError(f"{n} samples leave nothing to train on after the validation and test splits")
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        n_classes = counts.size
        if counts.min() >= MIN_PER_CLASS_FOR_STRATIFY and min(n_test, n_val) >= n_classes:
            stratify = labels
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=stratify)
    strat_rest = None if stratify is None else stratify[rest]
    train, val = train_test_split(rest, test_size=n_val, random_state=seed + 1, stratify=strat_rest)
    splits = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    return splits, stratify is not None


def primary_targets(data: TransferData, split_outputs: Any) -> np.ndarray:
    """The primary teacher output of one split as the single-output steps train on it: (n, k) float32,
    probabilities as their logarithms (logits up to a per-row constant, which softmax ignores).
    Accepts the per-name dict of state.teacher_outputs[split] or, from older callers, one array."""
    if isinstance(split_outputs, np.ndarray):
        return split_outputs.astype(np.float32, copy=False)
    name = data.primary_output or next(iter(split_outputs))
    out = np.asarray(split_outputs[name])
    out = out.reshape(out.shape[0], -1).astype(np.float32, copy=False)
    if data.task == "classification" and out.shape[0] and _looks_like_probabilities(out):
        out = np.log(np.clip(out, 1e-12, None)).astype(np.float32)
    return out


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(out.shape[1] >= 2 and (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
