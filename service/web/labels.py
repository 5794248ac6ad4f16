"""Display names of result variants and artifact kinds, for the report view, the measurements page
and the templates (the `label` global). Its own module: templating and reportview both use it."""

from __future__ import annotations

VARIANTS: dict[str, str] = {
    "teacher": "Teacher",
    "student_fp32": "Student fp32",
    "onnx_fp32": "ONNX fp32",
    "onnx_int8": "ONNX int8",
    "tflite_int8": "TFLite int8",
    "tflite_int8_full": "TFLite int8 (int8 I/O)",
    "tflm": "TFLM (micro)",
}
ARTIFACT_LABELS: dict[str, str] = {
    **{k: v for k, v in VARIANTS.items() if k != "teacher"},
    "c_source": "C array source",
    "c_header": "C array header",
    "report": "Report (JSON)",
    "summary": "Summary (Markdown)",
    "probe": "Probe inputs/outputs",
}


def variant_label(kind: str) -> str:
    return VARIANTS.get(kind) or ARTIFACT_LABELS.get(kind) or kind
