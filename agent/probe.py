"""The probe file every job ships (probe.npz: test inputs `x`, the host's outputs `out_<variant>`) and
the comparison of the device's outputs with the host's."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.agent.errors import AgentError
from edgedistill.contracts import artifact_kinds

# Float artifacts are compared with the float student; int8 ones with the host's run of the same file.
FLOAT_REFERENCE = "student_fp32"


@dataclass(frozen=True)
class Probe:
    x: np.ndarray
    outputs: dict[str, np.ndarray]  # variant (onnx_int8, tflite_int8, student_fp32 ...) -> float outputs
    y: np.ndarray | None

    def reference_for(self, kind: str) -> tuple[str, np.ndarray]:
        """(variant, host outputs) to compare an artifact of this kind with."""
        variant = reference_variant(self.outputs, kind)
        return variant, self.outputs[variant]


def reference_variant(outputs: Mapping[str, Any], kind: str) -> str:
    """The probe variant whose host outputs an artifact of this kind is compared with: its own, else the
    float student's for fp32 artifacts."""
    if kind in outputs:
        return kind
    found = artifact_kinds.BY_NAME.get(kind)
    if found is not None and found.precision == "fp32" and FLOAT_REFERENCE in outputs:
        return FLOAT_REFERENCE
    have = ", ".join(sorted(outputs)) or "none"
    raise AgentError(f"the probe has no host outputs for {kind} (it has: {have})")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of probe.npz, read without unpickling anything (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise AgentError(f"cannot read the probe file {path.name}: {exc}") from exc


def load_probe(path: Path) -> Probe:
    """The single-input probe: x and out_<variant>."""
    return parse_probe(read_arrays(path), path)


def parse_probe(arrays: dict[str, np.ndarray], path: Path) -> Probe:
    if "x" not in arrays:
        raise AgentError(f"the probe file {path.name} has no 'x' array")
    x = np.ascontiguousarray(arrays["x"], dtype=np.float32)
    outputs = {
        name.removeprefix("out_"): np.asarray(a, dtype=np.float32)
        for name, a in arrays.items()
        if name.startswith("out_")
    }
    for name, out in outputs.items():
        if out.shape[0] != x.shape[0]:
            raise AgentError(f"probe output {name} has {out.shape[0]} rows for {x.shape[0]} inputs")
    return Probe(x=x, outputs=outputs, y=arrays.get("y"))


@dataclass(frozen=True)
class Agreement:
    samples: int
    agreement: float | None  # top-1 agreement (classification), else None
    max_abs_diff: float
    mean_abs_diff: float
    reference_max_abs: float  # max |host output|: the scale max_abs_diff is judged against
    non_finite: int = 0  # device outputs that were NaN or infinite


def is_classification(task: str | None, reference: np.ndarray, y: np.ndarray | None) -> bool:
    """Top-1 agreement means something for classifiers only. The job's task decides; without it, several
    outputs per sample and integer (or no) labels read as classification."""
    if task is not None:
        return task == "classification"
    if reference.ndim != 2 or reference.shape[1] < 2:
        return False
    return y is None or np.issubdtype(y.dtype, np.integer)


def compare(device: np.ndarray, host: np.ndarray, *, classification: bool) -> Agreement:
    device = np.asarray(device, dtype=np.float32)
    host = np.asarray(host, dtype=np.float32)
    if device.shape != host.shape:
        raise AgentError(f"the model's outputs have shape {list(device.shape)}, the host's {list(host.shape)}")
    diff = np.abs(device.astype(np.float64) - host.astype(np.float64))
    non_finite = int(np.count_nonzero(~np.isfinite(diff)))
    if non_finite:  # NaN/inf outputs: the largest float32 stands for "infinitely far" (JSON has no inf)
        diff = np.where(np.isfinite(diff), diff, float(np.finfo(np.float32).max))
    max_diff, mean_diff = float(diff.max()), float(diff.mean())
    agreement = None
    if classification:
        d = device.reshape(device.shape[0], -1)
        h = host.reshape(host.shape[0], -1)
        agreement = float(np.mean(np.argmax(d, axis=1) == np.argmax(h, axis=1)))
    return Agreement(
        samples=int(host.shape[0]),
        agreement=agreement,
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        reference_max_abs=float(np.max(np.abs(host))),
        non_finite=non_finite,
    )
