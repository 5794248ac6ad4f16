"""The derived student family (options.student.family derived / prefer_derived): the teacher's own
graph made smaller (prune.py), chosen by build_student, trained by the distill step with hint losses at
the exactly corresponding layers (pairs.py).

Target: the profile's objective cost (sizing.objective: estimated int8 bytes on MCUs, MACs on CPU and
mobile) at most the teacher's divided by options.student.reduction (default DEFAULT_REDUCTION), and every
budget of the profile (students.budget_violation). The pruning share is the smallest that meets it.

family derived: a teacher that cannot be converted or pruned to the target fails the job with the
reason (the API refuses what it can tell at submit: TFLite teachers). prefer_derived: the run falls
back to the designed student with a warning saying why."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.steps.derived.convert import (
    Converted,
    as_tuple,
    convert_teacher,
    probe_args,
)
from edgedistill.workers.steps.derived.errors import ConversionError
from edgedistill.workers.steps.derived.prune import (
    WIDE_LIMIT,
    DerivedStudent,
    DerivedUnavailable,
    drop_layers,
    layers_of,
    raw_outputs,
    reduction_words,
    residual_blocks,
    search_ratio,
    shapes_of,
)

DEFAULT_REDUCTION = 4.0
FAMILIES = ("derived", "prefer_derived")
FEATURE_KEYS = frozenset({"fitnet", "at", "rkd", "sp"})  # loss terms that read intermediate features


def wants_derived(options: Any) -> str | None:
    family = options.student.family
    return family if family in FAMILIES else None


def base_student(converted: Converted, signature: Any) -> tuple[DerivedStudent, list[str]]:
    """The unpruned converted graph with raw outputs (prune.raw_outputs)."""
    net = copy.deepcopy(converted.module)
    kinds = [o.kind for o in signature.outputs]
    ranks = [len(o.shape) for o in signature.outputs]
    raw, notes = raw_outputs(net, kinds, ranks)
    return DerivedStudent(net, converted.input_dtypes, raw), notes


def _check_io(student: DerivedStudent, teacher: Any, signature: Any, probe: Mapping[str, np.ndarray]) -> None:
    """The student runs on a batch of 3 (not the teacher's fixed batch) and returns every trained output
    at the teacher's per-sample shape."""
    from edgedistill.contracts.signature import UNTRAINED_KINDS

    args = tuple(a[:3] if a.shape[0] >= 3 else a for a in probe_args(teacher, probe, n=3))
    try:
        with torch.no_grad():
            outs = as_tuple(student.eval()(*args))
    except Exception as exc:
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        batch = teacher.fixed_batch
        hint = f" (the teacher graph has a fixed batch of {batch})" if batch else ""
        raise DerivedUnavailable(f"the derived student does not run on a batch of 3{hint}: {why}") from exc
    trained = [o for o in signature.outputs if o.kind not in UNTRAINED_KINDS]
    for spec, out in zip(trained, outs, strict=True):
        want = tuple(int(d) for d in spec.per_sample if d is not None)
        if tuple(out.shape[1:]) != want:
            raise DerivedUnavailable(
                f"output {spec.name!r}: the derived student gives per-sample shape {tuple(out.shape[1:])}, "
                f"the teacher {want}"
            )


def build_derived_student(
    teacher: Any, signature: Any, profile: Any, probe: Mapping[str, np.ndarray], *, reduction: float | None = None,
    shrink: float = 1.0,
) -> tuple[DerivedStudent, dict[str, Any]]:  # fmt: skip
    """(pruned, untrained-further module, arch dict); ConversionError / DerivedUnavailable with the reason."""
    from edgedistill.workers.steps.sizing import objective
    from edgedistill.workers.steps.students import budget_violation
    from edgedistill.workers.steps.students_multi import measure

    converted = convert_teacher(teacher, probe)
    base, notes = base_student(converted, signature)
    example = probe_args(teacher, probe, n=2)

    def cost(m: DerivedStudent) -> Any:
        return measure(m, signature)

    key, _adjective, words = objective(profile)
    teacher_est = _without(cost(base), converted.mended_cost)
    factor = float(reduction or DEFAULT_REDUCTION)
    target = getattr(teacher_est, key) / factor * shrink

    def ok(est: Any) -> bool:
        return bool(getattr(est, key) <= target and budget_violation(est, profile) is None)

    shapes = shapes_of(
        base.net, tuple(a.to(getattr(torch, d)) for a, d in zip(example, base.input_dtypes, strict=True))
    )
    layers = layers_of(residual_blocks(base.net, shapes))
    found = search_ratio(base, example, cost, ok)
    trail: list[dict[str, Any]] = [] if found is None else [{"layers": "all", "trail": found[3]}]
    dropped: list[int] = []
    if len(layers) >= 2 and (found is None or found[0] > WIDE_LIMIT):
        shallow = copy.deepcopy(base)
        gone = drop_layers(shallow.net, layers)
        est = cost(shallow)
        alt = (0.0, shallow, est, []) if ok(est) else search_ratio(shallow, example, cost, ok)
        if alt is not None:
            trail.append({"layers": f"dropped {gone}", "trail": alt[3]})
            found, dropped = alt, gone
    if found is None:
        floor = budget_violation(teacher_est, profile)
        errors = [t["error"] for t in _probe_error(base, example, cost)]
        raise DerivedUnavailable(
            "pruning the teacher's channels by up to 90 %"
            + (" and dropping every other layer" if len(layers) >= 2 else "")
            + f" does not reach the target ({key} <= {target:,.0f}: the teacher's / {factor:g}"
            f"{', and the budgets of ' + profile.name if floor else ''})"
            + (f"; torch-pruning failed on this graph: {errors[0]}" if errors else "")
            + (
                ""
                if errors or _prunable_share(base) > 0.5
                else f"; only {_prunable_share(base):.0%} of its weights are in layers channel pruning can narrow"
            )
        )
    ratio, student, est, _ = found
    _check_io(student, teacher, signature, probe)
    because = (
        f"derived from the teacher: {ratio:.0%} of each layer's channels pruned by magnitude (DepGraph groups)"
        + (f", layers {dropped} of {len(layers)} dropped" if dropped else "")
        + f": {reduction_words(getattr(teacher_est, key), getattr(est, key))} fewer {key} than the teacher "
        f"(target: the teacher's / {factor:g}{f' x {shrink:.2f} after an over-budget retry' if shrink != 1 else ''}), "
        f"within the budgets of {profile.name}"
    )
    arch: dict[str, Any] = {
        "family": "derived",
        "width": None,
        "depth": len(layers) - len(dropped) if layers else None,
        "params": est.params,
        "macs": est.macs,
        "est_int8_bytes": est.est_int8_bytes,
        "est_arena_bytes": est.est_arena_bytes,
        "chosen_because": because,
        "derived": {
            "conversion": converted.describe(),
            "objective": words,
            "objective_key": key,
            "target": target,
            "reduction": factor,
            "shrink": shrink,
            "teacher_estimate": {
                "params": teacher_est.params,
                "macs": teacher_est.macs,
                "est_int8_bytes": teacher_est.est_int8_bytes,
                **({"mending_taken_off": dict(converted.mended_cost)} if converted.mended_cost else {}),
            },
            "pruning_ratio": round(ratio, 4),
            "importance": "L2 magnitude per dependency group (torch_pruning.importance.GroupMagnitudeImportance)",
            "residual_layers": len(layers),
            "dropped_layers": dropped,
            "outputs": notes,
            "search": trail,
        },
    }
    return student, arch


def _without(est: Any, mended: Mapping[str, int]) -> Any:
    """The teacher's cost without what the conversion's mending added (the TFLite route's 1x1 convs
    for channel padding: int8 weights, one byte a parameter)."""
    if not mended:
        return est
    params = int(mended.get("params", 0))
    return dataclasses.replace(
        est,
        params=est.params - params,
        macs=est.macs - int(mended.get("macs", 0)),
        est_int8_bytes=est.est_int8_bytes - params,
    )


def _probe_error(base: DerivedStudent, example: Any, cost: Any) -> list[dict[str, Any]]:
    from edgedistill.workers.steps.derived.prune import MAX_RATIO, prune_channels

    try:
        cost(prune_channels(base, example, MAX_RATIO))
    except Exception as exc:
        return [{"error": (str(exc).splitlines() or [type(exc).__name__])[0][:200]}]
    return []


def _prunable_share(student: DerivedStudent) -> float:
    """Share of the graph's float weights (parameters and initializer buffers) in Conv/Linear layers."""
    from torch import nn

    total = sum(p.numel() for p in student.parameters()) + sum(
        b.numel() for b in student.buffers() if b.is_floating_point()
    )
    layers = sum(
        p.numel() for m in student.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) for p in m.parameters()
    )
    return layers / max(1, total)


