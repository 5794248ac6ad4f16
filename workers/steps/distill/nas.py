"""NAS-based student search (method nas): width, depth, depthwise kernel and expansion of the
student family, under the device profile's budgets, within options.nas_time_budget_s.

1. The grid: every (width, depth, kernel, expansion) of the family (MLPs: width, depth). Each
   candidate's parameters, MACs, int8 bytes and arena come from the same layer plan the exports are
   estimated with (students.estimate); those over the flash / arena / MAC budgets, or not 8x smaller
   than the teacher, are infeasible. Latency: on MCUs estimated as MACs x cycles_per_mac / clock_hz
   (the benchmark step's formula); on CPUs and phones measured on this host (a quick ONNX export run
   by onnxruntime at batch 1 with the profile's threads). Over latency_target_ms: infeasible.
2. Cheap proxy: up to options.nas_max_candidates feasible candidates, spread evenly over the size
   range (plus the student the default chooser picks), are trained for options.nas_proxy_epochs with
   the method's loss; score = validation fidelity (top-1 agreement with the teacher). The proxy
   phase stops at half the time budget.
3. The Pareto front over (latency, proxy score) is marked; the options.nas_finalists best proxy
   scores on the front are trained fully (options.epochs, sharing the remaining time), and the best
   validation fidelity wins (ties: fewer parameters).
The report lists every candidate with size, latency (estimated or measured) and accuracy, the front
and the choice."""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgedistill.contracts.errors import BudgetError
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.distill.methods import Plan
from edgedistill.workers.steps.students import (
    CNN_DEPTHS,
    CNN_WIDTHS,
    FAMILY_BY_MODALITY,
    MLP,
    MLP_DEPTHS,
    MLP_WIDTHS,
    TEACHER_PARAM_RATIO,
    StudentArch,
    StudentEstimate,
    budget_violation,
    estimate,
    seeded_module,
)

KERNELS = {"ds_cnn2d": (3, 5), "ds_cnn1d": (3, 5, 7)}
EXPANSIONS = (1, 2, 4)
LATENCY_RUNS = 20
PROXY_SHARE = 0.5  # of the time budget


@dataclass
class Candidate:
    arch: StudentArch
    est: StudentEstimate
    feasible: bool = True
    why_not: str | None = None
    latency_ms: float | None = None
    latency_source: str | None = None  # estimated | measured
    proxy_fidelity: float | None = None
    proxy_accuracy: float | None = None
    proxy_seconds: float | None = None
    final_fidelity: float | None = None
    final_accuracy: float | None = None
    status: str = "not sampled"
    pareto: bool = False
    chosen: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        a = self.arch
        return {
            "label": a.label(),
            "width": a.width,
            "depth": a.depth,
            "kernel": a.dw_kernel if a.family != "mlp" else None,
            "expansion": a.expansion,
            "params": self.est.params,
            "macs": self.est.macs,
            "est_int8_bytes": self.est.est_int8_bytes,
            "est_arena_bytes": self.est.est_arena_bytes,
            "latency_ms": self.latency_ms,
            "latency_source": self.latency_source,
            "proxy_val_fidelity": self.proxy_fidelity,
            "proxy_val_accuracy": self.proxy_accuracy,
            "proxy_seconds": self.proxy_seconds,
            "final_val_fidelity": self.final_fidelity,
            "final_val_accuracy": self.final_accuracy,
            "status": self.status,
            "pareto": self.pareto,
            "chosen": self.chosen,
        }


def grid(family: str, input_shape: tuple[int, ...], num_outputs: int, pins: dict[str, int | None]) -> list[StudentArch]:
    """Every architecture of the family, with the options' pinned dimensions fixed."""
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int | None, ...]
    expansions: tuple[int, ...]
    if family == "mlp":
        widths, depths, kernels, expansions = MLP_WIDTHS, MLP_DEPTHS, (None,), (1,)
    else:
        widths, depths, kernels, expansions = CNN_WIDTHS, CNN_DEPTHS, KERNELS[family], EXPANSIONS
    width, depth, kernel, expansion = (pins.get(k) for k in ("width", "depth", "kernel", "expansion"))
    if width:
        widths = (int(width),)
    if depth:
        depths = (int(depth),)
    if kernel and family != "mlp":
        kernels = (int(kernel),)
    if expansion and family != "mlp":
        expansions = (int(expansion),)
    return [
        StudentArch(family, tuple(input_shape), num_outputs, w, d, kernel=k, expansion=e)  # type: ignore[arg-type]
        for w in widths
        for d in depths
        for k in kernels
        for e in expansions
    ]


def mcu_latency_ms(macs: int, profile: DeviceProfile) -> float | None:
    if profile.cycles_per_mac is None or profile.clock_hz is None:
        return None
    return macs * profile.cycles_per_mac / profile.clock_hz * 1e3


