"""The report's "distillation" section: method, loss terms + weights, why, and method-specific
results; quantization-aware runs get PTQ vs QAT-KD side by side. Pure Python (no torch)."""

from __future__ import annotations

import copy
from typing import Any

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.report import DistillationFacts

QUALITY_KEYS = ("accuracy", "top1_agreement", "r2", "r2_vs_teacher", "headline")  # headline: multi-output runs
VARIANTS = ("student_fp32", *artifact_kinds.int8_kinds(), artifact_kinds.TFLM_VARIANT)


def distillation_section(distillation: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    section = copy.deepcopy(distillation or {})
    qat = section.get("qat")
    if isinstance(qat, dict) and qat.get("done"):
        ptq = qat.get("ptq") or {}
        rows = {}
        for variant in VARIANTS:
            now = metrics.get(variant) or {}
            before = ptq.get(variant) or {}
            key = next((k for k in QUALITY_KEYS if k in now or k in before), None)
            if key is None:
                continue
            rows[variant] = {
                "metric": key,
                "ptq": before.get(key),
                "qat_kd": now.get(key),
                "ptq_drop_pp": before.get("drop_vs_student_fp32_pp"),
                "qat_kd_drop_pp": now.get("drop_vs_student_fp32_pp"),
            }
        qat["ptq_vs_qat_kd"] = rows
        if not ptq:
            qat["ptq_vs_qat_kd_note"] = "QAT-KD was asked for explicitly: no post-training int8 run to compare with"
    return section


def summary_lines(section: DistillationFacts) -> list[str]:
    """A few markdown lines for summary.md (nothing for a report without a distillation section)."""
    if not section.model_dump(exclude_unset=True):
        return []
    lines = ["", "## Distillation", "", f"- Method: **{section.method}** — {section.summary or ''}"]
    if section.why:
        lines.append(f"- Why: {section.why}")
    if section.loss_terms:
        lines.append("- Loss: " + " + ".join(f"{t.weight:g} x {t.key}" for t in section.loss_terms))
    tr = section.transformer
    if tr is not None:
        lines.append(f"- Transformer terms: {', '.join(tr.terms_used)}; heads {tr.heads or 'n/a'}")
        if tr.note:
            lines.append(f"- Transformer: {tr.note}")
    for p in section.features.pairs if section.features is not None else []:
        role = f"{p.role} " if p.role else ""
        lines.append(f"- Feature pair: {role}student {p.student} <- teacher {p.teacher} ({p.how})")
    for variant, row in (section.qat.ptq_vs_qat_kd if section.qat is not None else {}).items():
        if row.ptq is not None or row.qat_kd is not None:
            lines.append(f"- {variant} {row.metric}: PTQ {_pct(row.ptq)} -> QAT-KD {_pct(row.qat_kd)}")
    life = section.lifelong
    for part, d in (("old_data", life.old_data), ("new_data", life.new_data)) if life is not None else ():
        if d is not None:
            lines.append(f"- {part.replace('_', ' ')}: before {d.before} after {d.after}")
    nas = section.nas
    if nas is not None and nas.chosen:
        lines.append(f"- NAS: {len(nas.candidates)} candidates, chose {nas.chosen}")
    if section.data_free is not None:
        lines.append(f"- Data-free: {section.data_free.real_data_note or ''}")
    return lines


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * v:.2f}%"
