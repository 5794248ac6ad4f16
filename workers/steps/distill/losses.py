"""Distillation losses as a registry: each loss is a module keyed by name that reads what it needs
from a dict of tensors, so later losses (features, attention, relations) plug in without changing
the trainer. A job's loss is a weighted sum of terms ({key, weight, kwargs}) from its options.

Batch keys: "student_logits" (B, k), "teacher_logits" (B, k), "labels" ((B,) int64 classes or
(B, k) float targets; absent without labels), "prev_logits" (B, k) (an earlier student's outputs,
lifelong runs), and for feature losses "student_features" / "teacher_features": lists with one
tensor per paired layer, (B, C, H, W) or (B, C), spatial sizes already aligned (features.py).

Losses live in five modules that register on import: this one (single outputs), output_losses.py
(one term per output of any kind, for multi-output teachers), feature_losses.py (FitNets, attention
transfer), relational_losses.py (RKD, similarity-preserving) and transformer_losses.py (MiniLM,
TinyBERT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.workers.pipeline.errors import InputError
from edgedistill.workers.pipeline.spec import LossTerm

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


@register_loss
class KDLoss(DistillLoss):
    """Soft-target distillation, Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural
    Network" (arXiv:1503.02531):

        L = T^2 * mean_batch KL( softmax(t / T) || softmax(s / T) )
          = T^2 * mean_batch sum_i p_i (log p_i - log q_i),  p = softmax(t/T), q = softmax(s/T)

    The T^2 factor keeps the gradient scale independent of the temperature."""

    key = "kd"
    tasks = frozenset({"classification"})

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)

    def forward(self, batch: Batch) -> torch.Tensor:
        t = self.temperature
        log_q = F.log_softmax(batch["student_logits"] / t, dim=1)
        log_p = F.log_softmax(batch["teacher_logits"] / t, dim=1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * (t * t)


@register_loss
class CrossEntropyLoss(DistillLoss):
    """Hard-label cross-entropy: L = -mean_batch log softmax(s)_y (optionally with label smoothing,
    Szegedy et al. 2016, arXiv:1512.00567: targets (1 - e) one_hot(y) + e / k)."""

    key = "ce"
    requires = frozenset({"student_logits", "labels"})
    tasks = frozenset({"classification"})

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        self.label_smoothing = float(label_smoothing)

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(batch["student_logits"], batch["labels"], label_smoothing=self.label_smoothing)


@register_loss
class MSELogitsLoss(DistillLoss):
    """Output matching by mean squared error, L = mean (s - t)^2: the regression form of
    distillation, and logit matching for classifiers (Ba & Caruana 2014, "Do Deep Nets Really
    Need to be Deep?", arXiv:1312.6184)."""

    key = "mse_logits"

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.mse_loss(batch["student_logits"], batch["teacher_logits"])


@register_loss
class MSELabelsLoss(DistillLoss):
    """Regression targets: L = mean (s - y)^2 over the batch and output columns."""

    key = "mse_labels"
    requires = frozenset({"student_logits", "labels"})
    tasks = frozenset({"regression"})

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.mse_loss(batch["student_logits"], batch["labels"])


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


@register_loss
class L1LogitsLoss(DistillLoss):
    """Mean absolute error between student and teacher outputs, the student's loss in Data-Free
    Adversarial Distillation (Fang et al. 2019, arXiv:1912.11006), where it also bounds the KL:

        L = 1/(B k) sum_b sum_i |s_bi - t_bi|"""

    key = "l1_logits"

    def forward(self, batch: Batch) -> torch.Tensor:
        return (batch["student_logits"] - batch["teacher_logits"]).abs().mean()


@register_loss
class LwFLoss(DistillLoss):
    """Learning without Forgetting (Li & Hoiem 2016, arXiv:1606.09282): keep an earlier model's
    responses on the new data with the paper's knowledge-distillation cross-entropy, T = 2:

        L = -mean_batch sum_i p'_i log q'_i,  p' = softmax(prev / T), q' = softmax(s / T)

    (equal to KL(p' || q') plus the constant entropy of p', so the same gradient)."""

    key = "lwf"
    requires = frozenset({"student_logits", "prev_logits"})
    tasks = frozenset({"classification"})

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)

    def forward(self, batch: Batch) -> torch.Tensor:
        t = self.temperature
        p = F.softmax(batch["prev_logits"] / t, dim=1)
        return -(p * F.log_softmax(batch["student_logits"] / t, dim=1)).sum(1).mean()


@register_loss
class LwFMSELoss(DistillLoss):
    """Learning without Forgetting for regression outputs (Li & Hoiem 2016, arXiv:1606.09282, with
    the squared error in place of the cross-entropy): L = mean (s - prev)^2."""

    key = "lwf_mse"
    requires = frozenset({"student_logits", "prev_logits"})
    tasks = frozenset({"regression"})

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.mse_loss(batch["student_logits"], batch["prev_logits"])


def method_terms(method: str, *, task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    """The default weighted terms of a distillation method (workers.steps.distill.methods)."""
    from edgedistill.workers.steps.distill.methods import default_terms

    return default_terms(method, task=task, has_labels=has_labels, alpha=alpha, temperature=temperature)


# The feature and relational losses register themselves on import.
from edgedistill.workers.steps.distill import (  # noqa: E402, F401
    feature_losses,
    output_losses,
    relational_losses,
    transformer_losses,
)
