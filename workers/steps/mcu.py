"""The full-int8 TFLite model as C source for MCU firmware (kinds c_source, c_header).

`student_model.cc` holds `alignas(16) const unsigned char student_model[] = {...}` (TFLM reads the
flatbuffer in place; 16-byte alignment is what its schema's buffers assume) and its length.
`student_model.h` gives what firmware needs without parsing the model: array length, input/output
shapes and layout, int8 scale/zero-point read from the model, class labels and the tensor arena size.

Arena size: TFLM itself measures what the model needs (RecordingMicroAllocator, "Arena allocation
total"), run here with tflite-micro's reference kernels. `arena_reservation` adds a margin for what
that measurement cannot see on a device:
- CMSIS-NN kernels (which the built-in MCU profiles assume) ask for scratch buffers the reference
  kernels do not: an int16 im2col/column buffer of at most 2 x C_in x K_h x K_w values (4 bytes per
  element) per convolution, and a 4-byte-per-output-channel buffer for fully-connected layers. Scratch
  buffers are planned like activations, so only the largest one adds to the peak: we add that bound.
- 1 KiB for bookkeeping that differs between TFLM releases and kernel variants (persistent op data,
  a few tensor structs; ~200-700 bytes on the small models we measured).
- the total rounded up to 16 bytes, the arena alignment TFLM uses.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import class_labels, record_artifact, write_bytes_atomic

C_NAME = "student"
SOURCE_FILENAME = f"{C_NAME}_model.cc"
HEADER_FILENAME = f"{C_NAME}_model.h"
ARENA_ALIGNMENT = 16
ARENA_VERSION_MARGIN = 1024
BYTES_PER_LINE = 12
_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def align_up(n: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return int(math.ceil(n / alignment) * alignment)


def cmsis_scratch_bound(path: Path) -> int:
    """Upper bound of the largest scratch buffer CMSIS-NN kernels may request for this model (bytes)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    largest = 0
    for sg in model.subgraphs:
        for op in sg.operators or []:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
                continue
            shape = [int(d) for d in sg.tensors[op.inputs[1]].shape]
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(shape) == 4:
                # CONV_2D filter [C_out, K_h, K_w, C_in]; DEPTHWISE_CONV_2D filter [1, K_h, K_w, C]
                need = 4 * shape[1] * shape[2] * shape[3]
            elif name == "FULLY_CONNECTED" and len(shape) == 2:  # [C_out, C_in]
                need = 4 * shape[0]
            else:
                continue
            largest = max(largest, need)
    return largest


def arena_reservation(measured: int, path: Path) -> dict[str, Any]:
    """The arena size firmware should reserve for a model whose TFLM-measured arena is `measured`."""
    scratch = cmsis_scratch_bound(path)
    reserved = align_up(measured + scratch + ARENA_VERSION_MARGIN)
    return {
        "measured_bytes": int(measured),
        "cmsis_nn_scratch_bound_bytes": int(scratch),
        "version_margin_bytes": ARENA_VERSION_MARGIN,
        "reserved_bytes": reserved,
        "rule": "align16(measured + largest CMSIS-NN scratch bound + 1024)",
    }


def c_array_source(data: bytes, name: str, header: str) -> str:
    if not _C_IDENT.match(name):
        raise ValueError(f"{name!r} is not a C identifier")
    lines = []
    for i in range(0, len(data), BYTES_PER_LINE):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i : i + BYTES_PER_LINE]) + ",")
    body = "\n".join(lines)
    return (
        f'#include "{header}"\n\n'
        f"// TFLM reads the flatbuffer in place: keep it 16-byte aligned.\n"
        f"alignas(16) const unsigned char {name}_model[] = {{\n{body}\n}};\n"
        f"const unsigned int {name}_model_len = {len(data)};\n"
    )


def _c_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:  # UTF-8 bytes as octal escapes: valid in any C/C++ compiler and unambiguous
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def _labels_source(name: str, labels: list[str]) -> str:
    items = ",\n".join(f"  {_c_string(label)}" for label in labels)
    return f"\nconst char* const {name}_class_labels[] = {{\n{items},\n}};\n"


