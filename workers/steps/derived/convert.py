"""A loaded teacher as a trainable torch graph (torch.fx.GraphModule of ordinary nn.Modules) for the
teacher-derived student family.

Routes, by teacher format:
- ONNX: onnx2torch.convert, with the operators onnx_ops.py adds (GlobalMaxPool, LSTM, GRU).
- TorchScript and torch.export (.pt2): already torch, but not prunable as they are: a ScriptModule runs
  no Python forward hooks and its submodules are not nn.Conv2d/nn.Linear (torch-pruning dispatches on
  those), and an ExportedProgram's module is aten calls on get_attr weights. Both are exported to ONNX
  in memory with torch.onnx.export (the TorchScript-based exporter, as export_onnx.py uses) and then take
  the ONNX route, so every derived student is the same kind of module. No file is unpickled.
- TFLite (float graphs): tflite2onnx, then the ONNX route (tflite_route.py mends the layout and the fixed
  batch). int8 flatbuffers are refused: their fused int8 kernels would need dequantizing first.

The converted graph is checked against the teacher's own runtime on a few real samples: every output
within ATOL + RTOL * |teacher| (the same kernels up to summation order), else ConversionError.
Module names are the FX node names (identifiers: onnx2torch names modules by ONNX node names such as
"stem/0/Conv"), so student and teacher layers are named alike and hint pairs match by name."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from edgedistill.workers.steps.derived.errors import ConversionError

OPSET = 17
PROBE = 8
ATOL = 1e-3
RTOL = 1e-3


@dataclass
class Converted:
    """The teacher as torch: `module` takes the teacher's inputs positionally (in teacher.io order) and
    returns its outputs (a tensor for one, a tuple/list for several) in teacher.io order."""

    module: fx.GraphModule
    route: str  # how it was converted, in words
    ops: dict[str, int]  # ONNX operator -> node count in the converted graph
    added_ops: list[str]  # operators converted by onnx_ops.py (not onnx2torch itself)
    max_abs_diff: dict[str, float]  # per output, converted vs the teacher's runtime on PROBE samples
    input_dtypes: list[str] = field(default_factory=list)
    # what the route's mending added to the graph and the teacher never computes (macs, params per
    # sample; the TFLite route's channel-padding convs): taken off the teacher's cost in build.py
    mended_cost: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "onnx_ops": dict(sorted(self.ops.items())),
            "ops_added_here": self.added_ops,
            "max_abs_diff_vs_teacher": self.max_abs_diff,
        }


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]


def teacher_onnx(teacher: Any, probe: Mapping[str, np.ndarray]) -> tuple[Any, str]:
    """(onnx ModelProto, route in words) for a loaded teacher (workers.steps.teacher)."""
    import onnx

    from edgedistill.workers.steps.teacher import ExportedProgramTeacher, OnnxTeacher, TorchScriptTeacher

    if isinstance(teacher, OnnxTeacher):
        return onnx.load(str(teacher.path), load_external_data=True), "onnx2torch on the teacher's ONNX graph"
    if isinstance(teacher, (TorchScriptTeacher, ExportedProgramTeacher)):
        return torch_to_onnx(teacher, probe), f"{teacher.format} -> torch.onnx.export (dynamo=False) -> onnx2torch"
    fmt = getattr(teacher, "format", type(teacher).__name__)
    if fmt == "tflite":
        from edgedistill.workers.steps.derived.tflite_route import tflite_to_onnx

        return tflite_to_onnx(teacher), "tflite2onnx (NHWC input, batch axis freed) -> onnx2torch"
    raise ConversionError(f"a {fmt} teacher has no route to a trainable torch graph")


def torch_to_onnx(teacher: Any, probe: Mapping[str, np.ndarray]) -> Any:
    """A TorchScript / torch.export teacher as an ONNX ModelProto (inputs and outputs by the teacher's
    names, dynamic batch unless the teacher's is fixed). Also the teacher_int8 step's route."""
    import onnx

    specs = teacher.io.inputs
    fixed = teacher.fixed_batch
    n = fixed or 2
    args = tuple(
        torch.as_tensor(np.ascontiguousarray(np.asarray(probe[s.name])[:n], dtype=np.dtype(s.dtype))) for s in specs
    )
    inputs = [s.name for s in specs]
    outputs = [o.name for o in teacher.io.outputs]
    axes = None if fixed else {name: {0: "batch"} for name in [*inputs, *outputs]}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                teacher._module, args, buf,  # type: ignore[arg-type]  # file objects are accepted
                dynamo=False, opset_version=OPSET, input_names=inputs,
                output_names=outputs, dynamic_axes=axes,
            )  # fmt: skip
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx.export cannot export the {teacher.format} teacher: {_first_line(exc)}"
        ) from exc
    return onnx.load_from_string(buf.getvalue())


def _rename_modules(gm: fx.GraphModule) -> fx.GraphModule:
    """Every call_module target renamed to its node's name (an identifier)."""
    root = nn.Module()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            root.add_module(node.name, gm.get_submodule(str(node.target)))
            node.target = node.name
    initializers = getattr(gm, "initializers", None)
    if isinstance(initializers, nn.Module):
        root.add_module("initializers", initializers)
    graph = gm.graph
    return fx.GraphModule(root, graph)


def as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def convert_teacher(teacher: Any, probe: Mapping[str, np.ndarray]) -> Converted:
    """The teacher as a checked, trainable torch graph (module docstring); ConversionError with the
    reason when any part fails."""
    from edgedistill.workers.steps.derived import onnx_ops
    from edgedistill.workers.steps.derived.onnx2torch_import import import_onnx2torch
    from edgedistill.workers.steps.derived.tflite_route import mended_cost

    model, route = teacher_onnx(teacher, probe)
    ops = Counter(node.op_type for node in model.graph.node)
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise ConversionError(f"the teacher's graph uses operators of other domains ({', '.join(foreign)})")
    onnx2torch = import_onnx2torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = onnx2torch.convert(model)
    except NotImplementedError as exc:
        raise ConversionError(f"onnx2torch cannot convert the teacher: {_first_line(exc)}") from exc
    except Exception as exc:
        raise ConversionError(f"onnx2torch failed on the teacher: {_first_line(exc)}") from exc
    gm = _rename_modules(gm).eval()
    diffs = check_against_teacher(gm, teacher, probe)
    return Converted(
        module=gm,
        route=route,
        ops=dict(ops),
        added_ops=sorted(op for op in ops if op in onnx_ops.ADDED or op in onnx_ops.REPLACED),
        max_abs_diff=diffs,
        input_dtypes=[s.dtype for s in teacher.io.inputs],
        mended_cost=mended_cost(model),
    )


def probe_args(teacher: Any, probe: Mapping[str, np.ndarray], n: int = PROBE) -> tuple[torch.Tensor, ...]:
    """The first n probe samples (the teacher's fixed batch when it has one) as tensors in the teacher's
    input dtypes, in teacher.io order."""
    n = teacher.fixed_batch or n
    out = []
    for s in teacher.io.inputs:
        arr = np.asarray(probe[s.name])[:n]
        if arr.shape[0] < n:  # a fixed batch larger than the probe: repeat the last sample
            arr = np.concatenate([arr, np.repeat(arr[-1:], n - arr.shape[0], axis=0)])
        out.append(torch.as_tensor(np.ascontiguousarray(arr, dtype=np.dtype(s.dtype))))
    return tuple(out)


def check_against_teacher(gm: nn.Module, teacher: Any, probe: Mapping[str, np.ndarray]) -> dict[str, float]:
    args = probe_args(teacher, probe)
    try:
        with torch.no_grad():
            got = as_tuple(gm(*args))
    except Exception as exc:
        raise ConversionError(f"the converted teacher fails to run: {_first_line(exc)}") from exc
    want = teacher.predict_all({s.name: a.numpy() for s, a in zip(teacher.io.inputs, args, strict=True)})
    if len(got) != len(teacher.io.outputs):
        raise ConversionError(
            f"the converted teacher returns {len(got)} outputs; the teacher has {len(teacher.io.outputs)}"
        )
    diffs: dict[str, float] = {}
    for spec, g in zip(teacher.io.outputs, got, strict=True):
        w = np.asarray(want[spec.name])
        a = g.detach().cpu().numpy()
        if a.shape != w.shape:
            raise ConversionError(f"output {spec.name!r}: converted shape {a.shape}, teacher {w.shape}")
        diff = np.abs(a.astype(np.float64) - w.astype(np.float64))
        if not np.all(diff <= ATOL + RTOL * np.abs(w)):
            raise ConversionError(
                f"output {spec.name!r}: the converted teacher differs from the teacher by up to {float(diff.max()):.3g}"
            )
        diffs[spec.name] = float(diff.max()) if diff.size else 0.0
    return diffs
