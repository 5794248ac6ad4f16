"""The run's report: report.json (machine-readable, schema_version 1) and summary.md (for people),
both recorded as artifacts (kinds report, summary). The ratios people ask about come first: how many
times fewer parameters and bytes, how many times faster, and how much of the teacher's quality kept.

The headline compares the teacher with the artifact the device runs (workers.steps.device_artifact:
full-int8 TFLite for MCUs, else the fastest measured that meets the quality target); its speed-up
is in the same runtime and threads where one exists, labelled cross-runtime otherwise. The quality
verdict (workers.pipeline.verdict) is built here once and read by the API, CLIs and dashboard.

The report is an edgedistill.contracts.report.Report: report.json is its JSON, summary.md is rendered
from it, and every reader validates the stored JSON back into it."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts import report as contract
from edgedistill.contracts.verdict import METRIC_NAMES, quality_verdict, verdict_line
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps import deployment
from edgedistill.workers.steps.artifacts import record_artifact, to_jsonable, write_bytes_atomic
from edgedistill.workers.steps.candidates import TEACHER_KINDS, candidates_section, teacher_int8_over_budget
from edgedistill.workers.steps.device_artifact import PRIMARY_BY_CLASS, choose_device_artifact, speed_headline
from edgedistill.workers.steps.distill.report_section import distillation_section, summary_lines
from edgedistill.workers.steps.metrics import quality_key
from edgedistill.workers.steps.sizing_report import sizing_section
from edgedistill.workers.steps.sizing_report import summary_lines as sizing_lines

__all__ = ["PRIMARY_BY_CLASS", "Report", "build_report", "render_summary"]

SCHEMA_VERSION = contract.SCHEMA_VERSION
REPORT_FILENAME = "report.json"
SUMMARY_FILENAME = "summary.md"
MODEL_KINDS = artifact_kinds.model_kinds()
M = TypeVar("M", bound=BaseModel)


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def _teacher_info(state: RunState) -> dict[str, Any]:
    t = state.teacher
    if t is None:
        return {}
    macs = t.macs() if callable(getattr(t, "macs", None)) else getattr(t, "macs", None)
    info: dict[str, Any] = {
        "format": t.format,
        "params": int(t.param_count),
        "file_bytes": int(t.file_bytes),
        "macs": macs,
        "runtime": t.runtime_name,
        "runtime_version": t.runtime_version,
    }
    describe = getattr(t, "describe", None)
    if callable(describe):
        info["signature"] = {k: v for k, v in describe().items() if k not in info}
    return info


def _host_p50(state: RunState) -> dict[str, float]:
    return {
        m["artifact_kind"]: float(m["p50_ms"]) for m in state.latency if m.get("source") == "host" and "p50_ms" in m
    }


def _same_runtime(latency: list[dict[str, Any]]) -> dict[str, bool]:
    """Per timed student: whether its speed-up over the teacher is like-for-like (runtime and threads)."""
    from edgedistill.workers.steps.device_artifact import host_timings, runtime_family

    t = host_timings(latency)
    teacher = t.pop("teacher", None)
    if teacher is None:
        return {}
    return {
        k: runtime_family(m.get("runtime")) == runtime_family(teacher.get("runtime"))
        and m.get("threads") == teacher.get("threads")
        for k, m in t.items()
    }


def build_report(ctx: RunContext, state: RunState) -> contract.Report:
    profile = ctx.spec.profile
    data = state.data
    teacher = _teacher_info(state)
    student_params = (state.student_arch or {}).get("params")
    p50 = _host_p50(state)
    teacher_p50 = p50.get("teacher")

    has_labels = data is not None and data.y_of("test") is not None
    task = data.task if data is not None else "classification"
    qkey = quality_key(task, has_labels)
    if "outputs" in (state.metrics.get("student_fp32") or {}):  # per-output run: the headline across outputs
        qkey = "headline"
    teacher_q = (state.metrics.get("teacher") or {}).get(qkey)
    sizes = {k: state.artifacts[k].size_bytes for k in MODEL_KINDS if k in state.artifacts}
    target = ctx.spec.options.quality_target
    problem = (state.quality or {}).get("problem")
    quality = {k: (state.metrics.get(k) or {}).get(qkey) for k in sizes}
    choose: dict[str, Any] = dict(
        device_class=profile.device_class,
        quality=quality,
        metric=qkey,
        teacher_quality=teacher_q,
        target=target,
        accuracy_budget_pp=ctx.spec.options.accuracy_budget_pp,
        max_model_bytes=profile.budgets.max_model_bytes,
        latency=state.latency,
        problem=problem,
    )
    choice = choose_device_artifact(
        sizes=sizes, over_budget=teacher_int8_over_budget(teacher.get("macs"), profile.budgets), **choose
    )
    student_choice = choose_device_artifact(sizes={k: v for k, v in sizes.items() if k not in TEACHER_KINDS}, **choose)
    primary = choice["chosen"]
    primary_q = (state.metrics.get(primary) or {}).get(qkey) if primary else None
    of_teacher = primary in TEACHER_KINDS
    verdict = quality_verdict(
        metric=qkey,
        teacher=teacher_q,
        student=primary_q,
        target=target,
        samples=(state.metrics.get(primary) or {}).get("samples") if primary else None,
        variant=primary,
        problem=None if of_teacher else problem,
    )
    candidates = candidates_section(
        device_class=profile.device_class,
        budgets=profile.budgets,
        choice=choice,
        student_choice=student_choice,
        metric=qkey,
        teacher_quality=teacher_q,
        target=target,
        teacher=teacher,
        student_arch=dict(state.student_arch or {}),
        sizes=sizes,
        quality=quality,
        latency=state.latency,
        problem=problem,
        notes=state.candidates,
    )
    headline: dict[str, Any] = {
        "primary_artifact": primary,
        # the teacher's own int8 file has the teacher's parameters
        "params_x": 1.0 if of_teacher else _ratio(teacher.get("params"), student_params),
        "bytes_x": _ratio(teacher.get("file_bytes"), sizes.get(primary) if primary else None),
        **speed_headline(state.latency, primary),
        "quality_metric": qkey,
        "teacher_quality": teacher_q,
        "student_quality": primary_q,
        "quality_kept_pct": None if primary_q is None or not teacher_q else 100.0 * primary_q / teacher_q,
        "quality_met": verdict["met"],
    }
    estimate = next((m for m in state.latency if m.get("source") == "estimated"), None)
    if estimate is not None:
        headline["estimated_device_latency_ms"] = estimate.get("estimated_ms")

    # Each section through to_jsonable first (numpy scalars, tuples), then into its typed model: a
    # key the contract does not know fails here, in the tests, not in a reader.
    def typed(model: type[M], value: Any) -> M:
        return model.model_validate(to_jsonable(value))

    return contract.Report(
        schema_version=contract.SCHEMA_VERSION,
        headline=typed(contract.Headline, headline),
        profile=typed(contract.ProfileFacts, profile.as_yaml_dict()),
        data=typed(contract.DataFacts, data.describe()) if data is not None and hasattr(data, "describe") else None,
        teacher=typed(contract.TeacherFacts, teacher),
        signature=typed(contract.SignatureFacts, state.signature.model_dump()) if state.signature is not None else None,
        outputs=[typed(contract.OutputRow, row) for row in output_section(state)],
        # The verdict on the device artifact, plus verify's quality_problem check (on problem_variant).
        quality=typed(
            contract.QualityVerdict,
            {
                **verdict,
                "action": (state.quality or {}).get("action"),
                "problem_variant": (state.quality or {}).get("variant"),
            },
        ),
        device_artifact=typed(contract.DeviceArtifactChoice, choice),
        candidates=typed(contract.Candidates, candidates),
        student=typed(contract.StudentFacts, {k: v for k, v in (state.student_arch or {}).items() if k != "sizing"}),
        sizing=typed(contract.SizingTrail, trail) if (trail := sizing_section(state.student_arch)) else None,
        training=typed(contract.TrainingFacts, dict(state.training or {})),
        distillation=typed(contract.DistillationFacts, distillation_section(state.distillation, state.metrics)),
        metrics={k: typed(contract.VariantMetrics, m) for k, m in state.metrics.items()},
        budget=typed(contract.BudgetFacts, state.budget),
        latency=typed(
            contract.LatencyFacts,
            {
                "measurements": state.latency,
                "speedup_vs_teacher": {k: _ratio(teacher_p50, v) for k, v in p50.items() if k != "teacher"},
                "same_runtime_as_teacher": _same_runtime(state.latency),
            },
        ),
        sizes=contract.SizeFacts(
            teacher_params=teacher.get("params"),
            student_params=student_params,
            params_x=headline["params_x"],
            teacher_bytes=teacher.get("file_bytes"),
            artifact_bytes=sizes,
            bytes_x={k: _ratio(teacher.get("file_bytes"), v) for k, v in sizes.items()},
        ),
        artifacts={
            k: contract.ArtifactFile(filename=a.path.name, sha256=a.sha256, size_bytes=a.size_bytes)
            for k, a in sorted(state.artifacts.items())
        },
        warnings=[str(w) for w in [*state.warnings, *(n for n in choice["notes"] if n not in state.warnings)]],
        timings=to_jsonable(
            {
                "training_seconds": (state.training or {}).get("seconds"),
                **dict((state.report or {}).get("timings") or {}),
            }
        ),
    )


def output_section(state: RunState) -> list[dict[str, Any]]:
    """Per teacher output: its kind, how the kind was decided and its headline in every variant."""
    rows: list[dict[str, Any]] = []
    for entry in state.output_kinds or []:
        name = entry["name"]
        per_variant: dict[str, Any] = {}
        metric_name = None
        for variant, m in (state.metrics or {}).items():
            om = (m.get("outputs") or {}).get(name) if isinstance(m, dict) else None
            if om is not None:
                per_variant[variant] = om.get("headline")
                metric_name = om.get("headline_name")
        rows.append({**entry, "metric": metric_name, "headline": per_variant})
    return rows


# --------------------------------------------------------------------------------------------------
# summary.md (from the typed report: attribute access, a missing figure prints as n/a)
# --------------------------------------------------------------------------------------------------


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.1f}x"


def _speed(v: float | None) -> str:
    """A speed-up as people say it: "4.3x faster", or "2.5x slower" below 1 (never "0.4x faster")."""
    if v is None:
        return "n/a"
    return f"{v:,.1f}x faster" if v >= 1 or v <= 0 else f"{1 / v:,.1f}x slower"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _num(v: Any, fmt: str = ",") -> str:
    return "n/a" if v is None else format(v, fmt)


def _fig(v: Any, metric: str | None) -> str:
    """A headline as people read it: agreements in %, R^2 as a plain number (never 'r2 -1390 %')."""
    if v is None:
        return "n/a"
    if metric and metric.startswith("R^2"):
        return f"R² {v:.3f}"
    return f"{100 * v:.2f}%"


def render_summary(report: contract.Report) -> str:
    h = report.headline
    prof_name = report.profile.name if report.profile is not None else "?"
    qkey = h.quality_metric or "accuracy"
    qname = METRIC_NAMES.get(qkey, qkey)
    quality = report.quality
    lines = [f"# edgedistill report: {prof_name}", ""]
    line = verdict_line(quality.model_dump(), state=False) if quality is not None else None
    if quality is not None and line:
        mark = "Quality: meets target." if quality.met else "Quality: BELOW TARGET."
        lines += [f"**{mark}** {line}.", ""]
        if quality.kept is not None and quality.metric in ("top1_agreement", "r2_vs_teacher", "headline"):
            lines += ["_The teacher agrees with itself by definition (1.0), so the share kept is the agreement._", ""]
    if quality is not None and quality.problem:
        lines += [
            f"> **Quality warning ({quality.problem_variant or quality.variant}): this student does "
            f"not reproduce its teacher.** {quality.problem}",
            "",
        ]
    why = report.device_artifact.why if report.device_artifact is not None else None
    lines += [
        f"Device artifact: **{h.primary_artifact or 'none'}**" + (f" ({why})." if why else "."),
        "",
        "| | |",
        "|---|---|",
        f"| Parameters | **{_x(h.params_x)} fewer** |",
        f"| Bytes | **{_x(h.bytes_x)} smaller** |",
        f"| Latency (host, batch 1, p50) | **{_speed(h.latency_x)}** ({h.latency_basis}) |",
    ]
    if h.latency_vs != h.primary_artifact and h.latency_x_device_artifact is not None:
        lines.append(
            f"| Latency of {h.primary_artifact} | {_speed(h.latency_x_device_artifact)} "
            f"({h.latency_basis_device_artifact}) |"
        )
    lines.append(
        f"| Quality kept ({qname}) | **{_num(h.quality_kept_pct, '.1f')}%** "
        f"({_pct(h.student_quality)} vs teacher {_pct(h.teacher_quality)}) |"
    )
    if h.estimated_device_latency_ms is not None:
        lines.append(
            f"| Estimated on-device latency | {h.estimated_device_latency_ms:.2f} ms (MACs x cycles/MAC / clock) |"
        )
    lines += candidate_lines(report.candidates, qname)
    if report.warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report.warnings]]

    if report.outputs:
        variants = list(dict.fromkeys(v for o in report.outputs for v in o.headline))
        lines += [
            "",
            "## Outputs",
            "",
            "| output | kind | decided by | metric | " + " | ".join(variants) + " |",
            "|---|---|---|---|" + "---|" * len(variants),
        ]
        for o in report.outputs:
            vals = [_fig(o.headline.get(v), o.metric) for v in variants]
            lines.append(f"| {o.name} | {o.kind} | {o.how} | {o.metric or 'not trained'} | " + " | ".join(vals) + " |")

    lines += [
        "",
        "## Accuracy on the test split",
        "",
        "| variant | samples | metric | value | max abs diff vs fp32 student |",
    ]
    lines.append("|---|---|---|---|---|")
    for variant, m in report.metrics.items():
        if m.outputs is not None:
            value = _pct(m.headline) if m.headline is not None else (m.error or "n/a")
            lines.append(f"| {variant} | {m.samples} | headline across outputs | {value} | |")
            continue
        key = next(
            (k for k in (qkey, "accuracy", "top1_agreement", "r2_vs_teacher") if m.figure(k) is not None),
            None,
        )
        value = _pct(m.figure(key)) if key else "n/a"
        note = " (subset)" if m.subset else ""
        lines.append(
            f"| {variant}{note} | {m.samples} | {key or ''} | {value} | {_num(m.max_abs_diff_vs_student_fp32, '.4g')} |"
        )

    if report.latency.measurements:
        lines += [
            "",
            "## Latency",
            "",
            "| model | runtime | threads | p50 ms | p90 ms | p99 ms | mean ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in report.latency.measurements:
            if isinstance(t, contract.HostTiming):
                lines.append(
                    f"| {t.artifact_kind} | {t.runtime} {t.runtime_version or ''} | {t.threads} | "
                    f"{t.p50_ms:.3f} | {t.p90_ms:.3f} | {t.p99_ms:.3f} | {t.mean_ms:.3f} |"
                )
            else:
                figure = f"{t.estimated_ms:.3f} (estimated: {t.formula})"
                lines.append(f"| {t.artifact_kind} | {t.runtime or ''} | - | {figure} | | | |")

    budget = report.budget
    rows = [(n, b) for n, b in (("flash", budget.flash), ("ram", budget.ram)) if b is not None]
    if rows or budget.macs is not None:
        lines += ["", "## Budgets", "", "| resource | used | available | fits |", "|---|---|---|---|"]
        for name, b in rows:
            kind = "measured" if b.measured else "estimated"
            lines.append(f"| {name} ({kind}) | {_num(b.used_bytes)} B | {_num(b.available_bytes)} B | {b.fits} |")
        if budget.macs is not None:
            mb = budget.macs
            lines.append(f"| MACs | {_num(mb.used)} | {_num(mb.available)} | {mb.fits} |")

    student, teacher = report.student, report.teacher
    lines += [
        "",
        "## Models",
        "",
        f"- Teacher: {teacher.format} ({teacher.runtime}), {_num(teacher.params)} parameters, "
        f"{_num(teacher.file_bytes)} bytes, {_num(teacher.macs)} MACs",
        f"- Student: {student.family} width {student.width} depth {student.depth}, "
        f"{_num(student.params)} parameters, {_num(student.macs)} MACs",
    ]
    lines += sizing_lines(report.sizing)
    lines += summary_lines(report.distillation)
    training = report.training.model_dump(exclude_unset=True)
    facts = [f"{k.replace('_', ' ')}: {v}" for k, v in training.items() if isinstance(v, (int, float, str, bool))]
    if facts:
        lines += ["", "## Training", "", *[f"- {f}" for f in facts]]

    lines += ["", "## Artifacts", "", "| kind | file | bytes | sha256 |", "|---|---|---|---|"]
    for kind, a in report.artifacts.items():
        lines.append(f"| {kind} | {a.filename} | {a.size_bytes:,} | `{a.sha256[:16]}…` |")
    lines.append("")
    return "\n".join(lines)


def candidate_lines(c: contract.Candidates | None, qname: str) -> list[str]:
    """The candidates side by side: what the device could have had instead of its artifact."""
    if c is None or not c.rows:
        return []
    lines = [
        "",
        "## Candidates",
        "",
        f"Objective: {c.objective}. {c.why}.",
        "",
        f"| candidate | file | {qname} | kept | meets target | bytes | MACs | host p50 ms | runs here | budgets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in c.rows:
        name = f"**{r.label}** (device artifact)" if r.chosen else r.label
        budgets = "; ".join(r.over_budget) if r.over_budget else ("fit" if r.bytes is not None else "")
        runs = {True: "yes", False: "no", None: "-"}[r.runs_on_device]
        meets = {True: "yes", False: "no", None: "-"}[r.meets_target]
        p50 = "n/a" if r.p50_ms is None else f"{r.p50_ms:.3f}"
        lines.append(
            f"| {name} | {r.artifact_kind or '-'} | {_pct(r.quality)} | {_pct(r.kept)} | {meets} | {_num(r.bytes)} | "
            f"{_num(r.macs)} | {p50} | {runs} | {budgets} |"
        )
    notes = [f"- {r.label}: {r.note}" for r in c.rows if r.note and r.name != "teacher"]
    return [*lines, *(["", *notes] if notes else [])]


class Report(Step):
    """Reads everything earlier steps wrote; writes state.report and the report/summary artifacts."""

    name = "report"
    stage = "benchmark"
    order = 120

    def run(self, ctx: RunContext, state: RunState) -> None:
        report = build_report(ctx, state)
        notes = report.device_artifact.notes if report.device_artifact is not None else []
        for note in notes:  # e.g. a slower int8: the CLIs print state.warnings
            if note not in state.warnings:
                state.warnings.append(note)
                ctx.emit("warning", {"message": note})
        text = report.model_dump_json(indent=2, exclude_unset=True) + "\n"
        report_path = write_bytes_atomic(ctx.work_dir, REPORT_FILENAME, text.encode("utf-8"))
        record_artifact(
            ctx, state, kind="report", path=report_path, metadata={"schema_version": SCHEMA_VERSION}, sidecar=False
        )
        summary = render_summary(report) + deployment.how_to_run(state.artifacts)
        summary_path = write_bytes_atomic(ctx.work_dir, SUMMARY_FILENAME, summary.encode("utf-8"))
        record_artifact(ctx, state, kind="summary", path=summary_path, metadata={"format": "markdown"}, sidecar=False)
        # The run result (and the job row) carries the report as stored JSON, exactly report.json.
        state.report = report.as_json()
