"""Read an exported model back from its file: input/output signature, int8 quantization parameters
and the ops it contains. Artifacts describe what is really in the file, never what we asked for.

.onnx files are parsed with the onnx package, .tflite files with ai-edge-litert's flatbuffer schema
(no interpreter, no delegate): the op list then names exactly the builtin ops a runtime must register.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import PipelineError

# TFLite TensorType enum -> numpy dtype name (the types our int8/float artifacts use; others by enum name).
_TFLITE_NUMPY_NAMES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def _scalar_or_list(values: Any) -> float | int | list[float] | list[int] | None:
    """Per-tensor parameters as one number, per-channel ones as a list; None when absent."""
    if values is None:
        return None
    arr = np.asarray(values).reshape(-1)
    if arr.size == 0:
        return None
    items = [v.item() for v in arr]
    return items[0] if len(items) == 1 else items


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------


def _read_tflite(path: Path) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    try:
        return flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    except Exception as exc:
        raise PipelineError(f"{path.name} is not a readable TFLite flatbuffer: {exc}") from exc


def _tflite_tensor(model: Any, subgraph: Any, index: int) -> dict[str, Any]:
    from ai_edge_litert.tools import flatbuffer_utils

    t = subgraph.tensors[index]
    type_name = flatbuffer_utils.type_to_name(t.type)
    info: dict[str, Any] = {
        "name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
        "shape": [int(d) for d in (t.shape if t.shape is not None else [])],
        "dtype": _TFLITE_NUMPY_NAMES.get(type_name, type_name.lower()),
    }
    q = t.quantization
    scale = _scalar_or_list(q.scale) if q is not None else None
    if scale is not None:
        info["quantization"] = {"scale": scale, "zero_point": _scalar_or_list(q.zeroPoint)}
    return info


def tflite_op_sequence(path: Path) -> list[str]:
    """Builtin op names of every operator in execution order (main subgraph first)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = _read_tflite(path)
    names: list[str] = []
    for sg in model.subgraphs:
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            if code.customCode:
                raw = code.customCode
                names.append("CUSTOM:" + (raw.decode() if isinstance(raw, bytes) else str(raw)))
            else:
                names.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or f"UNKNOWN_{op.opcodeIndex}")
    return names


def tflite_ops(path: Path) -> list[str]:
    """The distinct builtin op names the model uses (what a TFLM op resolver must register)."""
    return sorted(set(tflite_op_sequence(path)))


def describe_tflite(path: Path) -> dict[str, Any]:
    """Signature (names, shapes, dtypes, int8 scale/zero-point of I/O) and ops, read from the file."""
    model = _read_tflite(path)
    if not model.subgraphs:
        raise PipelineError(f"{path.name} has no subgraph")
    sg = model.subgraphs[0]
    inputs = [_tflite_tensor(model, sg, i) for i in sg.inputs]
    outputs = [_tflite_tensor(model, sg, i) for i in sg.outputs]
    quant: dict[str, Any] = {}
    for role, tensors in (("input", inputs), ("output", outputs)):
        if tensors and "quantization" in tensors[0] and tensors[0]["dtype"] in ("int8", "uint8"):
            quant[role] = {"dtype": tensors[0]["dtype"], **tensors[0]["quantization"]}
    op_seq = tflite_op_sequence(path)
    return {
        "signature": {"inputs": inputs, "outputs": outputs},
        "io_quantization": quant or None,
        "ops": sorted(set(op_seq)),
        "op_count": len(op_seq),
    }


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


def _onnx_value(value: Any) -> dict[str, Any]:
    from onnx import helper

    tt = value.type.tensor_type
    dims: list[int | str] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return {
        "name": value.name,
        "shape": dims,
        "dtype": str(np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))),
    }


def _onnx_qparams(model: Any, node: Any) -> dict[str, Any] | None:
    """scale / zero_point of a QuantizeLinear or DequantizeLinear node, from the graph's initializers."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    out: dict[str, Any] = {"scale": _scalar_or_list(numpy_helper.to_array(inits[node.input[1]]))}
    if len(node.input) >= 3 and node.input[2] in inits:
        zp = numpy_helper.to_array(inits[node.input[2]])
        out["zero_point"] = _scalar_or_list(zp)
        out["dtype"] = str(zp.dtype)
    return out


def describe_onnx(path: Path) -> dict[str, Any]:
    """Signature, opset, op types and (for QDQ models) the scale/zero-point applied to the graph's
    input and output, read back from the file."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise PipelineError(f"{path.name} is not a readable ONNX model: {exc}") from exc
    g = model.graph
    init_names = {i.name for i in g.initializer}
    inputs = [_onnx_value(v) for v in g.input if v.name not in init_names]
    outputs = [_onnx_value(v) for v in g.output]
    quant: dict[str, Any] = {}
    if inputs:
        for node in g.node:
            if node.op_type == "QuantizeLinear" and node.input and node.input[0] == inputs[0]["name"]:
                q = _onnx_qparams(model, node)
                if q:
                    quant["input"] = q
                break
    if outputs:
        for node in g.node:
            if node.op_type == "DequantizeLinear" and outputs[0]["name"] in node.output:
                q = _onnx_qparams(model, node)
                if q:
                    quant["output"] = q
                break
    opsets = {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import}
    return {
        "signature": {"inputs": inputs, "outputs": outputs},
        "io_quantization": quant or None,
        "ops": sorted({n.op_type for n in g.node}),
        "op_count": len(g.node),
        "opset": opsets.get("ai.onnx"),
    }
