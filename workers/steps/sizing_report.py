"""report.json's `sizing` section (the trail sizing.py leaves in state.student_arch["sizing"]) and its
lines in summary.md. No ML imports: the report step and readers of reports can use it."""

from __future__ import annotations

from typing import Any


def sizing_section(student_arch: dict[str, Any] | None) -> dict[str, Any] | None:
    sizing = (student_arch or {}).get("sizing")
    return dict(sizing) if isinstance(sizing, dict) else None


def _fig(v: Any) -> str:
    return "n/a" if v is None else f"{v:,}"


def summary_lines(sizing: dict[str, Any] | None) -> list[str]:
    """'## Student size' with every size tried and why the chosen one."""
    if not sizing:
        return []
    lines = ["", "## Student size", ""]
    if sizing.get("mode") != "auto":
        return [*lines, f"- {sizing.get('chosen')}: no search ({sizing.get('reason')})"]
    lines.append(
        f"- Objective: {sizing.get('objective')}; target: keep {100 * float(sizing.get('target') or 0):g} % of "
        f"the teacher's {sizing.get('split', 'val')} {sizing.get('metric', 'quality')}"
        + (f" ({sizing['teacher']:.4f})" if isinstance(sizing.get("teacher"), (int, float)) else "")
    )
    lines.append(f"- Ladder ({sizing.get('pool')} sizes in the pool): {', '.join(sizing.get('ladder') or [])}")
    lines.append(f"- Chosen: **{sizing.get('chosen')}**: {sizing.get('chosen_because')}")
    tried = sizing.get("tried") or []
    if tried:
        lines += [
            "",
            "| size | params | int8 bytes (est.) | MACs | val metric | kept | met | why |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in tried:
            kept = "n/a" if r.get("kept") is None else f"{100 * r['kept']:.1f} %"
            mark = " (chosen)" if r.get("chosen") else ""
            lines.append(
                f"| {r['arch']}{mark} | {_fig(r.get('params'))} | {_fig(r.get('est_int8_bytes'))} | "
                f"{_fig(r.get('macs'))} | {r['val_metric']:.4f} | {kept} | {r['met']} | {r['reason']} |"
            )
    return lines
