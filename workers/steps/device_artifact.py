"""Which artifact the device runs, and how much faster it is than the teacher, from the measured figures.

Device artifact: MCUs run the full-int8 TFLite (TFLite Micro), whatever the host timings say. Phones
run LiteRT (either int8 TFLite); CPUs any of the four. Among those the device class can run, the
choice is the fastest host p50 that meets options.quality_target and fits max_model_bytes; when
none meets the target, the fastest within accuracy_budget_pp of the best of them. So an int8 ONNX
that runs slower than the fp32 one on this host is not picked for speed it does not have, and the
report says how much slower it is.

Speed-up: the headline latency_x compares the teacher with a student artifact in the same runtime at
the same thread count (teacher ONNX vs student ONNX in onnxruntime, TFLite vs TFLite in LiteRT; a
TorchScript / torch.export teacher exported to ONNX vs the student's ONNX, else vs the fp32 student
in torch). The device artifact's own ratio, when it runs in another runtime, is labelled
cross-runtime."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.verdict import quality_verdict

# Preference when nothing was timed (and the tie-break): the artifact each class was built for first.
PRIMARY_BY_CLASS: dict[str, tuple[str, ...]] = {
    c: artifact_kinds.by_preference(c) for c in artifact_kinds.DEVICE_CLASSES
}
# The artifacts a device of each class can run.
RUNNABLE_BY_CLASS: dict[str, tuple[str, ...]] = {
    c: artifact_kinds.runnable_on(c) for c in artifact_kinds.DEVICE_CLASSES
}
# Same-runtime comparators for the teacher, after the device artifact itself: int8 files first.
_COMPARATORS = (
    *artifact_kinds.int8_kinds(),
    *(k for k in artifact_kinds.student_model_kinds() if k not in artifact_kinds.int8_kinds()),
    "student_torch",
)


def host_timings(latency: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["artifact_kind"]: m for m in latency if m.get("source") == "host" and m.get("p50_ms") is not None}


def runtime_family(runtime: str | None) -> str:
    """torch.jit, torch.export and eager torch are one runtime (the same kernels and thread pool)."""
    r = str(runtime or "")
    return "torch" if r.startswith("torch") else r


def choose_device_artifact(
    *,
    device_class: str,
    sizes: dict[str, int],
    quality: dict[str, float | None],
    metric: str,
    teacher_quality: float | None,
    target: float,
    accuracy_budget_pp: float,
    max_model_bytes: int | None,
    latency: list[dict[str, Any]],
    problem: str | None = None,
    over_budget: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """{"chosen", "why", "candidates": [...], "notes": [...]} over the artifacts in sizes.
    over_budget: kinds that break a budget other than max_model_bytes (the teacher's own int8 file over
    max_macs: the student's files were held to it by verify), with the budgets they break."""
    over_budget = over_budget or {}
    present = [k for k in PRIMARY_BY_CLASS[device_class] if k in sizes]
    if not present:
        return {"chosen": None, "why": "no model artifact", "candidates": [], "notes": []}
    runnable = [k for k in present if k in RUNNABLE_BY_CLASS[device_class]] or present[:1]
    timings = host_timings(latency)
    rows = []
    for kind in runnable:
        v = quality_verdict(
            metric=metric,
            teacher=teacher_quality,
            student=quality.get(kind),
            target=target,
            samples=None,
            variant=kind,
            # verify's problem is the student's (e.g. one class for every sample), not the teacher's
            problem=None if kind in artifact_kinds.teacher_model_kinds() else problem,
        )
        rows.append(
            {
                "kind": kind,
                "p50_ms": (timings.get(kind) or {}).get("p50_ms"),
                "quality": quality.get(kind),
                "kept": v["kept"],
                "meets_target": v["met"],
                "fits": (max_model_bytes is None or sizes[kind] <= max_model_bytes) and not over_budget.get(kind),
                "bytes": sizes[kind],
            }
        )
    notes = _slower_int8_notes(timings, device_class)
    if device_class == "mcu":
        chosen = runnable[0]
        tflm = chosen == artifact_kinds.tflm_kind()
        why = "MCUs run the full-int8 TFLite in TFLite Micro" if tflm else "no full-int8 TFLite"
        return {"chosen": chosen, "why": why, "candidates": rows, "notes": notes}

    pool = [r for r in rows if r["fits"] and r["meets_target"]]
    why = "the fastest measured on this host that meets the quality target"
    if not pool:
        fitting = [r for r in rows if r["fits"]] or rows
        scored = [r["quality"] for r in fitting if r["quality"] is not None]
        best = max(scored) if scored else None
        pool = [
            r for r in fitting if best is not None and r["quality"] is not None
            and best - r["quality"] <= accuracy_budget_pp / 100.0
        ] or fitting  # fmt: skip
        why = "none meets the quality target: the fastest within accuracy_budget_pp of the best of them"
    timed = [r for r in pool if r["p50_ms"] is not None]
    if timed:
        chosen = min(timed, key=lambda r: float(r["p50_ms"]))["kind"]
    else:
        chosen, why = pool[0]["kind"], "nothing timed: the class's preferred artifact"
    if notes and chosen != "onnx_int8":
        notes = [f"{notes[0]}; the device artifact is {chosen}", *notes[1:]]
    if chosen in artifact_kinds.teacher_model_kinds():
        teacher_kinds = artifact_kinds.teacher_model_kinds()
        student_ok = any(r["fits"] and r["meets_target"] for r in rows if r["kind"] not in teacher_kinds)
        if not student_ok and pool[0]["meets_target"]:
            why = f"{why}; no student artifact does, so the device gets the teacher itself quantized (no distillation)"
        elif student_ok:
            why = f"{why}: the teacher itself quantized (no distillation) was faster than every student artifact"
        else:
            why = f"{why}: the teacher itself quantized (no distillation)"
    return {"chosen": chosen, "why": why, "candidates": rows, "notes": notes}


def _slower_int8_notes(timings: dict[str, dict[str, Any]], device_class: str) -> list[str]:
    """An int8 ONNX slower than the fp32 one in the same runtime (common on x86 without VNNI)."""
    i8, f32 = timings.get("onnx_int8"), timings.get("onnx_fp32")
    if device_class == "mcu" or i8 is None or f32 is None or float(i8["p50_ms"]) <= float(f32["p50_ms"]):
        return []
    ratio = float(i8["p50_ms"]) / float(f32["p50_ms"])
    return [
        f"onnx_int8 is {ratio:.1f}x slower than onnx_fp32 on this host (p50 {float(i8['p50_ms']):.3f} ms vs "
        f"{float(f32['p50_ms']):.3f} ms, {i8.get('threads')} threads in onnxruntime)"
    ]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return runtime_family(a.get("runtime")) == runtime_family(b.get("runtime")) and a.get("threads") == b.get("threads")


def _basis(ref: str, r: dict[str, Any], kind: str, m: dict[str, Any]) -> str:
    who = "the teacher exported to ONNX" if ref == "teacher_onnx" else "teacher"
    if _same(r, m):
        return (
            f"same runtime: {who} and {kind} both in {m.get('runtime')}, {m.get('threads')} threads, "
            "host p50 at batch 1"
        )
    return (
        f"cross-runtime: teacher in {r.get('runtime')} ({r.get('threads')} threads), {kind} in {m.get('runtime')} "
        f"({m.get('threads')} threads), host p50 at batch 1; not a like-for-like speed-up"
    )


def speed_headline(latency: list[dict[str, Any]], primary: str | None) -> dict[str, Any]:
    """latency_x: the teacher (or a torch teacher exported to ONNX, "teacher_onnx") against a student
    artifact in the same runtime and threads, the device artifact first; latency_basis says which.
    latency_x_device_artifact: the teacher as given against the device artifact, labelled
    cross-runtime when it is."""
    timings = host_timings(latency)
    teacher = timings.get("teacher")
    out: dict[str, Any] = {
        "latency_x": None,
        "latency_basis": "no host timing of the teacher",
        "latency_same_runtime": None,
        "latency_vs": None,
        "latency_teacher": None,
        "latency_x_device_artifact": None,
        "latency_basis_device_artifact": None,
    }
    if teacher is None:
        return out
    device = timings.get(primary) if primary else None
    if device is not None and primary is not None:
        out["latency_x_device_artifact"] = float(teacher["p50_ms"]) / float(device["p50_ms"])
        out["latency_basis_device_artifact"] = _basis("teacher", teacher, primary, device)
    refs = [k for k in ("teacher", "teacher_onnx") if k in timings]
    pairs = [(ref, primary) for ref in refs if primary]
    # Then the deployment runtimes (the ONNX export's reference first), then the student in torch.
    pairs += [(ref, k) for ref in reversed(refs) for k in _COMPARATORS if k != primary]
    ref, comp = next(((r, k) for r, k in pairs if k in timings and _same(timings[r], timings[k])), ("teacher", None))
    if comp is None and primary is not None and device is not None:
        comp = primary  # nothing ran in the teacher's runtime: the cross-runtime figure, labelled so
    if comp is None:
        return out
    r, m = timings[ref], timings[comp]
    out.update(
        latency_x=float(r["p50_ms"]) / float(m["p50_ms"]),
        latency_basis=_basis(ref, r, comp, m),
        latency_same_runtime=_same(r, m),
        latency_vs=comp,
        latency_teacher=ref,
    )
    return out
