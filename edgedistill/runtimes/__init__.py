"""Load and run an artifact of a kind: one wrapper module per runtime (onnx: onnxruntime, litert:
ai-edge-litert / tflite-runtime, tflm: the TFLite Micro host interpreter) plus the timing helpers.
The worker's verify and benchmark steps and the device agent use these same wrappers, so the host's
figures and a device's compare. Each wrapper imports its library only when a model is opened; this
package imports nothing of edgedistill but the contracts.

Which wrapper runs a kind is the registry's (edgedistill.contracts.artifact_kinds, ArtifactKind.wrapper).
A wrapper module provides:
    installed() -> (runtime name, version) | None      without importing the runtime
    open_model(path, *, threads, metadata) -> Model     metadata: the artifact's record (None: its sidecar)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.errors import ArtifactRunError
from edgedistill.runtimes.common import Metadata, Quantization


class Model(Protocol):
    """What every wrapper's open_model returns."""

    runtime_name: str
    runtime_version: str
    layout: str | None  # the layout its single input was fed in (None: the data's own)

    @property
    def input_quantization(self) -> Quantization | None: ...

    def predict(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray:
        """A float batch in the data's layout -> float outputs (one-input, one-output models)."""
        ...

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        """One runtime call on one sample, with the input already in the model's layout and dtype."""
        ...

    def predict_all(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by the teacher's name for inputs by the teacher's name."""
        ...

    def timed_call_all(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]: ...

    def io_quantization(self) -> dict[str, Any] | None:
        """Input name -> the quantization of each int8 input (None when all are float)."""
        ...


def wrapper(kind: str) -> ModuleType:
    """The wrapper module that runs artifacts of this kind."""
    try:
        found = artifact_kinds.get(kind)
    except KeyError:
        raise ArtifactRunError(f"artifact kind {kind!r} is not a model a runtime can run") from None
    if found.wrapper is None:
        raise ArtifactRunError(f"artifact kind {kind!r} is not a model a runtime can run")
    return importlib.import_module(f"{__name__}.{found.wrapper}")


def open_model(path: Path, kind: str, *, threads: int = 1, metadata: Metadata | None = None) -> Model:
    """Load an artifact of `kind` in its runtime; raises ArtifactRunError (RuntimeUnavailable when the
    runtime is not installed here)."""
    model: Model = wrapper(kind).open_model(path, threads=threads, metadata=metadata)
    return model


def installed_runtimes(kinds: Iterable[str] | None = None) -> dict[str, str]:
    """Wrapper name -> "runtime version" for the wrappers of these kinds (default: all) installed here."""
    names = kinds if kinds is not None else artifact_kinds.model_kinds()
    out: dict[str, str] = {}
    for kind in names:
        w = artifact_kinds.get(kind).wrapper
        if w is None or w in out:
            continue
        found = importlib.import_module(f"{__name__}.{w}").installed()
        if found is not None:
            out[w] = f"{found[0]} {found[1]}"
    return out


def runnable_kinds(kinds: Iterable[str]) -> list[str]:
    """The kinds among these whose runtime is installed here."""
    wanted = list(kinds)
    have = installed_runtimes(wanted)
    return [k for k in wanted if artifact_kinds.get(k).wrapper in have]
