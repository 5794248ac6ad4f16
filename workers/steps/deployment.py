"""Deployment facts of one exported artifact, read from the artifact file itself (not from what the
exporter meant to write): input/output names, dtypes, shapes, layout, int8 scale/zero-point, and a
runnable snippet for its runtime.

- `.onnx`: the graph's inputs/outputs (onnx), snippet for onnxruntime.
- `.tflite`: ai-edge-litert's interpreter input/output details (quantization included), snippet for
  LiteRT in Python.
- TFLM C source (`.cc`): the model bytes parsed back out of the C array, then as `.tflite`, plus the
  ops the firmware's MicroMutableOpResolver must register; C header (`.h`): its #defines. Both get a
  C++ TFLM snippet.

`facts_for(path)` is called once per artifact by workers/steps/artifacts.record_artifact (stored
under metadata["deployment"] and so in each `<file>.json` sidecar); `how_to_run(artifacts)` is the
"How to run" part of summary.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_C_BYTE = re.compile(r"0x([0-9a-fA-F]{2})")
_C_ARRAY = re.compile(r"const unsigned char (\w+)_model\[\]\s*=\s*\{(.*?)\};", re.DOTALL)


def layout_of(shape: list[Any]) -> str:
    """NCHW / NHWC for 4-D image tensors (channels are the small axis), NF for (batch, features)."""
    if len(shape) == 2:
        return "NF"
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
        c_first, c_last = shape[1] <= 4 < min(shape[2], shape[3]), shape[3] <= 4 < min(shape[1], shape[2])
        if c_first and not c_last:
            return "NCHW"
        if c_last and not c_first:
            return "NHWC"
    return "as-is"


def _example_shape(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


def _onnx_tensors(values: Any) -> list[dict[str, Any]]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        shape: list[Any] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
        out.append({"name": v.name, "dtype": dtype, "shape": shape, "layout": layout_of(shape), "quantization": None})
    return out


def onnx_facts(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = _onnx_tensors(v for v in model.graph.input if v.name not in initializers)
    outputs = _onnx_tensors(model.graph.output)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node)
    return {
        "runtime": "onnxruntime",
        "inputs": inputs,
        "outputs": outputs,
        "note": "int8 inside (QDQ), float32 in and out" if qdq else "float32 throughout",
        "snippet": {"language": "python", "code": _onnx_snippet(path.name, inputs, outputs)},
    }


def _onnx_snippet(filename: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> str:
    feeds = ", ".join(f'"{t["name"]}": x{i}' for i, t in enumerate(inputs))
    lines = [
        "import numpy as np",
        "import onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{filename}", providers=["CPUExecutionProvider"])',
    ]
    for i, t in enumerate(inputs):
        lines.append(
            f"x{i} = np.zeros({_example_shape(t['shape'])}, dtype=np.{t['dtype']})  # {t['layout']}: your input here"
        )
    names = ", ".join(f'"{t["name"]}"' for t in outputs)
    lines.append(f"outputs = session.run([{names}], {{{feeds}}})")
    lines.append(f"print(outputs[0].shape)  # {_example_shape(outputs[0]['shape']) if outputs else ()}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# TFLite (LiteRT) and TFLM
# --------------------------------------------------------------------------------------------------


def _tflite_tensors(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for d in details:
        shape = [int(s) for s in d["shape"]]
        scales = [float(s) for s in d["quantization_parameters"]["scales"]]
        zeros = [int(z) for z in d["quantization_parameters"]["zero_points"]]
        quant = None
        if scales:
            quant = (
                {"scale": scales[0], "zero_point": zeros[0]}
                if len(scales) == 1
                else {"scales": scales, "zero_points": zeros}
            )
        out.append({
            "name": str(d["name"]), "dtype": np.dtype(d["dtype"]).name, "shape": shape, "layout": layout_of(shape),
            "quantization": quant,
        })  # fmt: skip
    return out


def _tflite_io(model: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    return _tflite_tensors(it.get_input_details()), _tflite_tensors(it.get_output_details())


def tflite_ops(model: bytes) -> list[str]:
    """The builtin op names the model uses, in first-use order (what TFLM's op resolver must register)."""
    from ai_edge_litert.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    names: list[str] = []
    for sg in m.subgraphs:
        for op in sg.operators or []:
            name = str(flatbuffer_utils.opcode_to_name(m, op.opcodeIndex))
            if name not in names:
                names.append(name)
    return names


def tflite_facts(path: Path) -> dict[str, Any]:
    inputs, outputs = _tflite_io(path.read_bytes())
    return {
        "runtime": "ai-edge-litert",
        "inputs": inputs,
        "outputs": outputs,
        "note": _io_note(inputs),
        "snippet": {"language": "python", "code": _litert_snippet(path.name, inputs)},
    }


def _io_note(inputs: list[dict[str, Any]]) -> str:
    layout = inputs[0]["layout"] if inputs else "as-is"
    parts = []
    if layout == "NHWC":
        parts.append("channels-last input: pass x.transpose(0, 2, 3, 1) of NCHW data")
    if any(t["quantization"] for t in inputs) and any(t["dtype"] == "int8" for t in inputs):
        parts.append("int8 input/output: quantize with the input's scale/zero-point, dequantize the output's")
    return "; ".join(parts) or "float32 in and out"


def _litert_snippet(filename: str, inputs: list[dict[str, Any]]) -> str:
    t: dict[str, Any] = inputs[0] if inputs else {"shape": [1], "layout": "as-is", "dtype": "float32"}
    lines = [
        "import numpy as np",
        "from ai_edge_litert.interpreter import Interpreter",
        "",
        f'interpreter = Interpreter(model_path="{filename}")',
        "interpreter.allocate_tensors()",
        "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
        f"x = np.zeros({_example_shape(t['shape'])}, dtype=np.float32)  # {t['layout']}: your input here",
    ]
    if t["dtype"] == "int8":
        lines += [
            'scale, zero_point = inp["quantization"]  # read from the model, never hard-coded',
            "x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)",
        ]
    lines += [
        'interpreter.set_tensor(inp["index"], x)',
        "interpreter.invoke()",
        'y = interpreter.get_tensor(out["index"])',
    ]
    if t["dtype"] == "int8":
        lines += ['scale, zero_point = out["quantization"]', "y = (y.astype(np.float32) - zero_point) * scale"]
    lines.append("print(y)")
    return "\n".join(lines) + "\n"


def _resolver_method(op: str) -> str:
    """CONV_2D -> AddConv2D, FULLY_CONNECTED -> AddFullyConnected (TFLM MicroMutableOpResolver)."""
    return "Add" + "".join(p.capitalize() if p.isalpha() else p for p in op.split("_"))


def c_array_bytes(source: str) -> tuple[str, bytes]:
    """(array name prefix, model bytes) of the `<name>_model[]` array in a generated C source."""
    m = _C_ARRAY.search(source)
    if m is None:
        raise ValueError("no `const unsigned char <name>_model[] = {...};` array in the C source")
    return m.group(1), bytes(int(h, 16) for h in _C_BYTE.findall(m.group(2)))


def c_source_facts(path: Path) -> dict[str, Any]:
    name, model = c_array_bytes(path.read_text(encoding="utf-8"))
    inputs, outputs = _tflite_io(model)
    ops = tflite_ops(model)
    return {
        "runtime": "tflite-micro",
        "inputs": inputs,
        "outputs": outputs,
        "model_bytes": len(model),
        "ops": ops,
        "note": _io_note(inputs),
        "snippet": {"language": "cpp", "code": _tflm_snippet(name, ops, inputs, outputs)},
    }


def _define(header: str, name: str) -> str | None:
    m = re.search(rf"^#define {name} (.+)$", header, re.MULTILINE)
    return m.group(1).strip() if m else None


def c_header_facts(path: Path) -> dict[str, Any]:
    header = path.read_text(encoding="utf-8")
    m = re.search(r"extern const unsigned char (\w+)_model\[\];", header)
    if m is None:
        raise ValueError("no `extern const unsigned char <name>_model[];` in the header")
    name, up = m.group(1), m.group(1).upper()
    tensors = []
    for side in ("INPUT", "OUTPUT"):
        shape_text = _define(header, f"{up}_{side}_SHAPE") or "{}"
        shape = [int(d) for d in re.findall(r"-?\d+", shape_text)]
        scale, zero = _define(header, f"{up}_{side}_SCALE"), _define(header, f"{up}_{side}_ZERO_POINT")
        dtype = re.search(rf"^// {side.capitalize()}: (\w+)", header, re.MULTILINE)
        quant = None
        if scale is not None and zero is not None:
            quant = {"scale": float(scale.rstrip("f")), "zero_point": int(zero.strip("()"))}
        tensors.append({
            "name": f"{up}_{side}", "dtype": dtype.group(1) if dtype else "unknown", "shape": shape,
            "layout": layout_of(shape), "quantization": quant,
        })  # fmt: skip
    arena = _define(header, f"{up}_TENSOR_ARENA_SIZE")
    return {
        "runtime": "tflite-micro",
        "inputs": [tensors[0]],
        "outputs": [tensors[1]],
        "tensor_arena_bytes": int(arena) if arena and arena.isdigit() else None,
        "note": _io_note([tensors[0]]),
        "snippet": {"language": "cpp", "code": _tflm_snippet(name, None, [tensors[0]], [tensors[1]])},
    }


def _tflm_snippet(name: str, ops: list[str] | None, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> str:
    up = name.upper()
    int8_in = bool(inputs) and inputs[0]["dtype"] == "int8"
    int8_out = bool(outputs) and outputs[0]["dtype"] == "int8"
    adds = (
        [f"  resolver.{_resolver_method(op)}();" for op in ops]
        if ops
        else [f"  // register each op the model uses ({name}_model.cc's facts list them), e.g. resolver.AddConv2D();"]
    )
    n_ops = len(ops) if ops else 16
    lines = [
        f'#include "{name}_model.h"',
        "#include <cmath>",
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        '#include "tensorflow/lite/schema/schema_generated.h"',
        "",
        f"alignas(16) static uint8_t tensor_arena[{up}_TENSOR_ARENA_SIZE];",
        "",
        f"// x: {up}_INPUT_SIZE floats ({inputs[0]['layout'] if inputs else 'as-is'}); y: {up}_OUTPUT_SIZE floats.",
        "int run_model(const float* x, float* y) {",
        f"  const tflite::Model* model = tflite::GetModel({name}_model);",
        f"  static tflite::MicroMutableOpResolver<{n_ops}> resolver;",
        *adds,
        "  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));",
        "  if (interpreter.AllocateTensors() != kTfLiteOk) return -1;",
        "  TfLiteTensor* in = interpreter.input(0);",
    ]
    if int8_in:
        lines += [
            f"  for (int i = 0; i < {up}_INPUT_SIZE; ++i) {{",
            f"    long q = lroundf(x[i] / {up}_INPUT_SCALE) + {up}_INPUT_ZERO_POINT;",
            "    in->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));",
            "  }",
        ]
    else:
        lines.append(f"  for (int i = 0; i < {up}_INPUT_SIZE; ++i) in->data.f[i] = x[i];")
    lines += [
        "  if (interpreter.Invoke() != kTfLiteOk) return -2;",
        "  const TfLiteTensor* out = interpreter.output(0);",
    ]
    if int8_out:
        lines.append(
            f"  for (int i = 0; i < {up}_OUTPUT_SIZE; ++i)\n"
            f"    y[i] = (out->data.int8[i] - {up}_OUTPUT_ZERO_POINT) * {up}_OUTPUT_SCALE;"
        )
    else:
        lines.append(f"  for (int i = 0; i < {up}_OUTPUT_SIZE; ++i) y[i] = out->data.f[i];")
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------

_READERS = {".onnx": onnx_facts, ".tflite": tflite_facts, ".cc": c_source_facts, ".h": c_header_facts}


def facts_for(path: Path) -> dict[str, Any] | None:
    """The deployment facts of the artifact at path, None for files that are not models (report, probe).
    A model file that cannot be read gives {"error": reason}: the artifact stays, its facts say why."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        return None
    try:
        return reader(path)
    except Exception as exc:  # a reader failure must not lose the artifact itself
        return {"error": f"could not read {path.name}: {type(exc).__name__}: {exc}"}


def _tensor_line(t: dict[str, Any]) -> str:
    q = t.get("quantization")
    quant = ""
    if q and "scale" in q:
        quant = f", int8 scale {q['scale']:.6g} zero-point {q['zero_point']}"
    elif q:
        quant = f", per-channel ({len(q['scales'])} scales)"
    shape = "x".join(str(d) for d in t["shape"]) or "scalar"
    return f"`{t['name']}` {t['dtype']} [{shape}] {t['layout']}{quant}"


def how_to_run(artifacts: dict[str, Any]) -> str:
    """Markdown: per model artifact its inputs/outputs and the snippet. artifacts: kind -> record with
    .path and .metadata (workers.pipeline.context.ArtifactRecord)."""
    lines = ["## How to run", ""]
    for kind, art in artifacts.items():
        facts = (getattr(art, "metadata", None) or {}).get("deployment")
        if not facts:
            continue
        lines += [f"### {kind}: `{art.path.name}` ({facts.get('runtime', '')})", ""]
        if "error" in facts:
            lines += [facts["error"], ""]
            continue
        lines += [f"- input {_tensor_line(t)}" for t in facts["inputs"]]
        lines += [f"- output {_tensor_line(t)}" for t in facts["outputs"]]
        if facts.get("note"):
            lines.append(f"- {facts['note']}")
        if facts.get("tensor_arena_bytes"):
            lines.append(f"- tensor arena: {facts['tensor_arena_bytes']:,} bytes")
        if facts.get("ops"):
            lines.append(f"- ops: {', '.join(facts['ops'])}")
        snippet = facts["snippet"]
        lines += ["", f"```{snippet['language']}", snippet["code"].rstrip("\n"), "```", ""]
    return "\n".join(lines) if len(lines) > 2 else ""


__all__ = ["c_array_bytes", "facts_for", "how_to_run", "layout_of"]
