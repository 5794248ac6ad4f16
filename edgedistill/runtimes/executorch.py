"""ExecuTorch ``.pte`` programs (XNNPACK delegate) in ExecuTorch's own Python runtime, imported only when
a program is opened (``pip install edgedistill[executorch]``; tested with executorch 1.5.1).

The program has no tensor names: inputs are taken in the order of the artifact metadata's
``teacher_io.inputs`` (the exporter records the teacher's names), outputs come back under
``teacher_io.outputs`` in the exported order. Images stay NCHW (no layout change), token ids and masks
stay integers, input and output are float (int8 lives inside the XNNPACK subgraphs).

Inputs are checked before ExecuTorch sees them (count, dtype, per-sample shape, batch bound): the C++
runtime only answers "set_inputs() failed with error 0x10" and logs the reason to stderr. A program
exported with a dynamic batch takes any batch up to the bound its metadata reports (sizes[0]); larger
batches are fed in chunks of that bound.

Threads: the pybindings have one process-wide thread pool; opening a model resets it to ``threads``
(never while another method runs: the wrappers are used from one thread, as the other runtimes are).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import ArtifactRunError, RuntimeUnavailable
from edgedistill.runtimes.common import read_sidecar

RUNTIME = "executorch"
BACKEND = "XnnpackBackend"
DEFAULT_BATCH = 256
INSTALL_HINT = "pip install 'executorch>=1.5,<1.6' (or edgedistill[executorch])"
Metadata = Mapping[str, Any]

# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) -> numpy.
SCALAR_TYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype(np.uint8),
    1: np.dtype(np.int8),
    2: np.dtype(np.int16),
    3: np.dtype(np.int32),
    4: np.dtype(np.int64),
    5: np.dtype(np.float16),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    11: np.dtype(np.bool_),
}


# --------------------------------------------------------------------------------------------------
# what is installed
# --------------------------------------------------------------------------------------------------


def installed() -> tuple[str, str] | None:
    """(runtime name, version) when executorch is importable here, else None (nothing imported)."""
    try:
        if importlib.util.find_spec("executorch") is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return RUNTIME, importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return RUNTIME, "unknown"


def _runtime_module() -> Any:
    try:
        return importlib.import_module("executorch.runtime")
    except ImportError as exc:
        raise RuntimeUnavailable(f"executorch is not installed: {INSTALL_HINT}") from exc


def set_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide thread pool (XNNPACK's kernels run on it)."""
    if threads < 1:
        raise ArtifactRunError(f"threads must be at least 1, got {threads}")
    try:
        portable_lib = importlib.import_module("executorch.extension.pybindings.portable_lib")
    except ImportError as exc:
        raise RuntimeUnavailable(f"executorch is not installed: {INSTALL_HINT}") from exc
    # The only thread knob the pybindings expose; "unsafe" because it must not race a running method.
    portable_lib._unsafe_reset_threadpool(int(threads))


# --------------------------------------------------------------------------------------------------
# the program's inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the program declares it: dtype and sizes (for a dynamic dim, its bound)."""

    dtype: np.dtype[Any]
    sizes: tuple[int, ...]

    @property
    def per_sample(self) -> tuple[int, ...]:
        return self.sizes[1:]


def _spec(info: Any) -> TensorSpec:
    code = int(info.dtype())
    if code not in SCALAR_TYPES:
        raise ArtifactRunError(f"the program has a tensor of ExecuTorch scalar type {code}, which no wrapper feeds")
    return TensorSpec(SCALAR_TYPES[code], tuple(int(d) for d in info.sizes()))


def _names(metadata: Metadata, role: str, count: int, given: Sequence[str] | None) -> list[str]:
    """Teacher names for the program's inputs/outputs: given, else the metadata's teacher_io, else
    input_0.. / output_0.. (a .pte stores no names)."""
    if given is not None:
        names = [str(n) for n in given]
    else:
        io = metadata.get("teacher_io")
        found = io.get(role) if isinstance(io, Mapping) else None
        names = [str(n) for n in found] if isinstance(found, list) else [f"{role[:-1]}_{i}" for i in range(count)]
    if len(names) != count:
        raise ArtifactRunError(f"the program has {count} {role}, names given for {len(names)}")
    return names