def host_latency_ms(module: nn.Module, example: np.ndarray, threads: int, work: Path) -> float:
    """p50 of LATENCY_RUNS onnxruntime calls at batch 1 on a quick ONNX export of module."""
    from edgedistill.runtimes.onnx import OnnxModel
    from edgedistill.workers.steps.benchmark import time_calls
    from edgedistill.workers.steps.export_onnx import export_student_onnx

    with tempfile.TemporaryDirectory(dir=work, prefix=".nas-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        export_student_onnx(module, example[:1], path)
        model = OnnxModel(path, threads)
        x1 = np.ascontiguousarray(example[:1], dtype=np.float32)
        samples = time_calls(lambda: model.run_batch(x1), warmup=3, runs=LATENCY_RUNS)
    return float(np.percentile(np.asarray(samples) / 1e6, 50))


def _finalists_origin(finalists: list[Candidate]) -> str:
    """Where the finalists came from: the front first; a front smaller than options.nas_finalists is
    topped up by the best remaining proxy scores, so the chosen one need not lie on it."""
    on_front = sum(c.pareto for c in finalists)
    rest = len(finalists) - on_front
    return f"{on_front} on the Pareto front" + (f", {rest} next-best by proxy score" if rest else "")


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """points: (cost, score); a point is on the front when no other has cost <= and score >= with
    one of them strict."""
    out = []
    for i, (c, s) in enumerate(points):
        dominated = any((c2 <= c and s2 >= s and (c2 < c or s2 > s)) for j, (c2, s2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def sample_evenly(items: list[Candidate], k: int) -> list[Candidate]:
    if len(items) <= k:
        return list(items)
    idx = sorted({round(i) for i in np.linspace(0, len(items) - 1, k)})
    return [items[i] for i in idx]


def new_student(arch: StudentArch, x_train: np.ndarray, seed: int) -> nn.Module:
    return seeded_module(arch, x_train, seed)


def search_and_train(ctx: RunContext, state: RunState, plan: Plan, start: float, end: float) -> tuple[nn.Module, Any]:
    """The search (module docstring); returns the trained winner and its Fitted record."""
    from edgedistill.workers.steps.distill.fitting import epoch_reporter, fit
    from edgedistill.workers.steps.distill.trainer import TrainConfig

    t0 = time.monotonic()
    opts, data, profile = ctx.spec.options, state.data, ctx.spec.profile
    budget_s = opts.nas_time_budget_s
    family = FAMILY_BY_MODALITY[data.modality]
    teacher_params = getattr(state.teacher, "param_count", None)
    limit = teacher_params // TEACHER_PARAM_RATIO if teacher_params else None
    pins = opts.student.model_dump()
    x_train = data.x_of("train")
    threads = profile.threads

    cands = []
    for arch in grid(family, data.sample_shape, data.num_outputs, pins):
        c = Candidate(arch, estimate(arch))
        c.why_not = budget_violation(c.est, profile)
        if c.why_not is None and limit is not None and c.est.params > limit:
            c.why_not = f"{c.est.params:,} parameters, over teacher / {TEACHER_PARAM_RATIO} = {limit:,}"
        if profile.device_class == "mcu":
            c.latency_ms, c.latency_source = mcu_latency_ms(c.est.macs, profile), "estimated"
            target = profile.budgets.latency_target_ms
            if c.why_not is None and target is not None and c.latency_ms is not None and c.latency_ms > target:
                c.why_not = f"estimated {c.latency_ms:.1f} ms, over latency_target_ms={target:g}"
        c.feasible = c.why_not is None
        c.status = "infeasible" if not c.feasible else "not sampled"
        cands.append(c)
    feasible = sorted((c for c in cands if c.feasible), key=lambda c: (c.est.params, c.est.macs))
    if not feasible:
        raise BudgetError(f"method nas: no {family} student in the search space fits profile {profile.name!r}")
    default = StudentArch.from_dict(state.student_arch) if state.student_arch else None
    sampled = sample_evenly(feasible, opts.nas_max_candidates)
    if default is not None:
        match = next((c for c in feasible if c.arch == default), None)
        if match is not None and match not in sampled:
            if len(sampled) < opts.nas_max_candidates:
                sampled.append(match)
            else:  # replace the sampled candidate closest in size
                k = min(range(len(sampled)), key=lambda i: abs(sampled[i].est.params - match.est.params))
                sampled[k] = match
            sampled.sort(key=lambda c: (c.est.params, c.est.macs))
    ctx.emit(
        "progress",
        {"message": f"NAS: {len(cands)} architectures, {len(feasible)} within budget, proxy-training {len(sampled)}"},
    )

    # latency on this host for CPU/phone profiles (MCUs were estimated above)
    if profile.device_class != "mcu":
        for c in sampled:
            c.latency_ms = host_latency_ms(new_student(c.arch, x_train, opts.seed), x_train, threads, ctx.work_dir)
            c.latency_source = "measured"
        target = profile.budgets.latency_target_ms
        for c in sampled:
            if target is not None and c.latency_ms is not None and c.latency_ms > target:
                c.feasible, c.status = False, "infeasible"
                c.why_not = f"measured {c.latency_ms:.3f} ms on this host, over latency_target_ms={target:g}"
        sampled = [c for c in sampled if c.feasible]
        if not sampled:
            raise BudgetError(f"method nas: no sampled student meets latency_target_ms={target} on this host")

    # cheap proxy
    proxy_cfg = replace(TrainConfig.from_options(opts, ctx.torch_device), epochs=opts.nas_proxy_epochs)
    proxy_deadline = t0 + PROXY_SHARE * budget_s
    span = (end - start) * PROXY_SHARE
    for i, c in enumerate(sampled):
        if time.monotonic() > proxy_deadline and i > 0:
            c.status = "skipped (time budget)"
            continue
        ctx.check_cancel()
        left = max(1e-3, proxy_deadline - time.monotonic())
        module = new_student(c.arch, x_train, opts.seed)
        fitted = fit(
            ctx, state, module, plan.terms, replace(proxy_cfg, max_train_seconds=left),
            on_epoch=None,
        )  # fmt: skip
        c.proxy_fidelity = fitted.result.best_val_fidelity
        c.proxy_accuracy = fitted.result.best_val_accuracy
        c.proxy_seconds = round(fitted.result.seconds, 3)
        c.status = "proxy"
        ctx.emit(
            "progress",
            {"message": f"NAS proxy {i + 1}/{len(sampled)} {c.arch.label()}: val fidelity {c.proxy_fidelity:.4f}"},
            progress=start + span * (i + 1) / len(sampled),
        )
    evaluated = [c for c in sampled if c.proxy_fidelity is not None]
    costs = [
        (c.latency_ms if c.latency_ms is not None else float(c.est.macs), c.proxy_fidelity or 0.0) for c in evaluated
    ]
    for c, on_front in zip(evaluated, pareto_front(costs), strict=True):
        c.pareto = on_front
    ranked = sorted(evaluated, key=lambda c: (not c.pareto, -(c.proxy_fidelity or 0.0), c.est.params))
    finalists = ranked[: opts.nas_finalists]

    # full training of the finalists
    best: tuple[Candidate, nn.Module, Any] | None = None
    for j, c in enumerate(finalists):
        ctx.check_cancel()
        remaining = max(1e-3, (t0 + budget_s - time.monotonic()) / (len(finalists) - j))
        module = new_student(c.arch, x_train, opts.seed)
        lo = start + span + (end - start - span) * j / len(finalists)
        hi = start + span + (end - start - span) * (j + 1) / len(finalists)
        cfg = replace(TrainConfig.from_options(opts, ctx.torch_device), max_train_seconds=remaining)
        if opts.max_train_seconds is not None:
            cfg = replace(cfg, max_train_seconds=min(remaining, opts.max_train_seconds))
        fitted = fit(ctx, state, module, plan.terms, cfg, on_epoch=epoch_reporter(ctx, lo, hi))
        c.final_fidelity = fitted.result.best_val_fidelity
        c.final_accuracy = fitted.result.best_val_accuracy
        c.status = "finalist"
        key = (c.final_fidelity, -c.est.params)
        if best is None or key > (best[0].final_fidelity, -best[0].est.params):
            best = (c, module, fitted)
    assert best is not None
    chosen, student, fitted = best
    chosen.chosen = True
    state.student = student
    state.student_arch = {
        **chosen.arch.to_dict(),
        "params": chosen.est.params,
        "macs": chosen.est.macs,
        "est_int8_bytes": chosen.est.est_int8_bytes,
        "est_arena_bytes": chosen.est.est_arena_bytes,
        "chosen_because": f"NAS: best validation fidelity ({chosen.final_fidelity:.4f}) of {len(finalists)} "
        f"finalists ({_finalists_origin(finalists)}) of {len(evaluated)} proxy-trained candidates",
    }
    if isinstance(student, MLP):
        state.student_arch["input_standardization"] = {
            "mean": student.input_mean.tolist(),
            "std": student.input_std.tolist(),
        }
    listed = sorted(cands, key=lambda c: (c.status == "infeasible", c.status == "not sampled", c.est.params))
    state.distillation["nas"] = {
        "search_space": {
            "family": family,
            "size": len(cands),
            "feasible": len(feasible),
            "dimensions": ["width", "depth"] + (["kernel", "expansion"] if family != "mlp" else []),
        },
        "time_budget_s": budget_s,
        "seconds": round(time.monotonic() - t0, 3),
        "proxy_epochs": opts.nas_proxy_epochs,
        "latency_basis": "estimated: MACs x cycles_per_mac / clock_hz"
        if profile.device_class == "mcu"
        else f"measured on this host: onnxruntime, batch 1, {threads} thread(s), p50 of {LATENCY_RUNS}",
        "pareto_axes": ["latency_ms (lower)", "proxy_val_fidelity (higher)"],
        "pareto": [c.arch.label() for c in evaluated if c.pareto],
        "chosen": chosen.arch.label(),
        # infeasible and unsampled architectures: counted above, the first 100 listed with why
        "candidates": [c.describe() | ({"why_not": c.why_not} if c.why_not else {}) for c in listed[:200]],
    }
    if not math.isfinite(chosen.final_fidelity or 0.0):
        state.warnings.append("NAS: the chosen student's validation fidelity is not finite")
    return student, fitted
