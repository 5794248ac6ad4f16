"""The report's "distillation" section: method, loss terms + weights, why, and method-specific
results; quantization-aware runs get PTQ vs QAT-KD side by side. Pure Python (no torch)."""

from __future__ import annotations

import copy
from typing import Any

QUALITY_KEYS = ("accuracy", "top1_agreement", "r2", "r2_vs_teacher")
VARIANTS = ("student_fp32", "onnx_int8", "tflite_int8", "tflite_int8_full", "tflm")


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


def summary_lines(section: dict[str, Any]) -> list[str]:
    """A few markdown lines for summary.md."""
    if not section:
        return []
    lines = ["", "## Distillation", "", f"- Method: **{section.get('method')}** — {section.get('summary', '')}"]
    if section.get("why"):
        lines.append(f"- Why: {section['why']}")
    terms = section.get("loss_terms") or []
    if terms:
        lines.append("- Loss: " + " + ".join(f"{t.get('weight'):g} x {t.get('key')}" for t in terms))
    tr = section.get("transformer") or {}
    if tr:
        lines.append(f"- Transformer terms: {', '.join(tr.get('terms_used') or [])}; heads {tr.get('heads', 'n/a')}")
        if tr.get("note"):
            lines.append(f"- Transformer: {tr['note']}")
    feats = section.get("features") or {}
    for p in feats.get("pairs") or []:
        role = f"{p['role']} " if p.get("role") else ""
        lines.append(f"- Feature pair: {role}student {p['student']} <- teacher {p['teacher']} ({p['how']})")
    qat = section.get("qat") or {}
    for variant, row in (qat.get("ptq_vs_qat_kd") or {}).items():
        if row.get("ptq") is not None or row.get("qat_kd") is not None:
            lines.append(f"- {variant} {row['metric']}: PTQ {_pct(row.get('ptq'))} -> QAT-KD {_pct(row.get('qat_kd'))}")
    life = section.get("lifelong") or {}
    for part in ("old_data", "new_data"):
        d = life.get(part)
        if isinstance(d, dict):
            lines.append(f"- {part.replace('_', ' ')}: before {d.get('before')} after {d.get('after')}")
    nas = section.get("nas") or {}
    if nas.get("chosen"):
        lines.append(f"- NAS: {len(nas.get('candidates') or [])} candidates, chose {nas['chosen']}")
    df = section.get("data_free") or {}
    if df:
        lines.append(f"- Data-free: {df.get('real_data_note', '')}")
    return lines


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * v:.2f}%"