def _feed_array(x: Any, spec: TensorSpec, label: str) -> np.ndarray:
    """An input as the program's dtype: integer data for integer inputs (ids, masks; cast between widths),
    float data for float inputs (cast to the program's width); anything else is a readable error."""
    arr = np.asarray(x)
    want_int = np.issubdtype(spec.dtype, np.integer) or spec.dtype == np.bool_
    have_int = np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
    if want_int != have_int or not (have_int or np.issubdtype(arr.dtype, np.floating)):
        raise ArtifactRunError(f"{label}: dtype {arr.dtype}, the program takes {spec.dtype}")
    return np.ascontiguousarray(arr, dtype=spec.dtype)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


class ExecutorchModel:
    """One loaded ``forward`` method. ``program``: the .pte's bytes or its path. ``metadata``: the
    artifact's record (teacher_io names the inputs and outputs); None reads the path's sidecar."""

    runtime_name = RUNTIME
    layout: str | None = None  # .pte artifacts take the data's own layout (NCHW images)
    # Float input: the XNNPACK subgraphs quantize with the scale/zero-point stored in the program.
    input_quantization: None = None

    def __init__(
        self,
        program: bytes | Path,
        threads: int = 1,
        *,
        metadata: Metadata | None = None,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        rt = _runtime_module()
        found = installed()
        self.runtime_version = found[1] if found is not None else "unknown"
        self.name = program.name if isinstance(program, Path) else "the .pte program"
        if metadata is None:
            metadata = read_sidecar(program) if isinstance(program, Path) else {}
        set_threads(threads)
        self.threads = threads
        runtime = rt.Runtime.get()
        try:
            data = program if isinstance(program, bytes) else program.read_bytes()
            loaded = runtime.load_program(data)
            method = loaded.load_method("forward")
        except OSError as exc:
            raise ArtifactRunError(f"cannot read {self.name}: {exc}") from exc
        except Exception as exc:
            backends = ", ".join(sorted(runtime.backend_registry.registered_backend_names)) or "none"
            hint = "" if runtime.backend_registry.is_available(BACKEND) else f"; this build has no {BACKEND}"
            raise ArtifactRunError(
                f"ExecuTorch cannot load {self.name}: {exc} (registered backends: {backends}{hint})"
            ) from exc
        if method is None:
            raise ArtifactRunError(f"{self.name} has no 'forward' method")
        # The Program owns the method and the bytes it was loaded from: dropping it frees them under the
        # method (execute then segfaults).
        self.program = loaded
        self.method = method
        meta = method.metadata
        self.inputs = [_spec(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())]
        self.outputs = [_spec(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())]
        if not self.inputs or any(len(s.sizes) == 0 for s in self.inputs):
            raise ArtifactRunError(f"{self.name}: every input needs a batch dimension")
        self.input_names = _names(metadata, "inputs", len(self.inputs), input_names)
        self.output_names = _names(metadata, "outputs", len(self.outputs), output_names)
        # The bound of dim 0 (a fixed-batch program: its batch). Exported programs share one batch symbol.
        self.max_batch = min(s.sizes[0] for s in self.inputs)

    # checking and running one chunk ---------------------------------------------------------------

    def check_inputs(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The arrays as the program takes them, or ArtifactRunError naming the first mismatch:
        count, dtype, per-sample shape, batch size (the same for all inputs, 1..max_batch)."""
        if len(arrays) != len(self.inputs):
            raise ArtifactRunError(
                f"{self.name} takes {len(self.inputs)} inputs ({', '.join(self.input_names)}), got {len(arrays)}"
            )
        out: list[np.ndarray] = []
        for arr, spec, name in zip(arrays, self.inputs, self.input_names, strict=True):
            x = _feed_array(arr, spec, f"input {name!r}")
            if x.ndim != len(spec.sizes) or tuple(x.shape[1:]) != spec.per_sample:
                raise ArtifactRunError(
                    f"input {name!r}: per-sample shape {list(x.shape[1:])}, the program takes {list(spec.per_sample)}"
                )
            out.append(x)
        batches = {int(x.shape[0]) for x in out}
        if len(batches) != 1:
            raise ArtifactRunError(f"inputs must share one batch size, got {sorted(batches)}")
        n = batches.pop()
        if not 1 <= n <= self.max_batch:
            raise ArtifactRunError(f"batch of {n}: the program takes 1 to {self.max_batch} samples per call")
        return out

    def _execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        try:
            outs = self.method.execute([torch.from_numpy(x) for x in arrays])
        except RuntimeError as exc:  # the runtime logs the real reason to stderr only
            raise ArtifactRunError(
                f"ExecuTorch rejected the inputs of {self.name} ({exc}); a fixed-batch program takes exactly "
                f"{self.max_batch} samples per call"
            ) from exc
        # Copies: executorch 1.5 copies outputs out of its planned buffers, but older pybindings returned
        # views the next call overwrites; a few kilobytes per call keep that true whatever the version.
        return [np.array(o.numpy(), copy=True) for o in outs]

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """The first output for one float batch within the program's bound (no chunking)."""
        return self._execute(self.check_inputs([x]))[0]

    def run_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH) -> list[np.ndarray]:
        """Every output, in the exported order, for inputs in the program's order; any batch size
        (chunks of at most the program's bound)."""
        if len(arrays) != len(self.inputs):
            self.check_inputs(arrays)  # raises the count error
        n = int(np.asarray(arrays[0]).shape[0]) if np.asarray(arrays[0]).ndim else 0
        if n == 0:
            raise ArtifactRunError(f"expected a non-empty batch for {self.name}")
        step = max(1, min(batch_size, self.max_batch))
        parts: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for s in range(0, n, step):
            chunk = self.check_inputs([np.asarray(a)[s : s + step] for a in arrays])
            for part, out in zip(parts, self._execute(chunk), strict=True):
                part.append(out)
        return [np.concatenate(p) for p in parts]

    # the wrapper interface (the same as the onnx and litert wrappers') ----------------------------

    def _single_float(self) -> None:
        if len(self.inputs) != 1 or not np.issubdtype(self.inputs[0].dtype, np.floating):
            raise ArtifactRunError(
                f"{self.name} takes {len(self.inputs)} input(s) of {', '.join(str(s.dtype) for s in self.inputs)}; "
                "predict feeds one float batch (integer or several inputs go by name: predict_all)"
            )

    def predict(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """A float batch in the data's layout -> the first output as float32."""
        self._single_float()
        return self.run_arrays([x], batch_size)[0].astype(np.float32, copy=False)

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        """One execute on one sample, the input already checked and converted."""
        self._single_float()
        return self._timed(self.check_inputs([np.asarray(x1)[:1]]))

    def _ordered(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        names = self.input_names
        if len(names) == 1 and names[0] not in inputs and len(inputs) == 1:
            return [next(iter(inputs.values()))]  # one array for a one-input program: its input
        missing = [k for k in names if k not in inputs]
        if missing:
            raise ArtifactRunError(f"{self.name} takes inputs {missing} that the data does not have")
        return [inputs[k] for k in names]

    def predict_all(self, inputs: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH) -> dict[str, np.ndarray]:
        """Every output by the teacher's name for inputs by the teacher's name; float outputs as float32,
        integer outputs (class indices) as integers."""
        outs = self.run_arrays(self._ordered(inputs), batch_size)
        return {
            name: o if np.issubdtype(o.dtype, np.integer) else o.astype(np.float32, copy=False)
            for name, o in zip(self.output_names, outs, strict=True)
        }

    def timed_call_all(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        return self._timed(self.check_inputs([np.asarray(a)[:1] for a in self._ordered(inputs)]))

    def _timed(self, arrays: list[np.ndarray]) -> Callable[[], Any]:
        import torch

        tensors = [torch.from_numpy(a) for a in arrays]
        method = self.method
        return lambda: method.execute(tensors)

    def io_quantization(self) -> dict[str, Any] | None:
        return None


def open_model(path: Path | bytes, *, threads: int = 1, metadata: Metadata | None = None) -> ExecutorchModel:
    """The wrapper entry point: a .pte (path or bytes) loaded in ExecuTorch's runtime."""
    return ExecutorchModel(path, threads, metadata=metadata)


def run_executorch(program: Path | bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    return ExecutorchModel(program, threads).predict(x)
