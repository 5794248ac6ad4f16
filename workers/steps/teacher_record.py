"""Tell the service a TorchScript / .pt2 teacher's signature once the worker knows it: ONNX and
TFLite signatures are read from the file at upload, torch teachers' only when a job loads them.

Sent as a progress event carrying ``teacher_signature`` (the recorder stores it on the model row, see
workers.persistence); kinds are left out: they are decided per job from the data and options."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts.signature import ModelSignature
from edgedistill.workers.pipeline.context import RunContext

SIGNATURE_KEY = "teacher_signature"
# where each format's signature comes from: declared by the file (.pt2) or observed on the data (TorchScript)
SOURCES = {"pt2": "declared", "torchscript": "observed"}


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def describe(sig: ModelSignature) -> str:
    ins = ", ".join(f"{t.name} {t.dtype} {_dims(t.shape)}" for t in sig.inputs)
    outs = ", ".join(f"{o.name} {o.dtype} {_dims(o.shape)}" for o in sig.outputs)
    return f"inputs {ins}; outputs {outs}"


def emit_teacher_signature(ctx: RunContext, teacher: Any, sig: ModelSignature) -> None:
    """One event for a torch teacher's signature (no-op for formats read at upload)."""
    source = SOURCES.get(str(teacher.format))
    if source is None:
        return
    outputs = tuple(o.model_copy(update={"kind": None, "scores": None}) for o in sig.outputs)
    bare = sig.model_copy(update={"outputs": outputs})
    how = "as the file declares it" if source == "declared" else "shapes and dtypes as run on this job's data"
    ctx.emit(
        "progress",
        {
            "message": f"teacher signature ({how}): {describe(bare)}",
            SIGNATURE_KEY: bare.model_dump(mode="json"),
            "signature_source": source,
        },
    )
