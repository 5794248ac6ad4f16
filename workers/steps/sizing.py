"""Objective-driven student size (options.sizing auto): the smallest (MCU) or fastest (CPU/mobile)
student within the profile's budgets whose validation quality keeps options.quality_target of the
teacher's, found by a short search over sizes.

1. Pool (build_student): every size of the family's grid that fits the budgets (flash, arena, MACs;
   MCUs also the latency target, estimated as MACs x cycles_per_mac / clock_hz), no larger in
   parameters than the fixed choice (students.choose_arch: the largest within the budgets and
   teacher / 8), at least as deep as that chooser prefers when such sizes exist.
2. Objective: MCUs pay for flash, so the cost is the estimated int8 file; CPUs and phones pay for
   time, and the cost is MACs per inference (the latency proxy: this host is not the device, and its
   timings of students this small are mostly per-call overhead and noise).
3. Ladder: the sizes below the fixed choice that no other size beats on both cost and capacity
   (cheaper with at least as many parameters), within MAX_SPAN of its cost, 2^(n-1) - 1 of them spread
   evenly in log cost, n = options.sizing_max_candidates.
4. Search (distill step): the fixed choice is trained first, exactly as a fixed-size run would train it,
   and judged on the validation split with the run's headline metric against the teacher's. When it
   misses the target no smaller size is tried (so short or hard runs cost nothing extra). When it
   meets it, a binary search over the ladder trains each tried size the same way: met -> try cheaper,
   missed -> try dearer; n trainings at most. The cheapest size that met the target is the student.
Sizes are judged after a full training because short proxies say little here: on digits, 5 epochs
gave 39-60 % validation accuracy where 60 epochs gave 87-97 % for the same five sizes, so a proxy
judged against a 97 % target never passes. The trail (objective, target, every size tried with its
figures and why) is state.student_arch["sizing"]."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.students import StudentEstimate

# the ladder spans at most this factor in cost below the fixed choice: smaller students would not
# keep a teacher's quality, and a wider span leaves coarser steps where the answer usually is
MAX_SPAN = 64.0
# Growing past the fixed choice (teacher / 8): at least twice its parameters, at most half the teacher's,
# only when its validation plateaued (best epoch within the first 70 % of those run, or early stop).
GROW_MIN = 2.0
GROW_TEACHER_RATIO = 2
PLATEAU_SHARE = 0.7


@dataclass
class Rung:
    """One size: its figures, how to build it (seeded, untrained) and its state.student_arch dict."""

    label: str
    width: int
    depth: int
    estimate: StudentEstimate
    build: Callable[[], nn.Module]
    describe: Callable[[nn.Module, str], dict[str, Any]]

    def figures(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "arch": self.label,
            "width": self.width,
            "depth": self.depth,
            "params": e.params,
            "est_int8_bytes": e.est_int8_bytes,
            "est_arena_bytes": e.est_arena_bytes,
            "macs": e.macs,
        }


def objective(profile: DeviceProfile) -> tuple[str, str, str]:
    """(estimate field to minimise, its adjective, in words)."""
    if profile.device_class == "mcu":
        return "est_int8_bytes", "smallest", "smallest estimated int8 file (flash)"
    return "macs", "fastest", "fastest: fewest MACs per inference (the latency proxy)"


def mcu_latency_ok(est: StudentEstimate, profile: DeviceProfile) -> bool:
    target = profile.budgets.latency_target_ms
    if profile.device_class != "mcu" or target is None or profile.cycles_per_mac is None or not profile.clock_hz:
        return True
    return est.macs * profile.cycles_per_mac / profile.clock_hz * 1e3 <= target


def pool(top: Rung, sizes: list[Rung], profile: DeviceProfile, min_depth: int | None) -> list[Rung]:
    """The sizes besides `top` the search may pick (module docstring, 1); `sizes` fit the budgets already."""
    within = [
        r
        for r in sizes
        if r.label != top.label and r.estimate.params <= top.estimate.params and mcu_latency_ok(r.estimate, profile)
    ]
    if min_depth is not None and any(r.depth >= min_depth for r in within):
        within = [r for r in within if r.depth >= min_depth]
    return within


def ladder(top: Rung, sizes: list[Rung], key: str, rungs: int) -> list[Rung]:
    """The cost/capacity front of `sizes` below `top` (no other size is cheaper with at least as many
    parameters), cheapest first, within MAX_SPAN of top's cost, thinned to `rungs` spread evenly in
    log cost; `top` (the fixed choice) is always the last rung."""

    def cost(r: Rung) -> float:
        return float(getattr(r.estimate, key))

    front: list[Rung] = []
    for r in sorted(sizes, key=lambda r: (cost(r), -r.estimate.params)):
        if not cost(top) / MAX_SPAN <= cost(r) < cost(top) or r.estimate.params >= top.estimate.params:
            continue
        if not front or r.estimate.params > front[-1].estimate.params:
            front.append(r)
    front.append(top)
    if len(front) <= rungs:
        return front
    logs = [math.log(max(1.0, cost(r))) for r in front]
    picks = {0, len(front) - 1}
    for i in range(1, rungs - 1):
        goal = logs[0] + (logs[-1] - logs[0]) * i / (rungs - 1)
        free = [j for j in range(len(front)) if j not in picks]
        picks.add(min(free, key=lambda j: abs(logs[j] - goal)))
    return [front[j] for j in sorted(picks)]


def skip_reason(ctx: RunContext, state: RunState, *, pinned: str | None) -> str | None:
    """Why this run takes the fixed choice without a search, or None."""
    opts = ctx.spec.options
    if pinned:
        return pinned
    if opts.sizing == "fixed":
        return "options.sizing is fixed"
    if opts.method == "nas":
        return "method nas searches the architecture itself"
    data = state.data
    if data is None or getattr(data, "synthetic", False) or opts.method == "data_free":
        return "data-free: no transfer set to train sizes on"
    if data.x_of("train").shape[0] < 2 or data.x_of("val").shape[0] < 1:
        return "no training and validation samples to judge sizes on"
    if not all(s in state.teacher_outputs for s in ("train", "val")):
        return "no cached teacher outputs to train sizes on"
    return None


@dataclass
class _Judge:
    """The run's headline metric on the validation split, and the teacher's own figure there."""

    metric: str
    teacher: float
    score: Callable[[nn.Module, Any], float]


def val_judge(ctx: RunContext, state: RunState) -> _Judge:
    import torch

    from edgedistill.workers.steps.distill.multi import needs_multi

    if needs_multi(state.signature):
        # per-output agreement with the teacher (clipped to [0, 1]): the teacher scores 1 by definition
        return _Judge("headline", 1.0, lambda _m, fitted: float(fitted.result.best_val_fidelity))
    from edgedistill.workers.steps.data import primary_targets
    from edgedistill.workers.steps.distill.trainer import predict
    from edgedistill.workers.steps.metrics import evaluate, quality_key

    data = state.data
    y = data.y_of("val")
    key = quality_key(data.task, y is not None)
    teacher = primary_targets(data, state.teacher_outputs["val"])
    ref = evaluate(teacher, task=data.task, teacher=teacher, student=None, labels=y)[key]
    x = torch.as_tensor(np.ascontiguousarray(data.x_of("val"), dtype=np.float32))

    def score(module: nn.Module, _fitted: Any) -> float:
        out = predict(module.cpu(), x).numpy()
        return float(evaluate(out, task=data.task, teacher=teacher, student=None, labels=y)[key])

    return _Judge(key, float(ref), score)


@dataclass
class Ladder:
    """What build_student planned for the distill step's search."""

    top: Rung  # the fixed choice, trained first
    top_reason: str
    below: list[Rung]  # cheapest first
    key: str
    adjective: str
    objective: str
    pool: int
    above: Rung | None = None  # a larger size, tried only when the fixed choice plateaus below the target

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "auto",
            "objective": self.objective,
            "objective_key": self.key,
            "pool": self.pool,
            "ladder": [r.label for r in [*self.below, self.top]],
            "larger": self.above.label if self.above is not None else None,
        }


