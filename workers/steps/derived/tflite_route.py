"""A float TFLite teacher as an ONNX graph the derived family can convert to torch (convert.py).

tflite2onnx (PyPI, pure Python over the `tflite` flatbuffer schema) converts the flatbuffer's
operators to ONNX and moves channels-last tensors to ONNX's channels-first. What it leaves for this
module to mend, so the graph takes what the TFLite teacher takes:
- the input layout: the converted graph reads NCHW; a Transpose(0, 3, 1, 2) in front takes the
  teacher's NHWC input under the teacher's input name;
- SAME padding: tflite2onnx writes auto_pad SAME_UPPER, which onnx2torch does not take; the pads are
  written out from the (static) spatial shapes;
- zero channel padding (BlazeFace's shortcuts widen by padding channels with zeros): DepGraph cannot
  couple a Pad's input and output channels, so each such Pad becomes the 1x1 Conv that computes the
  same ([identity; 0] weights, no bias): trainable, and pruned like any Conv;
- the fixed batch: TFLite files are mostly batch 1, and tflite2onnx writes that 1 into every Reshape
  target; those become [-1, the rest of the batch-1 output shape], and the graph's I/O get a symbolic
  batch axis, so the derived student trains on batches.
It covers float models (Conv, DepthwiseConv, Add, Pad, MaxPool, Reshape, Concat, Relu and more;
BlazeFace converts whole). Quantized (int8) flatbuffers are refused: their fused int8 kernels would
need dequantizing first. convert.py checks the result against the teacher's own interpreter, as for
every route."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.workers.steps.derived.errors import ConversionError
from edgedistill.workers.steps.teacher_base import first_line

NHWC_TO_NCHW = (0, 3, 1, 2)


def tflite_to_onnx(teacher: Any) -> Any:
    """(onnx ModelProto) for a float TFLite teacher, taking its inputs in its layout and names."""
    import onnx

    if getattr(teacher, "quantized_io", None):
        raise ConversionError("an int8-quantized TFLite teacher: only float TFLite graphs convert to torch")
    try:
        import tflite2onnx
    except ImportError as exc:  # an optional part of the ml extra
        raise ConversionError("TFLite teachers convert with tflite2onnx, which is not installed") from exc
    import logging

    # it warns once per float16 weight tensor (BlazeFace: dozens); convert.py checks the numbers instead
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="tflite2onnx-") as tmp:
        dst = Path(tmp) / "teacher.onnx"
        try:
            tflite2onnx.convert(str(teacher.path), str(dst))
        except Exception as exc:  # its own errors and NotImplementedError for uncovered operators
            raise ConversionError(f"tflite2onnx cannot convert the teacher: {first_line(exc)}") from exc
        model = onnx.load(str(dst))
    _explicit_pads(model)
    _channel_pads_as_convs(model)
    _take_teacher_inputs(model, teacher)
    _batch_free(model)
    _name_outputs(model, teacher)
    return model


def _explicit_pads(model: Any) -> None:
    """auto_pad SAME_UPPER / SAME_LOWER / VALID of Conv and pooling nodes as explicit pads."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    shapes = {vi.name: _dims(vi) for vi in [*g.value_info, *g.input, *g.output]}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"NOTSET")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode == "NOTSET":
            continue
        spatial = [int(d) for d in shapes.get(node.input[0], [])[2:] if d is not None]
        kernel = attrs.get("kernel_shape") or list(weights.get(node.input[1], ())[2:])
        if not spatial or len(spatial) != len(shapes[node.input[0]]) - 2 or len(kernel) != len(spatial):
            raise ConversionError(f"{node.op_type} {node.name!r}: auto_pad {mode} on a tensor of unknown size")
        strides = attrs.get("strides") or [1] * len(spatial)
        dilations = attrs.get("dilations") or [1] * len(spatial)
        begin, end = [], []
        for size, k, st, dil in zip(spatial, kernel, strides, dilations, strict=True):
            total = 0 if mode == "VALID" else max(0, (-(-size // st) - 1) * st + (k - 1) * dil + 1 - size)
            low = total // 2 if mode != "SAME_LOWER" else total - total // 2
            begin.append(low)
            end.append(total - low)
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx.helper.make_attribute("pads", [*begin, *end])])


MENDED_COST_KEY = "edgedistill.mended_cost"  # metadata: what the added 1x1 convs cost (JSON: macs, params)


def _channel_pads_as_convs(model: Any) -> None:
    """Constant-zero Pads that only append channels (axis 1, NCHW) -> an equivalent 1x1 Conv. What those
    convs cost is written to the model's metadata (MENDED_COST_KEY): the teacher itself never paid it,
    so the derived family takes it off the teacher's cost before it sets the student's target."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    shapes = {vi.name: _dims(vi) for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    added = {"macs": 0, "params": 0}
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type != "Pad" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("mode", b"constant") not in (b"constant", "constant"):
            continue
        if len(node.input) > 2 and node.input[2]:
            value = inits.get(node.input[2])
            if value is None or np.any(numpy_helper.to_array(value) != 0):
                continue
        pads = numpy_helper.to_array(inits[node.input[1]]).tolist()
        rank = len(pads) // 2
        channels = (shapes.get(node.input[0]) or [None, None])[1]
        if rank != 4 or channels is None or pads[:rank][1] != 0:
            continue
        extra = [p for i, p in enumerate(pads) if i not in (1, rank + 1)]
        if any(extra) or pads[rank + 1] <= 0:
            continue
        weight = np.zeros((channels + pads[rank + 1], channels, 1, 1), np.float32)
        weight[np.arange(channels), np.arange(channels), 0, 0] = 1.0
        name = f"{node.name or node.output[0]}_as_conv"
        model.graph.initializer.append(numpy_helper.from_array(weight, f"{name}.weight"))
        conv = helper.make_node("Conv", [node.input[0], f"{name}.weight"], list(node.output), name=name)
        model.graph.node.remove(node)
        model.graph.node.insert(index, conv)
        out = shapes.get(node.output[0]) or []
        added["params"] += int(weight.size)
        if len(out) == 4 and all(d is not None for d in out[1:]):
            added["macs"] += int(np.prod([int(d) for d in out[1:]])) * channels  # type: ignore[arg-type]
    helper.set_model_props(model, {MENDED_COST_KEY: json.dumps(added)})


def mended_cost(model: Any) -> dict[str, int]:
    """What _channel_pads_as_convs added to this graph (macs, params); empty for any other graph."""
    raw = {p.key: p.value for p in model.metadata_props}.get(MENDED_COST_KEY)
    return {k: int(v) for k, v in json.loads(raw).items()} if raw else {}


def _dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _take_teacher_inputs(model: Any, teacher: Any) -> None:
    """Each graph input under the teacher's name; channels-first ones behind a Transpose from the
    teacher's channels-last shape."""
    from onnx import helper

    specs = teacher.io.inputs
    if len(model.graph.input) != len(specs):
        raise ConversionError(f"tflite2onnx gave {len(model.graph.input)} inputs; the teacher has {len(specs)}")
    nodes = []
    for graph_input, spec in zip(list(model.graph.input), specs, strict=True):
        want = [int(d) if d is not None else None for d in spec.shape]
        got = _dims(graph_input)
        if got == want:
            _rename(model, graph_input.name, spec.name)
            continue
        if len(want) == 4 and got == [want[i] for i in NHWC_TO_NCHW]:
            inner = f"{spec.name}__nchw"
            _rename(model, graph_input.name, inner)
            graph_input.name = spec.name
            for d, size in zip(graph_input.type.tensor_type.shape.dim, want, strict=True):
                d.dim_value = size or 0
            nodes.append(helper.make_node("Transpose", [spec.name], [inner], perm=list(NHWC_TO_NCHW)))
            continue
        raise ConversionError(f"input {spec.name!r}: tflite2onnx gave shape {got}, the teacher {want}")
    for node in reversed(nodes):
        model.graph.node.insert(0, node)


def _rename(model: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name == old:
            vi.name = new


def _batch_free(model: Any) -> None:
    """Reshape targets with a leading (batch) 1 written as [-1, rest of the batch-1 output shape], so
    the target stays a constant (onnxruntime's shape inference follows it); I/O batch axes symbolic."""
    import onnx
    from onnx import numpy_helper

    g = onnx.shape_inference.infer_shapes(model).graph
    shapes = {vi.name: _dims(vi) for vi in [*g.value_info, *g.output]}
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        out = shapes.get(node.output[0])
        if target.ndim != 1 or target.size < 2 or target[0] != 1:
            continue
        if not out or None in out or out[0] != 1:
            raise ConversionError(f"Reshape {node.name!r}: its batch-1 output shape is not known")
        name = f"{node.input[1]}__batch_free_{node.output[0]}"
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1, *out[1:]], np.int64), name))
        node.input[1] = name
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]  # shapes inferred for batch 1: stale now


def _name_outputs(model: Any, teacher: Any) -> None:
    outs = teacher.io.outputs
    if len(model.graph.output) != len(outs):
        raise ConversionError(f"tflite2onnx gave {len(model.graph.output)} outputs; the teacher has {len(outs)}")
    for graph_output, spec in zip(list(model.graph.output), outs, strict=True):
        _rename(model, graph_output.name, spec.name)
