"""The real TensorFlow Lite Micro interpreter (tflite-micro's Python build) on the host, as firmware runs
a model: one sample at a time, in a tensor arena it sizes by growing on allocation failure. Reports
the arena bytes TFLM actually allocated (its RecordingMicroAllocator), which the MCU RAM budget uses.
tflite-micro is imported only when a model is run."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import ArtifactRunError
from edgedistill.runtimes.common import (
    Standardization,
    apply_standardization,
    batch_size_of,
    check_batch,
    concat_outputs,
    declared_layout,
    decode_output,
    dequantize,
    encode_input,
    input_layouts,
    io_names,
    quantize,
    read_sidecar,
    resolve_layout,
    single_input_by_position,
    standardization_of,
    tensor_quantization,
    to_model_layout,
)

RUNTIME = "tflite-micro"
_FD_LOCK = threading.Lock()
_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")
# Host-side arena: start generous, grow on allocation failure (the host has RAM to spare; the figure
# reported is what TFLM actually used, not this size).
TFLM_START_ARENA = 1 << 20
TFLM_MAX_ARENA = 1 << 30


def installed() -> tuple[str, str] | None:
    try:
        if importlib.util.find_spec("tflite_micro") is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return RUNTIME, importlib.metadata.version("tflite-micro")
    except importlib.metadata.PackageNotFoundError:
        return RUNTIME, "unknown"


@contextlib.contextmanager
def capture_fds(fds: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Capture what C code writes to these file descriptors (Python's sys.stdout does not see it).
    The captured text is in the yielded list once the block exits. Process-wide: serialised by a lock."""
    import sys

    out: list[str] = []
    with _FD_LOCK, tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = [os.dup(fd) for fd in fds]
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            yield out
        finally:
            _flush_c_stdio()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            out.append(sink.read().decode("utf-8", errors="replace"))


def _flush_c_stdio() -> None:
    # C stdio buffers output written to a file; flush it before the descriptors are restored.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def parse_arena_total(text: str) -> int:
    m = _ARENA_RE.search(text)
    if not m:
        raise ArtifactRunError("TFLM did not report its arena use (no 'Arena allocation total' line)")
    return int(m.group(1))


def _tflm_interpreter(data: bytes, arena_size: int | None) -> tuple[Any, int]:
    from tflite_micro.python.tflite_micro import runtime

    size = arena_size or TFLM_START_ARENA
    last_log = ""
    while True:
        try:
            with capture_fds((2,)) as log:
                it = runtime.Interpreter.from_bytes(data, arena_size=size)
            return it, size
        except RuntimeError as exc:
            last_log = (log[0] if log else "").strip()
            if arena_size is not None or size >= TFLM_MAX_ARENA:
                raise ArtifactRunError(
                    f"TFLite Micro cannot allocate the model in a {size:,}-byte arena: {exc}. {last_log}"
                ) from exc
            size *= 4


def _tflm_log(it: Any) -> str:
    """What TFLM printed about a failed invoke (e.g. "Type 'INT32' is not supported by FLOOR_MOD."):
    it writes to stderr from C, so the failing invoke is repeated with stderr captured."""
    try:
        with capture_fds((2,)) as log, contextlib.suppress(Exception):
            it.invoke()
    except OSError:
        return ""
    lines = [ln.strip() for ln in (log[0] if log else "").splitlines() if ln.strip()]
    return (" (TFLM: " + " ".join(lines)[:400] + ")") if lines else ""