def larger(top: Rung, sizes: list[Rung], profile: DeviceProfile, teacher_params: int | None) -> Rung | None:
    """The size to grow to when the fixed choice plateaus below the target: within the budgets, at
    least GROW_MIN x its parameters and at most teacher / GROW_TEACHER_RATIO (a student that size
    still earns its place), the largest such, as deep as it; None when there is none."""
    cap = teacher_params // GROW_TEACHER_RATIO if teacher_params else None
    bigger = [
        r
        for r in sizes
        if r.estimate.params >= GROW_MIN * top.estimate.params
        and (cap is None or r.estimate.params <= cap)
        and mcu_latency_ok(r.estimate, profile)
    ]
    # as deep as the fixed choice where possible: width is what a plateaued student lacks first, and a
    # wide one-block network is a different (worse) model family, not a bigger student
    deep = [r for r in bigger if r.depth >= top.depth]
    return max(deep or bigger, key=lambda r: r.estimate.params) if bigger else None


def plateaued(fitted: Any) -> bool:
    """Whether validation stopped improving well before training ended (early stop, or the best epoch
    in the first PLATEAU_SHARE of those run): more capacity, not more epochs, is what could help."""
    result = fitted.result
    epochs = len(result.curve)
    return bool(result.stopped_early) or (epochs >= 5 and result.best_epoch <= PLATEAU_SHARE * epochs)