def build_for_run(ctx: Any, state: Any, config: Any) -> bool:
    """BuildStudent's branch: True when state.student is the derived student; False after a
    prefer_derived fallback (warning recorded), so the designed student is built instead."""
    opts = ctx.spec.options
    mode = wants_derived(opts)
    probe = state.data.inputs_of("train")
    try:
        student, arch = build_derived_student(
            state.teacher, state.signature, ctx.spec.profile, probe, reduction=opts.student.reduction,
            shrink=getattr(config, "derived_shrink", None) or 1.0,
        )  # fmt: skip
    except ConversionError as exc:
        if mode == "derived":
            raise InputError(f"student family derived: {exc}") from exc
        message = f"no derived student ({exc}); the designed student is used"
        state.warnings.append(message)
        ctx.emit("warning", {"message": message})
        return False
    state.student, state.student_arch, state.sizing = student, arch, None
    arch["sizing"] = {"mode": "fixed", "reason": "derived student: the pruning share meets the target cost"}
    ctx.emit(
        "progress",
        {"message": f"student derived: {arch['params']:,} params, {arch['macs']:,} MACs ({arch['chosen_because']})"},
    )
    return True


def derived_training(ctx: Any, state: Any, terms: list[LossTerm], *, student: Any = None) -> tuple[list[LossTerm], Any]:
    """The distill step's part for derived students: (loss terms, features.FeaturePlan or None). KD on
    the outputs plus a FitNets hint term on the exact layer pairs (pairs.py) when the method's terms read
    no features already; options.losses as given. Per-output (multi-I/O) runs train every output with
    its own term, plus the same hint term when the teacher has one input (the teacher-feature reader
    feeds one array). student: the derived module (default state.student)."""
    from edgedistill.workers.steps.derived.pairs import plan_exact_features
    from edgedistill.workers.steps.distill.methods import FITNET_WEIGHT
    from edgedistill.workers.steps.distill.multi import needs_multi

    opts = ctx.spec.options
    notes = state.distillation.setdefault("notes", [])
    if needs_multi(state.signature) and len(state.signature.inputs) != 1:
        notes.append("derived student: one term per teacher output; no hint pairs for teachers with several inputs")
        return terms, None
    if not opts.losses and not any(t.key in FEATURE_KEYS for t in terms):
        terms = [*terms, LossTerm(key="fitnet", weight=FITNET_WEIGHT)]
    if not any(t.key in FEATURE_KEYS and t.weight > 0 for t in terms):
        return terms, None
    converted = convert_teacher(state.teacher, state.data.inputs_of("train"))
    module = state.student if student is None else student
    plan = plan_exact_features(module, converted.module, state.data.x_of("train"), opts.features)
    if plan is None:
        notes.append("derived student: no layer to pair; trained on the outputs only")
        return [t for t in terms if t.key not in FEATURE_KEYS], None
    notes.append(f"derived student: hints at {len(plan.pairs)} exactly corresponding layers (same node names)")
    return terms, plan


