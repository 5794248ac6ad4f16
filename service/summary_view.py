"""The end-of-run summary both CLIs print: `edgedistill compress` from its local result, `edgedistill
submit --wait` from the job's report and artifact list fetched over the API. One renderer, so the two
show the same thing, from the typed report (edgedistill.contracts.report). Light: rich and pydantic
only (the submit CLI must not load the ML libraries)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from edgedistill.contracts.report import Report
from edgedistill.contracts.verdict import verdict_line


@dataclass(frozen=True)
class ArtifactRow:
    kind: str
    filename: str
    size_bytes: int
    sha256: str


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "pp":
        return f"{value:+.2f}"
    if kind == "bytes":
        return f"{int(value):,} B"
    if kind == "ms":
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# (metric key, column title, format) per task; the first present key of each row wins.
_QUALITY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy", "pct"),
    ("top1_agreement", "agreement w/ teacher", "pct"),
    ("r2", "R² (labels)", ""),
    ("r2_vs_teacher", "R² vs teacher", ""),
    ("drop_vs_student_fp32_pp", "drop vs fp32 (pp)", "pp"),
)


def below_quality(report: Report) -> bool:
    """True when the report has a verdict and it is not met (--require-quality's exit status)."""
    return report.quality is not None and not report.quality.met


def headline_text(report: Report) -> str | None:
    h = report.headline
    parts = []
    for value, label in ((h.params_x, "fewer parameters"), (h.bytes_x, "smaller")):
        if value is not None:
            parts.append(f"{value:.1f}x {label}")
    if h.latency_x is not None:
        value, label = h.latency_x, "faster on this host"
        if 0 < value < 1:  # "2.5x slower", never "0.4x faster"
            value, label = 1 / value, "slower on this host"
        parts.append(f"{value:.1f}x {label}")
        if h.latency_same_runtime is not None:
            parts[-1] += " (same runtime)" if h.latency_same_runtime else " (cross-runtime)"
    if h.quality_kept_pct is not None:
        parts.append(f"{h.quality_kept_pct:.1f}% of the teacher's {h.quality_metric or 'quality'} kept")
    if h.estimated_device_latency_ms is not None:
        parts.append(f"~{h.estimated_device_latency_ms:.2f} ms estimated on the device")
    if not parts:
        return None
    return f"{h.primary_artifact or 'student'}: " + ", ".join(parts)


def metrics_table(report: Report) -> Table | None:
    """Per-model quality, size and host latency on the test split, or None when the report has none."""
    if not report.metrics:
        return None
    sizes = report.sizes.artifact_bytes
    p50 = {kind: t.p50_ms for kind, t in report.latency.host().items()}
    rows = report.metrics
    columns = [c for c in _QUALITY_COLUMNS if any(v.figure(c[0]) is not None for v in rows.values())]
    table = Table(title="Test split", title_justify="left")
    table.add_column("model")
    table.add_column("runtime")
    for _, title, _ in columns:
        table.add_column(title, justify="right")
    table.add_column("size", justify="right")
    table.add_column("p50 ms", justify="right")
    for name, values in rows.items():
        size = sizes.get(name) or (report.teacher.file_bytes if name == "teacher" else None)
        table.add_row(
            name,
            values.runtime or "",
            *(_fmt(values.figure(key), kind) for key, _, kind in columns),
            _fmt(size, "bytes"),
            _fmt(p50.get(name), "ms"),
        )
    return table


def artifacts_table(artifacts: Iterable[ArtifactRow]) -> Table:
    table = Table(title="Artifacts", title_justify="left")
    for col in ("kind", "file", "size", "sha256"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for art in sorted(artifacts, key=lambda a: a.kind):
        table.add_row(art.kind, art.filename, f"{art.size_bytes:,} B", art.sha256[:12])
    return table


def summary_tables(report: Report, artifacts: Iterable[ArtifactRow]) -> list[Table]:
    metrics = metrics_table(report)
    return [*([metrics] if metrics is not None else []), artifacts_table(artifacts)]


def print_summary(console: Console, report: Report, artifacts: Iterable[ArtifactRow], warnings: Iterable[str]) -> None:
    """The tables, the headline line, the quality verdict (a warning when below target), then one
    line per warning."""
    for table in summary_tables(report, artifacts):
        console.print(table)
    headline = headline_text(report)
    if headline:
        console.print(f"[bold]{headline}[/]", highlight=False)
    verdict = report.verdict()
    line = verdict_line(verdict)
    if verdict is not None and line:
        console.print("[green]quality:[/]" if verdict["met"] else "[bold red]warning: quality[/]", end=" ")
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for warning in warnings:
        if str(warning).startswith("quality warning ("):
            continue  # the verdict line above already names the quality problem
        console.print("[yellow]warning:[/]", end=" ")
        console.print(str(warning), markup=False, highlight=False, soft_wrap=True)
