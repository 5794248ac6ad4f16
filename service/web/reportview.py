"""The typed report (edgedistill.contracts.report, read with read_report) -> what the job page shows:
tables and charts of quality per variant, size and latency against the teacher, budget bars. A figure
the report lacks is None in the model and shows as a dash; read_report drops what an old report has
that does not fit, so an old report never becomes a server error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from edgedistill.contracts.report import (
    BudgetFacts,
    Candidates,
    FlashBudget,
    Headline,
    MacsBudget,
    RamBudget,
    Report,
    StudentFacts,
    TeacherFacts,
    TrainingFacts,
)
from edgedistill.service.web import charts
from edgedistill.service.web.labels import VARIANTS, variant_label
from edgedistill.service.web.templating import fmt_bytes, fmt_ms, fmt_pct, fmt_ratio

QUALITY_NAMES: dict[str, str] = {
    "accuracy": "accuracy on labels",
    "top1_agreement": "top-1 agreement with the teacher",
    "r2": "R² on labels",
    "r2_vs_teacher": "R² against the teacher",
    "headline": "headline across outputs",
}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class QualityRow:
    kind: str
    label: str
    runtime: str
    samples: int | None
    accuracy: float | None
    agreement: float | None
    r2: float | None
    drop_pp: float | None
    max_abs_diff: float | None
    primary: bool
    subset: bool


@dataclass
class OutputRow:
    """One teacher output: its kind, how the kind was decided, and its headline per variant as text
    (agreements in %, R² as a number)."""

    name: str
    kind: str
    how: str
    metric: str
    cells: list[tuple[str, str]]


def _figure(value: Any, metric: str | None) -> str:
    v = _num(value)
    if v is None:
        return "n/a"
    if metric and metric.startswith("R^2"):
        return f"R² {v:.3f}"
    return f"{100 * v:.2f} %"


def _outputs(report: Report) -> list[OutputRow]:
    return [
        OutputRow(
            name=o.name,
            kind=o.kind,
            how=o.how,
            metric=o.metric or "not trained (checked)",
            cells=[(variant_label(k), _figure(v, o.metric)) for k, v in o.headline.items()],
        )
        for o in report.outputs
    ]


@dataclass
class SizeRow:
    kind: str
    label: str
    size_bytes: float | None
    bytes_x: float | None
    p50_ms: float | None
    p90_ms: float | None
    runtime: str
    speedup: float | None
    primary: bool


@dataclass
class Budget:
    name: str
    used: float
    available: float
    text: str
    fits: bool | None
    note: str
    chart: Markup


@dataclass
class ReportView:
    headline: Headline
    quality_name: str
    quality: list[QualityRow]
    sizes: list[SizeRow]
    budgets: list[Budget]
    estimate_ms: float | None
    estimate_formula: str
    warnings: list[str]
    violations: list[str]
    student: StudentFacts
    teacher: TeacherFacts
    training: TrainingFacts
    charts: dict[str, Markup] = field(default_factory=dict)
    regression: bool = False
    outputs: list[OutputRow] = field(default_factory=list)
    quality_problem: str | None = None
    verdict: dict[str, Any] | None = None  # QualityVerdict.public(): met, kept, target, ...
    candidates: Candidates | None = None  # the models compared for the device, side by side
    quality_target: float | None = None  # the device artifact's target in the metric's own units
    flash_budget: int | None = None


def build(report: Report) -> ReportView:
    headline = report.headline
    primary = headline.primary_artifact
    qkey = headline.quality_metric or "accuracy"
    regression = qkey.startswith("r2")

    quality: list[QualityRow] = []
    for kind in [*VARIANTS, *[k for k in report.metrics if k not in VARIANTS]]:
        m = report.metrics.get(kind)
        if m is None:
            continue
        quality.append(
            QualityRow(
                kind=kind,
                label=variant_label(kind),
                runtime=m.runtime or "",
                samples=m.samples,
                accuracy=m.accuracy,
                agreement=m.top1_agreement,
                r2=_num(m.figure(qkey)) if regression else None,
                drop_pp=m.drop_vs_student_fp32_pp,
                max_abs_diff=m.max_abs_diff_vs_student_fp32,
                primary=kind == primary,
                subset=bool(m.subset),
            )
        )

    sizes_block = report.sizes
    host = report.latency.host()
    estimate = report.latency.estimate()
    speedup = report.latency.speedup_vs_teacher
    artifact_bytes = sizes_block.artifact_bytes
    teacher = report.teacher
    t_host = host.get("teacher")
    sizes: list[SizeRow] = [
        SizeRow(
            kind="teacher",
            label="Teacher",
            size_bytes=_num(sizes_block.teacher_bytes or teacher.file_bytes),
            bytes_x=1.0,
            p50_ms=t_host.p50_ms if t_host else None,
            p90_ms=t_host.p90_ms if t_host else None,
            runtime=(t_host.runtime if t_host else None) or teacher.runtime or "",
            speedup=1.0 if t_host else None,
            primary=False,
        )
    ]
    kinds = [k for k in VARIANTS if k in artifact_bytes or k in host] + [
        k for k in [*artifact_bytes, *host] if k not in VARIANTS
    ]
    for kind in dict.fromkeys(kinds):
        if kind == "teacher":
            continue
        h = host.get(kind)
        sizes.append(
            SizeRow(
                kind=kind,
                label=variant_label(kind),
                size_bytes=_num(artifact_bytes.get(kind)),
                bytes_x=sizes_block.bytes_x.get(kind),
                p50_ms=h.p50_ms if h else None,
                p90_ms=h.p90_ms if h else None,
                runtime=f"{h.runtime} {h.runtime_version or ''}".strip() if h else "",
                speedup=speedup.get(kind),
                primary=kind == primary,
            )
        )

    budget = report.budget
    violations = list(budget.violations)
    for kind, ops in budget.ops.items():
        if ops.not_allowed:
            violations.append(f"{variant_label(kind)} uses ops the firmware lacks: {', '.join(ops.not_allowed)}")

    view = ReportView(
        headline=headline,
        quality_name=QUALITY_NAMES.get(qkey, qkey),
        quality=quality,
        sizes=sizes,
        budgets=_budgets(budget),
        estimate_ms=estimate.estimated_ms if estimate else None,
        estimate_formula=estimate.formula if estimate else "",
        warnings=list(report.warnings),
        violations=violations,
        student=report.student,
        teacher=teacher,
        training=report.training,
        regression=regression,
        outputs=_outputs(report),
        quality_problem=report.quality.problem if report.quality is not None else None,
        verdict=report.verdict(),
        candidates=report.candidates,
        quality_target=_target_line(report),
        flash_budget=budget.flash.available_bytes if budget.flash is not None else None,
    )
    view.charts = {**_charts(view), **_candidate_charts(view)}
    return view


def _target_line(report: Report) -> float | None:
    """Where the quality target lies in the metric's units: target x the teacher's figure (for
    agreement metrics the teacher scores 1, so the target itself)."""
    q = report.quality
    if q is None or q.teacher is None or q.teacher <= 0:
        return None
    return float(q.target) * float(q.teacher)


def _candidate_charts(view: ReportView) -> dict[str, Markup]:
    """Quality against size and against host latency, one point per candidate model."""
    c = view.candidates
    if c is None:
        return {}
    css = {"teacher": "s2", "student": "s0", "runner_up": "s3"}
    rows = [r for r in c.rows if r.quality is not None]
    unit = 1.0 if view.regression else 100.0
    y_fmt = (lambda v: f"{v:.2f}") if view.regression else (lambda v: f"{v:.0f} %" if v >= 10 else f"{v:.1f} %")
    target = (view.quality_target * unit, "quality target") if view.quality_target is not None else None
    out: dict[str, Markup] = {}
    sized = [charts.Point(r.label, float(r.bytes), unit * (r.quality or 0.0), css.get(r.name, "s1"), r.chosen)
             for r in rows if r.bytes]  # fmt: skip
    if len(sized) >= 2:
        out["candidates_size"] = charts.scatter_chart(
            "chart-candidates-size", sized, title="Candidates: quality against file size",
            x_label="file size", y_label=view.quality_name, x_fmt=lambda v: fmt_bytes(int(v)), y_fmt=y_fmt,
            x_limit=(float(view.flash_budget), "flash budget") if view.flash_budget else None, y_limit=target,
        )  # fmt: skip
    timed = [charts.Point(r.label, float(r.p50_ms), unit * (r.quality or 0.0), css.get(r.name, "s1"), r.chosen)
             for r in rows if r.p50_ms]  # fmt: skip
    if len(timed) >= 2:
        out["candidates_latency"] = charts.scatter_chart(
            "chart-candidates-latency", timed, title="Candidates: quality against host latency",
            x_label="host p50 at batch 1", y_label=view.quality_name, x_fmt=fmt_ms, y_fmt=y_fmt, y_limit=target,
        )  # fmt: skip
    return out


def _budgets(budget: BudgetFacts) -> list[Budget]:
    out: list[Budget] = []
    ram_name = "RAM (tensor arena)" if budget.ram is not None and budget.ram.measured_arena_bytes else "RAM"
    rows: list[tuple[str, str, FlashBudget | RamBudget | MacsBudget | None]] = [
        ("flash", "Flash (model)", budget.flash),
        ("ram", ram_name, budget.ram),
        ("macs", "Compute (MACs)", budget.macs),
    ]
    for key, name, b in rows:
        if b is None:
            continue
        if isinstance(b, MacsBudget):
            used, available = _num(b.used), _num(b.available)
        else:
            used, available = _num(b.used_bytes), _num(b.available_bytes)
        if used is None or not available:
            continue
        if isinstance(b, MacsBudget):
            text = f"{used:,.0f} of {available:,.0f} MACs ({100 * used / available:.1f}%)"
        else:
            text = f"{fmt_bytes(used)} of {fmt_bytes(available)} ({100 * used / available:.1f}%)"
        note = ""
        if isinstance(b, FlashBudget) and b.artifact_kind:
            note = f"{variant_label(b.artifact_kind)}, {'measured' if b.measured else 'estimated'}"
        elif isinstance(b, RamBudget):
            note = b.by or ("measured" if b.measured else "estimated")
        out.append(
            Budget(
                name=name,
                used=used,
                available=available,
                text=text,
                fits=b.fits,
                note=note,
                chart=charts.meter(f"budget-{key}", used, available, label=f"{name} budget", text=text),
            )
        )
    return out


def _pct_tick(v: float) -> str:
    return f"{v:g}%"


def _charts(view: ReportView) -> dict[str, Markup]:
    out: dict[str, Markup] = {}
    if view.quality:
        if view.regression:
            groups = [
                charts.Group(q.label, [charts.Bar(q.r2, f"{q.r2:.3f}" if q.r2 is not None else "n/a")])
                for q in view.quality
            ]
            out["quality"] = charts.bar_chart(
                "chart-quality",
                groups,
                title=f"Quality per variant ({view.quality_name})",
                x_label="R² (1.0 = perfect)",
                tick_fmt=lambda v: f"{v:g}",
                max_value=1.0,
                width=760,
                label_width=170,
            )
        else:
            series = [charts.Series("Accuracy", "s0"), charts.Series("Agreement with teacher", "s1")]
            groups = []
            for q in view.quality:
                bars = []
                if any(r.accuracy is not None for r in view.quality):
                    bars.append(charts.Bar(None if q.accuracy is None else 100 * q.accuracy, fmt_pct(q.accuracy, 1), 0))
                bars.append(charts.Bar(None if q.agreement is None else 100 * q.agreement, fmt_pct(q.agreement, 1), 1))
                groups.append(charts.Group(q.label, bars))
            out["quality"] = charts.bar_chart(
                "chart-quality",
                groups,
                title="Accuracy and agreement per variant (test split)",
                x_label="Test split (%)",
                tick_fmt=_pct_tick,
                series=series,
                max_value=100.0,
                width=760,
                label_width=170,
            )
    sized = [s for s in view.sizes if s.size_bytes is not None]
    if sized:
        unit, div = _byte_unit(max(s.size_bytes or 0 for s in sized))
        out["size"] = charts.bar_chart(
            "chart-size",
            [
                charts.Group(
                    s.label,
                    [
                        charts.Bar(
                            (s.size_bytes or 0) / div,
                            fmt_bytes(s.size_bytes)
                            + ("" if s.kind == "teacher" else f" · {fmt_ratio(s.bytes_x)} smaller"),
                            0 if s.kind == "teacher" else 1,
                        )
                    ],
                )
                for s in sized
            ],
            title="Model size: teacher vs student artifacts",
            x_label=f"File size ({unit})",
            tick_fmt=lambda v: f"{v:g}",
            series=[charts.Series("Teacher", "s2"), charts.Series("Student", "s0")],
            label_width=150,
            value_width=170,
        )
    timed = [s for s in view.sizes if s.p50_ms is not None]
    if timed:
        unit_ms = max(s.p50_ms or 0 for s in timed) >= 1
        scale = 1.0 if unit_ms else 1000.0
        out["latency"] = charts.bar_chart(
            "chart-latency",
            [
                charts.Group(
                    s.label,
                    [
                        charts.Bar(
                            (s.p50_ms or 0) * scale,
                            fmt_ms(s.p50_ms) + ("" if s.kind == "teacher" else f" · {fmt_ratio(s.speedup)} vs teacher"),
                            0 if s.kind == "teacher" else 1,
                        )
                    ],
                )
                for s in timed
            ],
            title="Latency on the host: teacher vs student artifacts (p50, batch 1)",
            x_label="Host latency p50 (" + ("ms" if unit_ms else "µs") + ")",
            tick_fmt=lambda v: f"{v:g}",
            series=[charts.Series("Teacher", "s2"), charts.Series("Student", "s0")],
            label_width=150,
            value_width=170,
        )
    return out


def _byte_unit(largest: float) -> tuple[str, float]:
    for unit, div in (("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0)):
        if largest >= div:
            return unit, div
    return "bytes", 1.0


def training_chart(
    curve: list[dict[str, Any]],
    *,
    regression: bool = False,
    planned_epochs: int | None = None,
    chart_id: str = "chart-training",
) -> dict[str, Markup]:
    """Loss and validation fidelity per epoch: two charts, each with its own unit. Fidelity is top-1
    agreement with the teacher (classification) or R² against the teacher (regression)."""
    if not curve:
        return {}

    def points(key: str, scale: float) -> list[tuple[float, float]]:
        return [
            (float(p["epoch"]), scale * float(p[key]))
            for p in curve
            if _num(p.get("epoch")) is not None and _num(p.get(key)) is not None
        ]

    loss = points("train_loss", 1.0)
    out: dict[str, Markup] = {}
    if loss:
        out["loss"] = charts.line_chart(
            f"{chart_id}-loss",
            [charts.Line("Training loss", loss, "s2")],
            title="Training loss per epoch",
            x_label="Epoch",
            y_label="Loss (distillation objective)",
            y_fmt=lambda v: f"{v:.3g}",
            x_max=planned_epochs,
        )
    if regression:
        fid = points("val_fidelity", 1.0)
        if fid:
            out["fidelity"] = charts.line_chart(
                f"{chart_id}-fidelity",
                [charts.Line("R² against the teacher", fid, "s1")],
                title="Validation fidelity per epoch",
                x_label="Epoch",
                y_label="Validation R² vs teacher",
                y_fmt=lambda v: f"{v:.2f}",
                y_max=1.0,
                x_max=planned_epochs,
            )
        return out
    fid, acc = points("val_fidelity", 100.0), points("val_accuracy", 100.0)
    # Fidelity and accuracy are often within a point of each other: fidelity is drawn first as a wide
    # band and accuracy on top as a thin dashed line, so both stay visible where they overlap, and the
    # axis is zoomed to the values (0-100 % would squeeze 95-99 % into one line).
    lines = [charts.Line("Fidelity (agreement with teacher)", fid, "s1 band")] if fid else []
    if acc:
        lines.append(charts.Line("Accuracy on labels", acc, "s0 dashed"))
    if lines:
        values = [y for ln in lines for _, y in ln.points]
        floor = max(0.0, math.floor((min(values) - 2.0) / 5.0) * 5.0)
        out["fidelity"] = charts.line_chart(
            f"{chart_id}-fidelity",
            lines,
            title="Validation fidelity and accuracy per epoch",
            x_label="Epoch",
            y_label="Validation (%)",
            y_fmt=lambda v: f"{v:g}%",
            y_min=floor,
            y_max=100.0,
            x_max=planned_epochs,
        )
    return out