def retry_shrink(state: Any, exc: Any, attempt: int, max_retries: int, emit: Any) -> float:
    """BuildStudent.prepare_restart for a derived student over a budget: the factor on the target for
    the next attempt, the last one's times the shortfall the artifact measured (estimate / measured, at
    most 0.8), at most max_retries times (then BudgetError)."""
    from edgedistill.contracts.errors import BudgetError

    if attempt > max_retries:
        raise BudgetError(f"{exc} ({max_retries} retries: giving up)", stage=exc.stage) from exc
    details = getattr(exc, "details", {}) or {}
    old = state.student_arch
    factor = 0.8
    for measured_key, est_key in (("model_bytes", "est_int8_bytes"), ("arena_bytes", "est_arena_bytes")):
        value, estimated = details.get(measured_key), old.get(est_key)
        if isinstance(value, (int, float)) and isinstance(estimated, (int, float)) and value > 0:
            factor = min(factor, 0.95 * float(estimated) / float(value))
    shrink = float(old.get("derived", {}).get("shrink", 1.0)) * factor
    message = f"{exc}; retrying with a derived student {factor:.2f}x the size"
    state.warnings.append(message)
    state.budget.setdefault("shrink_retries", []).append(
        {"attempt": attempt, "reason": str(exc), "details": dict(details), "derived_shrink": shrink}
    )
    emit("warning", {"message": message})
    return max(1e-3, shrink)
