"""The quality verdict of a run: did the device artifact keep options.quality_target of the teacher's
headline metric on the test split? Pure Python (no numpy): the report builds it once, and the API,
both CLIs and the dashboard read it back from report.json and word it with verdict_line.

kept is student / teacher for metrics on the labels (accuracy, R^2). Agreement metrics compare the
student with the teacher, who scores 1.0 against itself by definition, so kept is the student's
agreement itself. A student with a quality problem (metrics.quality_problem: no better than a
constant guess) never meets the target, whatever the ratio says."""

from __future__ import annotations

from typing import Any

# Metrics measured against the teacher's own outputs: the teacher scores 1.0 on them.
AGREEMENT_METRICS = frozenset({"top1_agreement", "r2_vs_teacher", "headline"})
# Below this many test samples one sample moves the figure by more than half a point: say so.
SMALL_TEST_SPLIT = 200

METRIC_NAMES = {
    "accuracy": "accuracy",
    "top1_agreement": "top-1 agreement with the teacher",
    "r2": "R² on the labels",
    "r2_vs_teacher": "R² against the teacher",
    "headline": "headline across outputs",
}


def quality_verdict(
    *,
    metric: str,
    teacher: float | None,
    student: float | None,
    target: float,
    samples: int | None,
    variant: str | None,
    problem: str | None = None,
) -> dict[str, Any]:
    """{metric, teacher, student, kept, target, met, samples, variant, basis, small_sample, problem}.
    met is False (never None) when the student's figure is missing, so an unjudged run is not shown as fine."""
    agreement = metric in AGREEMENT_METRICS
    kept: float | None
    if student is None:
        kept, basis = None, "no quality figure for the device artifact"
    elif agreement:
        kept = float(student)
        basis = "agreement with the teacher, who scores 1.0 by definition: kept is the student's agreement itself"
    elif teacher is not None and teacher > 0:
        kept = float(student) / float(teacher)
        basis = "student / teacher on the labels"
    else:
        # A teacher at or below zero (an R^2 no better than a constant): a ratio means nothing.
        kept = None
        basis = "the teacher scores <= 0 on the labels: met when the student is no worse than the teacher"
    if kept is not None:
        met = kept >= target
    else:
        met = student is not None and teacher is not None and float(student) >= float(teacher)
    if problem:
        met = False
    return {
        "metric": metric,
        "teacher": 1.0 if agreement and student is not None else teacher,
        "student": student,
        "kept": kept,
        "target": target,
        "met": bool(met),
        "samples": samples,
        "variant": variant,
        "basis": basis,
        "small_sample": samples is not None and samples < SMALL_TEST_SPLIT,
        "problem": problem,
    }


def _pct(v: Any) -> str:
    return f"{100 * v:.1f} %" if isinstance(v, int | float) and not isinstance(v, bool) else "n/a"


def verdict_line(q: dict[str, Any] | None, *, state: bool = True) -> str | None:
    """One line for people, e.g. "below target: onnx_int8 keeps 52.0 % of the teacher's accuracy
    (50.0 % vs 96.0 %; target 97.0 %), on 270 test samples" (state=False: without the leading
    "below target: "); None without a verdict (an older report, a failed job)."""
    if not isinstance(q, dict) or "met" not in q:
        return None
    metric = METRIC_NAMES.get(str(q.get("metric")), str(q.get("metric")))
    who = q.get("variant") or "the student"
    target = f"target {_pct(q.get('target'))}"
    if q.get("kept") is None:
        body = f"{who}: {metric} {q.get('student')} vs the teacher's {q.get('teacher')} ({target})"
    elif q.get("metric") in AGREEMENT_METRICS:
        body = f"{who} has {_pct(q['kept'])} {metric} ({target})"
    else:
        figures = f"{_pct(q.get('student'))} vs {_pct(q.get('teacher'))}"
        body = f"{who} keeps {_pct(q['kept'])} of the teacher's {metric} ({figures}; {target})"
    line = (("meets target: " if q.get("met") else "below target: ") if state else "") + body
    samples = q.get("samples")
    if isinstance(samples, int):
        line += f", on {samples} test samples"
        if samples < SMALL_TEST_SPLIT:
            line += " (a small test split: one sample moves the figure by " + f"{100 / max(samples, 1):.1f} points)"
    if q.get("problem"):
        line += f"; {q['problem']}"
    return line


# The fields every job's JSON, webhook and CLI carry (report.json's "quality" has a few more).
PUBLIC_FIELDS = ("metric", "teacher", "student", "kept", "target", "met", "samples", "variant", "problem")


def verdict_of(report: Any) -> dict[str, Any] | None:
    """The verdict of a finished run's report (PUBLIC_FIELDS), or None: no report yet, a failed run,
    or a report written before verdicts existed."""
    q = report.get("quality") if isinstance(report, dict) else None
    if not isinstance(q, dict) or "met" not in q:
        return None
    return {k: q.get(k) for k in PUBLIC_FIELDS}
