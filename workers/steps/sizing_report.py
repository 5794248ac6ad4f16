"""report.json's `sizing` section (the trail sizing.py leaves in state.student_arch["sizing"]) and its
lines in summary.md (from the typed report). No ML imports: the report step and readers of reports can use it."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts.report import SizingTrail


def sizing_section(student_arch: dict[str, Any] | None) -> dict[str, Any] | None:
    sizing = (student_arch or {}).get("sizing")
    return dict(sizing) if isinstance(sizing, dict) else None


def _fig(v: Any) -> str:
    return "n/a" if v is None else f"{v:,}"


def summary_lines(sizing: SizingTrail | None) -> list[str]:
    """'## Student size' with every size tried and why the chosen one."""
    if sizing is None:
        return []
    lines = ["", "## Student size", ""]
    if sizing.mode != "auto":
        return [*lines, f"- {sizing.chosen}: no search ({sizing.reason})"]
    lines.append(
        f"- Objective: {sizing.objective}; target: keep {100 * float(sizing.target or 0):g} % of "
        f"the teacher's {sizing.split or 'val'} {sizing.metric or 'quality'}"
        + (f" ({sizing.teacher:.4f})" if sizing.teacher is not None else "")
    )
    lines.append(f"- Ladder ({sizing.pool} sizes in the pool): {', '.join(sizing.ladder)}")
    lines.append(f"- Chosen: **{sizing.chosen}**: {sizing.chosen_because}")
    if sizing.tried:
        lines += [
            "",
            "| size | params | int8 bytes (est.) | MACs | val metric | kept | met | why |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sizing.tried:
            kept = "n/a" if r.kept is None else f"{100 * r.kept:.1f} %"
            mark = " (chosen)" if r.chosen else ""
            lines.append(
                f"| {r.arch}{mark} | {_fig(r.params)} | {_fig(r.est_int8_bytes)} | "
                f"{_fig(r.macs)} | {r.val_metric:.4f} | {kept} | {r.met} | {r.reason} |"
            )
    return lines