def _standardization_source(name: str, standardization: dict[str, list[float]]) -> str:
    mean = ", ".join(_float_literal(v) for v in standardization["mean"])
    std = ", ".join(_float_literal(v) for v in standardization["std"])
    return f"\nconst float {name}_input_mean[] = {{{mean}}};\nconst float {name}_input_std[] = {{{std}}};\n"


def _float_literal(v: float) -> str:
    text = f"{v:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _tensor_defines(prefix: str, t: dict[str, Any]) -> list[str]:
    shape = [int(d) for d in t["shape"]]
    q = t.get("quantization") or {}
    lines = [
        f"#define {prefix}_DIMS {len(shape)}",
        f"#define {prefix}_SHAPE {{{', '.join(str(d) for d in shape)}}}",
        f"#define {prefix}_SIZE {math.prod(shape)}",
    ]
    if "scale" in q:
        lines += [
            f"#define {prefix}_SCALE {_float_literal(float(q['scale']))}",
            f"#define {prefix}_ZERO_POINT ({int(q['zero_point'])})",
        ]
    return lines


def c_header(
    *,
    name: str,
    model_len: int,
    info: dict[str, Any],
    arena: dict[str, Any],
    labels: list[str] | None,
    provenance: list[str],
    standardization: dict[str, list[float]] | None = None,
) -> str:
    up = name.upper()
    guard = f"{up}_MODEL_H_"
    sig = info["signature"]
    inp, out = sig["inputs"][0], sig["outputs"][0]
    lines = [f"// {line}" for line in provenance]
    lines += [
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"extern const unsigned char {name}_model[];",
        f"extern const unsigned int {name}_model_len;",
        f"#define {up}_MODEL_LEN {model_len}",
        "",
        f"// Tensor arena. TFLM measured {arena['measured_bytes']} bytes; reserved = {arena['rule']}:",
        f"// + {arena['cmsis_nn_scratch_bound_bytes']} (largest CMSIS-NN scratch buffer, bound)"
        f" + {arena['version_margin_bytes']} (TFLM version/kernel bookkeeping), rounded up to 16.",
        "// Declare it as: alignas(16) static uint8_t tensor_arena[" + f"{up}_TENSOR_ARENA_SIZE];",
        f"#define {up}_TENSOR_ARENA_MEASURED {arena['measured_bytes']}",
        f"#define {up}_TENSOR_ARENA_SIZE {arena['reserved_bytes']}",
        "",
        f"// Input: {inp['dtype']}, layout {sig.get('layout', 'as-is')}"
        + (f" ({sig['input_mapping']})" if sig.get("input_mapping") else "")
        + ". Quantize: q = round(x / SCALE) + ZERO_POINT, saturated to [-128, 127].",
        *(
            [
                "// The int8 input holds standardised features: for feature i use",
                f"// x = (raw[i] - {name}_input_mean[i]) / {name}_input_std[i] in the formula above.",
                f"extern const float {name}_input_mean[];",
                f"extern const float {name}_input_std[];",
            ]
            if standardization is not None
            else []
        ),
        *_tensor_defines(f"{up}_INPUT", inp),
        "",
        f"// Output: {out['dtype']}. Dequantize: x = (q - ZERO_POINT) * SCALE.",
        *_tensor_defines(f"{up}_OUTPUT", out),
    ]
    # Models with several inputs/outputs: index i of the interpreter's input(i)/output(i), under the
    # teacher's names (teacher_io in the artifact metadata), each with its own shape and int8 parameters.
    names = info.get("teacher_io") or {}
    for role, tensors in (("INPUT", sig["inputs"]), ("OUTPUT", sig["outputs"])):
        teacher_names = names.get(role.lower() + "s") or []
        if len(tensors) < 2:
            continue
        for i, t in enumerate(tensors):
            label = teacher_names[i] if i < len(teacher_names) else t.get("name", "")
            lines += ["", f"// {role.lower()} {i}: teacher name {label!r}, {t['dtype']}"]
            lines += _tensor_defines(f"{up}_{role}{i}", t)
    if labels:
        lines += ["", f"#define {up}_NUM_CLASSES {len(labels)}", f"extern const char* const {name}_class_labels[];"]
    lines += ["", "#ifdef __cplusplus", '}  // extern "C"', "#endif", "", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def measure_arena(path: Path, x: Any) -> int:
    from edgedistill.runtimes.tflm import run_tflm

    _, arena = run_tflm(path, x[:1])
    return arena


class ExportCArray(Step):
    """Reads state.artifacts["tflite_int8_full"], state.data; writes state.artifacts["c_source"],
    ["c_header"] and state.budget["tflm_arena"] (measured + reserved)."""

    name = "export_c_array"
    stage = "export"
    order = 90

    def run(self, ctx: RunContext, state: RunState) -> None:
        if "c_array" not in ctx.spec.profile.targets:
            return
        import importlib.metadata

        tfl = state.artifacts.get("tflite_int8_full")
        if tfl is None:
            raise PipelineError("c_array needs the tflite_int8_full model; export_tflite did not make it")
        data = tfl.path.read_bytes()
        info = {"signature": tfl.metadata["signature"], "teacher_io": tfl.metadata.get("teacher_io")}
        from edgedistill.workers.steps.export_multi import is_multi

        if is_multi(state):  # several inputs/outputs (or integer ones): run by the teacher's names
            from edgedistill.runtimes.tflm import run_tflm_all
            from edgedistill.workers.steps.export_multi import check_inputs

            _, measured = run_tflm_all(tfl.path, check_inputs(state, 1))
        else:
            x = state.data.x_of("test")
            if x.shape[0] == 0:
                x = state.data.x_of("train")
            measured = measure_arena(tfl.path, x)
        arena = arena_reservation(measured, tfl.path)
        state.budget["tflm_arena"] = arena
        labels = class_labels(ctx, state)
        if labels is not None and len(labels) != int(info["signature"]["outputs"][0]["shape"][-1]):
            labels = None  # labels that do not match the outputs would mislead the firmware

        try:
            tflm_version = importlib.metadata.version("tflite-micro")
        except importlib.metadata.PackageNotFoundError:
            tflm_version = "unknown"
        provenance = [
            f"Generated by edgedistill for device profile {ctx.spec.profile.name}. Do not edit.",
            f"Model: {tfl.path.name}, {len(data)} bytes, sha256 {tfl.sha256}.",
            f"Arena measured with tflite-micro {tflm_version} (reference kernels).",
        ]
        standardization = tfl.metadata.get("input_standardization")
        header = c_header(
            name=C_NAME,
            model_len=len(data),
            info=info,
            arena=arena,
            labels=labels,
            provenance=provenance,
            standardization=standardization,
        )
        source = "".join(f"// {line}\n" for line in provenance) + c_array_source(data, C_NAME, HEADER_FILENAME)
        if labels:
            source += _labels_source(C_NAME, labels)
        if standardization is not None:
            source += _standardization_source(C_NAME, standardization)

        src_path = write_bytes_atomic(ctx.work_dir, SOURCE_FILENAME, source.encode("utf-8"))
        hdr_path = write_bytes_atomic(ctx.work_dir, HEADER_FILENAME, header.encode("utf-8"))
        common = {
            "source_artifact": "tflite_int8_full",
            "model_sha256": tfl.sha256,
            "model_len": len(data),
            "array": f"{C_NAME}_model",
            "tensor_arena": arena,
            "signature": info["signature"],
            "io_quantization": tfl.metadata.get("io_quantization"),
            **({"input_standardization": standardization} if standardization is not None else {}),
        }
        record_artifact(ctx, state, kind="c_source", path=src_path, metadata={**common, "language": "C++11"})
        record_artifact(ctx, state, kind="c_header", path=hdr_path, metadata={**common, "language": "C/C++"})
