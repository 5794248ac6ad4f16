"""Multiply-accumulates per sample of an ONNX graph, from onnx shape inference (Conv, ConvTranspose,
Gemm, MatMul: the ops that dominate a model's cost)."""

from __future__ import annotations

import math
from typing import Any


def _dims(value_info: Any) -> tuple[int, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def count_onnx_macs(model: Any, input_name: str, per_sample_shape: tuple[int, ...]) -> int | None:
    """MACs for one sample, or None when a costly op's shapes cannot be inferred."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name == input_name:
            shape = inp.type.tensor_type.shape
            del shape.dim[:]
            for d in (1, *per_sample_shape):
                shape.dim.add().dim_value = d
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    g = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        shapes[vi.name] = _dims(vi)
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)

    total = 0
    for node in g.node:
        op = node.op_type
        if op not in {"Conv", "ConvTranspose", "Gemm", "MatMul"}:
            continue
        ins = [shapes.get(n) for n in node.input]
        out = shapes.get(node.output[0])
        if op == "Conv":
            w = ins[1] if len(ins) > 1 else None
            if w is None or out is None:
                return None
            total += math.prod(out) * math.prod(w[1:])
        elif op == "ConvTranspose":
            x, w = ins[0], ins[1] if len(ins) > 1 else None
            if x is None or w is None:
                return None
            total += math.prod(x) * math.prod(w[1:])
        elif op == "Gemm":
            a = ins[0]
            if a is None or out is None:
                return None
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[0] if trans_a else a[-1]
            total += math.prod(out) * k
        else:  # MatMul
            a = ins[0]
            if a is None or out is None:
                return None
            total += math.prod(out) * a[-1]
    return int(total)
