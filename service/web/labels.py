"""Display names of result variants and artifact kinds, for the report view, the measurements page
and the templates (the `label` global). Its own module: templating and reportview both use it. The
artifact kinds' labels are the registry's (edgedistill.contracts.artifact_kinds)."""

from __future__ import annotations

from edgedistill.contracts import artifact_kinds

_KIND_LABELS = artifact_kinds.labels()
VARIANTS: dict[str, str] = {
    "teacher": "Teacher",
    "student_fp32": "Student fp32",
    **{k: _KIND_LABELS[k] for k in artifact_kinds.model_kinds()},
    artifact_kinds.TFLM_VARIANT: artifact_kinds.TFLM_LABEL,
}
ARTIFACT_LABELS: dict[str, str] = {
    **{k: v for k, v in VARIANTS.items() if k != "teacher"},
    **_KIND_LABELS,
    "report": "Report (JSON)",
    "summary": "Summary (Markdown)",
    "probe": "Probe inputs/outputs",
}


def variant_label(kind: str) -> str:
    return VARIANTS.get(kind) or ARTIFACT_LABELS.get(kind) or kind