def plan_ladder(
    top: Rung, top_reason: str, sizes: list[Rung], profile: DeviceProfile, *, min_depth: int | None, candidates: int,
    teacher_params: int | None = None,
) -> Ladder:  # fmt: skip
    key, adjective, words = objective(profile)
    within = pool(top, sizes, profile, min_depth)
    steps = ladder(top, within, key, 2 ** max(0, candidates - 1))
    above = larger(top, sizes, profile, teacher_params) if candidates >= 2 else None
    return Ladder(top, top_reason, steps[:-1], key, adjective, words, len(within) + 1, above)


def prepare(
    ctx: RunContext,
    state: RunState,
    top: Rung,
    top_reason: str,
    sizes: Callable[[], list[Rung]],
    *,
    min_depth: int | None,
    pinned: str | None = None,
) -> tuple[nn.Module, dict[str, Any], Ladder | None]:
    """build_student's part: the fixed choice's module and arch (with the sizing plan or why there is
    no search) and the ladder for the distill step (None: no search)."""
    module = top.build()
    arch = top.describe(module, top_reason)
    why_not = skip_reason(ctx, state, pinned=pinned)
    if why_not is not None:
        arch["sizing"] = {"mode": "fixed", "reason": why_not, "chosen": top.label}
        return module, arch, None
    plan = plan_ladder(
        top, top_reason, sizes(), ctx.spec.profile, min_depth=min_depth,
        candidates=ctx.spec.options.sizing_max_candidates,
        teacher_params=state.teacher.param_count if state.teacher is not None else None,
    )  # fmt: skip
    arch["sizing"] = plan.describe() | {"target": ctx.spec.options.quality_target, "chosen": top.label}
    if (not plan.below and plan.above is None) or ctx.spec.options.sizing_max_candidates < 2:
        arch["sizing"]["chosen_because"] = "no smaller size to try: the fixed choice"
        return module, arch, None
    arch["sizing"]["status"] = "planned: the distill step trains and judges the sizes"
    return module, arch, plan


