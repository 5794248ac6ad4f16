"""Distillation losses as a registry: each loss is a module keyed by name that reads what it needs
from a dict of tensors, so later losses (features, attention, relations) plug in without changing
the trainer. A job's loss is a weighted sum of terms ({key, weight, kwargs}) from its options.

Batch keys: "student_logits" (B, k), "teacher_logits" (B, k), "labels" ((B,) int64 classes or
(B, k) float targets; absent without labels). Feature losses will add their own keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from workers.pipeline.errors import InputError
from workers.pipeline.spec import LossTerm

Batch = Mapping[str, torch.Tensor]


class DistillLoss(nn.Module):
    """Base class: subclasses set key, requires (batch keys) and tasks, and implement forward."""

    key: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"student_logits", "teacher_logits"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification", "regression"})

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
        return frozenset().union(*(m.requires for m in self.losses if isinstance(m, DistillLoss)))

    def forward(self, batch: Batch) -> torch.Tensor:
        total = self.weights[0] * self.losses[0](batch)
        for w, loss in zip(self.weights[1:], list(self.losses)[1:], strict=True):
            total = total + w * loss(batch)
        return total

    def describe(self) -> list[dict[str, Any]]:
        return [{"key": k, "weight": w} for k, w in zip(self.keys, self.weights, strict=True)]


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
        missing = cls.requires - available
        if missing:
            what = "labels (y in the data)" if "labels" in missing else ", ".join(sorted(missing))
            raise InputError(f"loss {term.key!r} needs {what}, which this run does not have")
        if task not in cls.tasks:
            raise InputError(f"loss {term.key!r} does not apply to {task}")
        try:
            module = cls(**term.kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"loss {term.key!r}: bad kwargs {term.kwargs}: {exc}") from exc
        built.append((term.key, term.weight, module))
    return WeightedSum(built)


MethodTerms = Callable[..., list[LossTerm]]


def _kd_terms(*, task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    """Hinton KD: alpha * KD + (1 - alpha) * CE with labels; output MSE for regression."""
    if task == "regression":
        terms = [LossTerm(key="mse_logits", weight=alpha if has_labels else 1.0)]
        if has_labels and alpha < 1:
            terms.append(LossTerm(key="mse_labels", weight=1 - alpha))
        return terms
    terms = [LossTerm(key="kd", weight=alpha if has_labels else 1.0, kwargs={"temperature": temperature})]
    if has_labels and alpha < 1:
        terms.append(LossTerm(key="ce", weight=1 - alpha))
    return terms


# method name -> default terms; more methods arrive with the feature/relational losses.
METHODS: dict[str, MethodTerms] = {"kd": _kd_terms}


def method_terms(method: str, *, task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    fn = METHODS.get(method)
    if fn is None:
        raise InputError(f"unknown distillation method {method!r}; known: {', '.join(sorted(METHODS))}")
    return fn(task=task, has_labels=has_labels, alpha=alpha, temperature=temperature)
