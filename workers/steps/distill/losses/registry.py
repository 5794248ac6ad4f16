"""The loss registry: each loss is a module keyed by name that reads what it needs from a dict of
tensors, so later losses (features, attention, relations) plug in without changing the trainer. A
job's loss is a weighted sum of terms ({key, weight, kwargs}) from its options.

Batch keys: "student_logits" (B, k), "teacher_logits" (B, k), "labels" ((B,) int64 classes or
(B, k) float targets; absent without labels), "prev_logits" (B, k) (an earlier student's outputs,
lifelong runs), and for feature losses "student_features" / "teacher_features": lists with one
tensor per paired layer, (B, C, H, W) or (B, C), spatial sizes already aligned (features.py).

This module imports no loss family: the families import it and register on import, and the
package __init__ imports every family, so build_loss sees them all once the package is imported
(importing this module imports the package first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm

Batch = Mapping[str, Any]
# what the feature losses read
FEATURES = frozenset({"student_logits", "student_features", "teacher_features"})


@dataclass(frozen=True)
class PairShape:
    """Per-sample shapes of one paired student/teacher feature as the batch holds them."""

    student: tuple[int, ...]
    teacher: tuple[int, ...]

    @property
    def spatial(self) -> bool:
        return len(self.student) == 3 and len(self.teacher) == 3


class DistillLoss(nn.Module):
    """Base class: subclasses set key, requires (batch keys) and tasks, and implement forward.

    Losses with learned parts (FitNets' regressors) build them in setup(), once the feature shapes
    are known; their parameters train with the student and are discarded after training."""

    key: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"student_logits", "teacher_logits"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification", "regression"})

    def needs(self) -> frozenset[str]:
        """The batch keys this configured instance reads (some depend on kwargs)."""
        return self.requires

    def setup(self, pairs: Sequence[PairShape]) -> None:
        """Called once before training with the paired feature shapes (no-op by default)."""
        return None

    def forward(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


LOSSES: dict[str, type[DistillLoss]] = {}
L = TypeVar("L", bound=type[DistillLoss])


def register_loss(cls: L) -> L:
    if cls.key in LOSSES:
        raise ValueError(f"loss {cls.key!r} is registered twice")
    LOSSES[cls.key] = cls
    return cls


class WeightedSum(nn.Module):
    """sum_j w_j * L_j(batch) over the configured terms (terms with weight 0 are dropped)."""

    def __init__(self, terms: list[tuple[str, float, DistillLoss]]) -> None:
        super().__init__()
        if not terms:
            raise InputError("the distillation loss has no term with a positive weight")
        self.keys = [k for k, _, _ in terms]
        self.weights = [w for _, w, _ in terms]
        self.losses = nn.ModuleList([m for _, _, m in terms])

    @property
    def requires(self) -> frozenset[str]:
        return frozenset().union(*(m.needs() for m in self.losses if isinstance(m, DistillLoss)))

    @property
    def needs_features(self) -> bool:
        return "student_features" in self.requires

    def setup(self, pairs: Sequence[PairShape]) -> None:
        for m in self.losses:
            if isinstance(m, DistillLoss):
                m.setup(pairs)

    def forward(self, batch: Batch) -> torch.Tensor:
        total = self.weights[0] * self.losses[0](batch)
        for w, loss in zip(self.weights[1:], list(self.losses)[1:], strict=True):
            total = total + w * loss(batch)
        return total

    def describe(self) -> list[dict[str, Any]]:
        return [{"key": k, "weight": w} for k, w in zip(self.keys, self.weights, strict=True)]


_NEEDS_TEXT = {
    "labels": "labels (y in the data)",
    "prev_logits": "an earlier student (options.init_from)",
    "student_features": "intermediate features (a transfer set and a feature-capable teacher)",
    "teacher_features": "intermediate features (a transfer set and a feature-capable teacher)",
}


def build_loss(terms: list[LossTerm], *, task: str, available: set[str]) -> WeightedSum:
    """Instantiate the weighted terms; refuses unknown keys, bad kwargs, terms that need inputs the
    run does not have (labels) or that do not apply to the task."""
    built: list[tuple[str, float, DistillLoss]] = []
    for term in terms:
        cls = LOSSES.get(term.key)
        if cls is None:
            raise InputError(f"unknown loss {term.key!r}; known losses: {', '.join(sorted(LOSSES))}")
        if term.weight == 0:
            continue
        if task not in cls.tasks:
            raise InputError(f"loss {term.key!r} does not apply to {task}")
        try:
            module = cls(**term.kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"loss {term.key!r}: bad kwargs {term.kwargs}: {exc}") from exc
        missing = module.needs() - available
        if missing:
            what = ", ".join(sorted(_NEEDS_TEXT.get(m, m) for m in missing))
            raise InputError(f"loss {term.key!r} needs {what}, which this run does not have")
        built.append((term.key, term.weight, module))
    return WeightedSum(built)