def search_and_train(
    ctx: RunContext,
    state: RunState,
    ladder_plan: Ladder,
    train: Callable[[nn.Module, int, int], Any],
) -> tuple[nn.Module, Any]:
    """The search (module docstring, 4). train(module, index, expected trainings) trains a module as the
    run would and returns its Fitted. Sets state.student_arch (the chosen size, with the trail)."""
    t0 = time.monotonic()
    opts = ctx.spec.options
    judge = val_judge(ctx, state)
    goal = opts.quality_target * judge.teacher
    below = ladder_plan.below
    expected = 1 + min(opts.sizing_max_candidates - 1, max(1, math.ceil(math.log2(len(below) + 1))))
    tried: list[dict[str, Any]] = []
    results: dict[int, tuple[nn.Module, Any]] = {}

    def trial(index: int, rung: Rung) -> bool:
        ctx.check_cancel()
        module = rung.build()
        fitted = train(module, len(tried), expected)
        q = judge.score(module, fitted)
        met = q >= goal
        kept = q / judge.teacher if judge.teacher > 0 else None
        kept_txt = f"{100 * kept:.1f} %" if kept is not None else f"{q:.4f}"
        results[index] = (module, fitted)
        tried.append(
            rung.figures()
            | {
                "rung": index,
                "val_metric": q,
                "kept": kept,
                "met": met,
                "epochs_run": len(fitted.result.curve),
                "seconds": round(fitted.result.seconds, 3),
                "reason": f"kept {kept_txt} {'>=' if met else '<'} {100 * opts.quality_target:g} %",
            }
        )
        message = f"sizing {len(tried)}: {rung.label}: validation {judge.metric} {q:.4f} (kept {kept_txt})"
        ctx.emit("progress", {"message": message})
        return met

    top_index = len(below)
    rungs = [*below, ladder_plan.top]
    if not trial(top_index, ladder_plan.top):
        grow = ladder_plan.above is not None and plateaued(results[top_index][1])
        if grow and ladder_plan.above is not None:
            tried[-1]["reason"] += ": it missed after its validation plateaued, so a larger size was tried"
            rungs.append(ladder_plan.above)
            if trial(len(rungs) - 1, ladder_plan.above):
                tried[-1]["reason"] += ": the larger size met it"
            else:
                tried[-1]["reason"] += ": the larger size missed too"
        else:
            tried[-1]["reason"] += (
                ": it missed, so no smaller size was tried"
                + ("" if ladder_plan.above is None else "; validation was still improving, so more epochs, not a "
                   "larger student, is the next thing to try")
            )  # fmt: skip
    else:
        tried[-1]["reason"] += ": try cheaper sizes"
        lo, hi = 0, len(below) - 1
        while lo <= hi and len(tried) < opts.sizing_max_candidates:
            mid = (lo + hi) // 2
            if trial(mid, below[mid]):
                tried[-1]["reason"] += ": try a cheaper size"
                hi = mid - 1
            else:
                tried[-1]["reason"] += ": try a dearer size"
                lo = mid + 1
    met_rows = [r for r in tried if r["met"]]
    # none met: the best validation figure (the larger size when it was tried and did better)
    best = min(met_rows, key=lambda r: r["rung"]) if met_rows else max(tried, key=lambda r: r["val_metric"])
    for r in tried:
        r["chosen"] = r is best
    chosen = rungs[best["rung"]]
    target_txt = f"{100 * opts.quality_target:g} % of the teacher's validation {judge.metric}"
    if not met_rows:
        because = (
            f"the best of {len(tried)} sizes tried; none kept {target_txt}"
            if len(tried) > 1
            else f"the fixed choice: it missed {target_txt}, so no smaller size was tried"
        )
    elif best["rung"] > top_index:
        because = (
            f"a larger size than the fixed choice: that one missed {target_txt} after plateauing, this one kept it"
        )
    elif best["rung"] == top_index:
        because = f"the only one of {len(tried)} sizes tried that kept {target_txt}"
    else:
        because = f"{ladder_plan.adjective} of {len(tried)} sizes tried that kept {target_txt}"
    module, fitted = results[best["rung"]]
    reason = (
        f"{because}; searched among sizes within the budgets of {ctx.spec.profile.name} no larger than "
        f"{ladder_plan.top.label} ({ladder_plan.top_reason})"
    )
    state.student = module
    state.student_arch = chosen.describe(module, reason)
    state.student_arch["sizing"] = ladder_plan.describe() | {
        "target": opts.quality_target,
        "metric": judge.metric,
        "teacher": judge.teacher,
        "split": "val",
        "tried": tried,
        "met_target": bool(met_rows),
        "chosen": chosen.label,
        "chosen_because": because,
        "seconds": round(time.monotonic() - t0, 3),
    }
    return module, fitted


# --------------------------------------------------------------------------------------------------
# rungs of the two student kinds
# --------------------------------------------------------------------------------------------------


def single_rung(arch: Any, est: StudentEstimate, x_train: np.ndarray, seed: int) -> Rung:
    """A students.StudentArch (one input, one output) as a rung."""
    from edgedistill.workers.steps.students import MLP, Choice, seeded_module

    def describe(module: nn.Module, reason: str) -> dict[str, Any]:
        state = Choice(arch, est, reason).as_state()
        if isinstance(module, MLP) and hasattr(module, "input_mean"):
            # how the float MLP standardises its inputs (folded into its first layer after training)
            state["input_standardization"] = {"mean": module.input_mean.tolist(), "std": module.input_std.tolist()}
        return state

    return Rung(arch.label(), arch.width, arch.depth, est, lambda: seeded_module(arch, x_train, seed), describe)


def multi_rung(
    signature: Any, stats: Any, width: int, depth: int, vocab: dict[str, int], est: StudentEstimate, seed: int,
    *, grids: Any = None, teacher_outputs: Any = None, grid_notes: Any = None,
) -> Rung:  # fmt: skip
    """A students_multi.MultiStudent size as a rung; per-anchor heads on the teacher's anchor grids
    (students_multi.anchor_grids) with biases primed from the teacher's outputs."""
    import torch

    from edgedistill.workers.steps.students_multi import MultiChoice, MultiStudent

    primed: list[str] = []

    def build() -> nn.Module:
        torch.manual_seed(seed)
        module = MultiStudent(signature, width, depth, vocab, stats, grids)
        primed[:] = module.init_heads_from_teacher(signature, teacher_outputs)
        return module

    def describe(module: nn.Module, reason: str) -> dict[str, Any]:
        arch = MultiChoice(module, width, depth, vocab, est, reason).as_state(signature)
        if primed:
            arch["head_bias_init"] = {n: "the teacher's mean output per anchor of a cell and level" for n in primed}
        if grid_notes:
            arch["anchor_grid_inference"] = grid_notes
        return arch

    return Rung(f"multi w{width} d{depth}", width, depth, est, build, describe)
