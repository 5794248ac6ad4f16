"""The report's candidate table: every model the job evaluated for the device, side by side under the
profile's budgets: the teacher as uploaded (the reference), the teacher itself quantized without
distillation (teacher_int8.py) and the distilled student, each with the artifact this device class
would run, its quality on the test split, bytes, MACs, host p50, the budgets it breaks and whether
it is the device artifact.

The device artifact itself is chosen in device_artifact.choose_device_artifact among every file a
device of this class can run (the teacher's int8 ONNX included on CPUs); this module explains that
choice across models: objective, which candidate won and why the others did not. Pure: reads figures
the steps already measured."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.verdict import quality_verdict
from edgedistill.workers.steps.device_artifact import host_timings

OBJECTIVE = {
    "mcu": "the smallest that fits and keeps the quality target (MCUs run the full-int8 TFLite)",
    "mobile": "the fastest that fits and keeps the quality target",
    "cpu": "the fastest that fits and keeps the quality target",
}
TEACHER_KINDS = artifact_kinds.teacher_model_kinds()
RUNNER_UP = "runner_up"  # the student family that lost the race (options.student.family best)


def _p50(latency: list[dict[str, Any]], kind: str) -> tuple[float | None, int | None, str | None]:
    m = host_timings(latency).get(kind)
    return (None, None, None) if m is None else (float(m["p50_ms"]), m.get("threads"), m.get("runtime"))


def _over(bytes_: int | None, macs: int | None, budgets: Any) -> list[str]:
    """The budgets a candidate breaks (flash by its file, compute by its MACs)."""
    out = []
    if bytes_ is not None and bytes_ > budgets.max_model_bytes:
        out.append(f"flash: {bytes_:,} B > {budgets.max_model_bytes:,} B")
    if macs is not None and budgets.max_macs is not None and macs > budgets.max_macs:
        out.append(f"MACs: {macs:,} > {budgets.max_macs:,}")
    return out


def student_label(arch: dict[str, Any]) -> str:
    family = arch.get("family") or "student"
    if family == "derived":
        pruned = (arch.get("derived") or {}).get("pruning_ratio", arch.get("pruning_ratio"))
        extra = f", {100 * float(pruned):.0f} % of channels pruned" if pruned else ""
        return f"derived from the teacher{extra}"
    shape = " ".join(f"{k[0]}{arch[k]}" for k in ("width", "depth") if arch.get(k) is not None)
    return f"designed student ({family} {shape})".replace(" )", ")")


def teacher_int8_over_budget(teacher_macs: int | None, budgets: Any) -> dict[str, list[str]]:
    """For choose_device_artifact: the teacher's int8 file breaks every compute budget the teacher does
    (the student's files were held to max_macs by verify; flash is checked there for every file)."""
    over = _over(None, teacher_macs, budgets)
    return {k: over for k in TEACHER_KINDS} if over else {}


def candidates_section(
    *,
    device_class: str,
    budgets: Any,
    choice: dict[str, Any],
    student_choice: dict[str, Any],
    metric: str,
    teacher_quality: float | None,
    target: float,
    teacher: dict[str, Any],
    student_arch: dict[str, Any],
    sizes: dict[str, int],
    quality: dict[str, float | None],
    latency: list[dict[str, Any]],
    problem: str | None,
    notes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """{"objective", "chosen", "why", "rows": [...]}: one row per candidate model.

    choice: the device-artifact choice over every file; student_choice: the same over the student's
    files only (the artifact the student row shows when the teacher's file won)."""
    chosen = choice.get("chosen")
    rows: list[dict[str, Any]] = []

    t_p50, t_threads, t_runtime = _p50(latency, "teacher")
    rows.append(
        {
            "name": "teacher",
            "label": f"teacher as uploaded ({teacher.get('format') or '?'}, fp32)",
            "artifact_kind": None,
            "runtime": t_runtime or teacher.get("runtime"),
            "quality": teacher_quality,
            "kept": 1.0 if teacher_quality is not None else None,
            "meets_target": None,
            "bytes": teacher.get("file_bytes"),
            "params": teacher.get("params"),
            "macs": teacher.get("macs"),
            "p50_ms": t_p50,
            "threads": t_threads,
            "runs_on_device": None,
            "over_budget": _over(teacher.get("file_bytes"), teacher.get("macs"), budgets),
            "chosen": False,
            "note": "the reference every other row is judged against",
        }
    )

    runnable = artifact_kinds.runnable_on(device_class)
    for kind in TEACHER_KINDS:
        facts = notes.get(kind) or {}
        if kind not in sizes:
            rows.append(
                {
                    "name": kind, "label": "teacher quantized, no distillation", "artifact_kind": None,
                    "meets_target": False, "runs_on_device": False, "chosen": False,
                    "note": f"not evaluated: {facts.get('reason') or 'options.teacher_int8 is off'}",
                }
            )  # fmt: skip
            continue
        p50, threads, runtime = _p50(latency, kind)
        v = quality_verdict(
            metric=metric, teacher=teacher_quality, student=quality.get(kind), target=target,
            samples=None, variant=kind,
        )  # fmt: skip
        on_device = kind in runnable
        tool = str((facts.get("quantization") or {}).get("tool") or "onnxruntime")
        rows.append(
            {
                "name": kind,
                "label": f"teacher quantized, no distillation ({tool.rsplit('.', 1)[-1]})",
                "artifact_kind": kind,
                "runtime": runtime or artifact_kinds.runtime_of(kind),
                "quality": quality.get(kind),
                "kept": v["kept"],
                "meets_target": v["met"],
                "bytes": sizes[kind],
                "params": teacher.get("params"),
                "macs": teacher.get("macs"),
                "p50_ms": p50,
                "threads": threads,
                "runs_on_device": on_device,
                "over_budget": _over(sizes[kind], teacher.get("macs"), budgets),
                "chosen": chosen == kind,
                "note": None
                if on_device
                else f"an ONNX file: a {device_class} device here runs "
                + ", ".join(artifact_kinds.get(k).label for k in runnable[:2])
                + " (the teacher would need converting: options.student.family derived)",
            }
        )

    s_kind = chosen if chosen and chosen not in TEACHER_KINDS else student_choice.get("chosen")
    if s_kind:
        p50, threads, runtime = _p50(latency, s_kind)
        v = quality_verdict(
            metric=metric, teacher=teacher_quality, student=quality.get(s_kind), target=target,
            samples=None, variant=s_kind, problem=problem,
        )  # fmt: skip
        rows.append(
            {
                "name": "student",
                "label": student_label(student_arch),
                "artifact_kind": s_kind,
                "runtime": runtime or artifact_kinds.runtime_of(s_kind),
                "quality": quality.get(s_kind),
                "kept": v["kept"],
                "meets_target": v["met"],
                "bytes": sizes.get(s_kind),
                "params": student_arch.get("params"),
                "macs": student_arch.get("macs"),
                "p50_ms": p50,
                "threads": threads,
                "runs_on_device": s_kind in runnable,
                "over_budget": _over(sizes.get(s_kind), None, budgets),
                "chosen": chosen == s_kind,
                "note": problem,
            }
        )
    race = student_arch.get("family_race") or {}
    if RUNNER_UP in notes:
        rows.append(runner_up_row(notes[RUNNER_UP], race, metric, teacher_quality, target, budgets))
    why = _why(rows, choice)
    if race.get("chosen_because"):
        why += f". Student family (options.student.family best): {race['chosen_because']}"
    return {
        "objective": OBJECTIVE.get(device_class, OBJECTIVE["cpu"]),
        "chosen": next((r["name"] for r in rows if r.get("chosen")), None),
        "why": why,
        "rows": rows,
    }


def runner_up_row(
    up: dict[str, Any], race: dict[str, Any], metric: str, teacher_quality: float | None, target: float,
    budgets: Any,
) -> dict[str, Any]:  # fmt: skip
    """The student family that lost the race (family_race.py), with its int8 ONNX figures on the test
    split when they were measured, else why not."""
    arch = up.get("arch") or {}
    label = f"{student_label(arch)}, not kept" if arch else "the other student family (not trained)"
    q = (up.get("metrics") or {}).get(metric)
    v = quality_verdict(
        metric=metric, teacher=teacher_quality, student=q, target=target, samples=None, variant=RUNNER_UP
    )
    if not arch:
        note = f"not evaluated: {up.get('reason')}"
    elif q is None:
        val = (up.get("race") or {}).get("kept")
        note = f"{up.get('reason')}" + (f" (kept {100 * val:.1f} % on validation)" if val is not None else "")
    else:
        note = f"trained in this job, not kept: {race.get('chosen_because') or 'the other student won'}"
    return {
        "name": RUNNER_UP,
        "label": label,
        "artifact_kind": None,
        "runtime": up.get("runtime"),
        "quality": q,
        "kept": v["kept"],
        "meets_target": v["met"] if q is not None else None,
        "bytes": up.get("bytes"),
        "params": arch.get("params"),
        "macs": arch.get("macs"),
        "p50_ms": up.get("p50_ms"),
        "threads": up.get("threads"),
        "runs_on_device": None,
        "over_budget": _over(up.get("bytes"), arch.get("macs"), budgets) if arch else [],
        "chosen": False,
        "note": note,
    }


def _why(rows: list[dict[str, Any]], choice: dict[str, Any]) -> str:
    """One sentence: which candidate the device gets, and what the other one would have cost."""
    won = next((r for r in rows if r.get("chosen")), None)
    if won is None:
        return str(choice.get("why") or "no candidate")
    other = next((r for r in rows[1:] if not r.get("chosen") and r.get("artifact_kind")), None)
    text = f"{won['label']}: {choice.get('why')}"
    if other is None:
        return text
    parts = []
    if won.get("bytes") and other.get("bytes"):
        parts.append(_times(other["bytes"] / won["bytes"], "larger", "smaller"))
    if won.get("p50_ms") and other.get("p50_ms"):
        parts.append(_times(other["p50_ms"] / won["p50_ms"], "slower", "faster") + " on the host")
    if other.get("quality") is not None and won.get("quality") is not None:
        parts.append(f"{100 * (other['quality'] - won['quality']):+.2f} pp quality")
    reasons = []
    if other.get("meets_target") is False:
        reasons.append("misses the quality target")
    if other.get("runs_on_device") is False:
        reasons.append("does not run on this device class")
    if other.get("over_budget"):
        reasons.append("breaks " + "; ".join(other["over_budget"]))
    because = f" ({', '.join(reasons)})" if reasons else ""
    return f"{text}. The {other['label']} would be {', '.join(parts)}{because}" if parts else text


def _times(ratio: float, above: str, below: str) -> str:
    """2.5 -> "2.5x larger", 0.4 -> "2.5x smaller" (never "0.4x larger")."""
    return f"{ratio:.1f}x {above}" if ratio >= 1 else f"{1 / ratio:.1f}x {below}"
