"""Hint pairs at exactly corresponding layers for derived students.

The student is the teacher's converted graph with channels removed (and maybe whole layers skipped), so
its every remaining layer IS a teacher layer: node N of the student pairs with node N of the unpruned
converted teacher (GraphTaps reads those with forward hooks; the converted graph computes what the
teacher computes, convert.check_against_teacher). Candidate taps are the outputs of activations, pools
and residual adds that survive in the student; of those, the deepest at each spatial resolution (up to
options.features.max_pairs, deepest first), as features.auto_pairs does for designed students, except that
the teacher side is the same layer instead of the closest in depth. Only the channel counts differ, which
the FitNets regressor (losses/feature.py) maps.

The result is a features.FeaturePlan, so the trainer, the cache budget (features.fit_cache) and the
report are the ones every feature method uses. Single-input teachers only (TeacherTaps feed one array)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import fx, nn

from edgedistill.contracts.spec import FeatureOptions
from edgedistill.workers.steps.derived.prune import DerivedStudent, _is_add, shapes_of
from edgedistill.workers.steps.distill.features import (
    STUDENT_ACTIVATIONS,
    FeaturePlan,
    Pair,
    Tap,
    TeacherTaps,
    _grid,
    _usable,
    align,
    as_feature,
    fit_cache,
)

POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
)  # fmt: skip
POOL_NAMES = ("GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool")


def tap_nodes(gm: fx.GraphModule) -> list[str]:
    """Node names of the graph's candidate features, in execution order."""
    names = []
    for n in gm.graph.nodes:
        if n.op != "call_module":
            continue
        mod = gm.get_submodule(str(n.target))
        cls = type(mod).__name__
        if isinstance(mod, STUDENT_ACTIVATIONS + POOLS) or any(p in cls for p in POOL_NAMES) or _is_add(gm, n):
            names.append(n.name)
    return names


class GraphTaps(TeacherTaps):
    """Features of the unpruned converted teacher by node (= module) name."""

    kind = "the converted teacher graph (onnx2torch), same layers as the student"

    def __init__(self, gm: fx.GraphModule, input_dtype: str, probe: np.ndarray) -> None:
        self._gm = gm.eval()
        self._dtype = getattr(torch, input_dtype)
        names = tap_nodes(gm)
        shapes = shapes_of(gm, (torch.as_tensor(np.ascontiguousarray(probe[:2])).to(self._dtype),))
        usable = [n for n in names if n in shapes and _usable(shapes[n])]
        self.candidates = [Tap(n, shapes[n], i, len(usable)) for i, n in enumerate(usable)]

    def _run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        got: dict[str, torch.Tensor] = {}
        handles = [
            self._gm.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: got.__setitem__(n, out))
            for n in names
        ]
        try:
            with torch.inference_mode():
                self._gm(torch.from_numpy(x).to(self._dtype))
        finally:
            for h in handles:
                h.remove()
        return [got[n].float().numpy() for n in names]


def exact_pairs(student: DerivedStudent, taps: GraphTaps, probe: np.ndarray, max_pairs: int) -> list[Pair]:
    """The pairs (module docstring): student net.N with teacher N."""
    net = student.net
    arg = torch.as_tensor(np.ascontiguousarray(probe[:2])).to(getattr(torch, student.input_dtypes[0]))
    shapes = shapes_of(net, (arg,))
    teacher = {t.name: t for t in taps.candidates}
    names = [n for n in tap_nodes(net) if n in teacher and n in shapes and _usable(shapes[n])]
    students = [Tap(f"net.{n}", shapes[n], i, len(names)) for i, n in enumerate(names)]
    deepest: dict[tuple[int, ...], Tap] = {}
    for s in students:
        deepest[s.norm_shape[1:]] = s
    chosen = sorted(deepest.values(), key=lambda t: t.index, reverse=True)[:max_pairs]
    chosen.sort(key=lambda t: t.index)
    pairs = []
    for s in chosen:
        t = teacher[s.name.removeprefix("net.")]
        pairs.append(Pair(s, t, _grid(s, t), "the same layer of the teacher (derived student)"))
    return pairs


def plan_exact_features(
    student: DerivedStudent, teacher_graph: fx.GraphModule, x_train: np.ndarray, opts: FeatureOptions
) -> FeaturePlan | None:
    """The FeaturePlan (pairs + float16 teacher-feature cache over x_train), None when no layer pairs."""
    taps = GraphTaps(teacher_graph, student.input_dtypes[0], x_train)
    pairs = exact_pairs(student, taps, x_train, opts.max_pairs)
    if not pairs:
        return None
    pairs, notes = fit_cache(pairs, x_train.shape[0], opts.cache_mb * 2**20)
    cache = [np.empty((x_train.shape[0], *p.teacher_shape), dtype=np.float16) for p in pairs]
    start = 0
    for batch in taps.run(x_train, [p.teacher.name for p in pairs]):
        n = batch[0].shape[0]
        for c, f, p in zip(cache, batch, pairs, strict=True):
            c[start : start + n] = align(as_feature(torch.from_numpy(f)), p.teacher_shape).numpy().astype(np.float16)
        start += n
    return FeaturePlan(
        pairs=pairs, teacher_kind=taps.kind, cache=cache, notes=notes,
        student_candidates=[p.student for p in pairs], teacher_candidates=list(taps.candidates),
    )  # fmt: skip