def run_tflm(
    path: Path, x: np.ndarray, arena_size: int | None = None, standardization: Standardization | None = None
) -> tuple[np.ndarray, int]:
    """Run every sample through the real TFLM interpreter (as firmware would: one at a time).
    Returns (float outputs, arena bytes TFLM allocated, from its RecordingMicroAllocator)."""
    meta = read_sidecar(path)
    x = apply_standardization(check_batch(x), standardization or standardization_of(meta))
    data = path.read_bytes()
    it, _ = _tflm_interpreter(data, arena_size)
    inp = it.get_input_details(0)
    out = it.get_output_details(0)
    in_shape = tuple(int(d) for d in inp["shape"])
    layout = resolve_layout(declared_layout(meta), x, in_shape)
    xm = to_model_layout(x, layout)
    if tuple(xm.shape[1:]) != in_shape[1:] or in_shape[0] != 1:
        raise ArtifactRunError(f"{path.name} expects input {list(in_shape)}, got per-sample {list(xm.shape[1:])}")
    q_in = tensor_quantization(inp)
    xm = quantize(xm, q_in) if q_in is not None else xm.astype(inp["dtype"], copy=False)
    q_out = tensor_quantization(out)
    outs: list[np.ndarray] = []
    arena: int | None = None
    for i in range(xm.shape[0]):
        try:
            it.set_input(xm[i : i + 1], 0)
            it.invoke()
        except Exception as exc:
            raise ArtifactRunError(f"TFLite Micro failed to run {path.name}: {exc}{_tflm_log(it)}") from exc
        raw = np.array(it.get_output(0))
        outs.append(dequantize(raw, q_out) if q_out is not None else raw.astype(np.float32))
        if arena is None:  # allocations are complete after the first invoke
            with capture_fds() as log:
                it.print_allocations()
            arena = parse_arena_total(log[0])
    assert arena is not None
    return np.concatenate(outs), arena


def run_tflm_all(
    path: Path,
    inputs: Mapping[str, np.ndarray],
    *,
    input_names: tuple[str, ...] | None = None,
    output_names: tuple[str, ...] | None = None,
    layouts: Mapping[str, str] | None = None,
    arena_size: int | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """run_tflm for several inputs and outputs by teacher name: (outputs, arena bytes TFLM used)."""
    data = path.read_bytes()
    n_in, n_out = _io_counts(data)
    it, _ = _tflm_interpreter(data, arena_size)
    meta = read_sidecar(path)
    ins = [it.get_input_details(i) for i in range(n_in)]
    outs_d = [it.get_output_details(i) for i in range(n_out)]
    in_names = io_names(path, meta, "inputs", [str(d.get("name", i)) for i, d in enumerate(ins)], input_names)
    out_names = io_names(path, meta, "outputs", [str(d.get("name", i)) for i, d in enumerate(outs_d)], output_names)
    lay = input_layouts(meta, layouts, in_names)
    inputs = single_input_by_position(inputs, in_names)
    standardization = standardization_of(meta)
    if len(in_names) == 1 and standardization is not None:
        inputs = {in_names[0]: apply_standardization(inputs[in_names[0]], standardization)}
    n = batch_size_of({k: inputs[k] for k in in_names})
    encoded = [encode_input(inputs[k], d, lay.get(k)) for k, d in zip(in_names, ins, strict=True)]
    result: dict[str, list[np.ndarray]] = {k: [] for k in out_names}
    arena: int | None = None
    for s in range(n):
        try:
            for i, x in enumerate(encoded):
                it.set_input(x[s : s + 1], i)
            it.invoke()
        except Exception as exc:
            raise ArtifactRunError(f"TFLite Micro failed to run {path.name}: {exc}{_tflm_log(it)}") from exc
        for i, (k, d) in enumerate(zip(out_names, outs_d, strict=True)):
            result[k].append(decode_output(np.array(it.get_output(i)), d))
        if arena is None:
            with capture_fds() as log:
                it.print_allocations()
            arena = parse_arena_total(log[0])
    assert arena is not None
    return concat_outputs(result), arena


def _io_counts(data: bytes) -> tuple[int, int]:
    """How many inputs and outputs the model has (TFLM's Python API cannot say): from the LiteRT
    interpreter's details, read without allocating tensors."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=data)
    except Exception as exc:
        raise ArtifactRunError(f"cannot read the model's inputs and outputs: {exc}") from exc
    return len(it.get_input_details()), len(it.get_output_details())
