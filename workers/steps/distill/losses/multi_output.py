"""Per-output distillation losses for teachers with several outputs or outputs of any kind: each
term reads one output of the raw student (the engine contract: logits for the softmax kinds,
pre-sigmoid scores for the sigmoid kinds, plain values otherwise) and the teacher's cached output
as the teacher gives it. methods.output_terms builds one term per trained output, weighted by
options.outputs[name].weight; class-index outputs get none.

Batch keys: "student_outputs" / "teacher_outputs": lists in the student's output order (class
indices excluded), each (B, *per-sample shape); "labels" as in registry.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgedistill.workers.steps.distill.losses.registry import Batch, DistillLoss, register_loss

OUTPUTS = frozenset({"student_outputs", "teacher_outputs"})
TEACHER_SPACES = ("logits", "probabilities", "log_probabilities")
SCORE_SPACES = ("sigmoid", "multilabel", "sigmoid_logits")


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, ..., k) -> (B * ..., k): per-position class scores count as rows."""
    return t.reshape(-1, t.shape[-1]) if t.ndim > 2 else t.reshape(t.shape[0], -1)


def teacher_log_probs(t: torch.Tensor, space: str, temperature: float) -> torch.Tensor:
    """log softmax(teacher logits / T); probabilities and log-probabilities are logits up to a per-row
    constant (log p), which the softmax ignores."""
    if space == "probabilities":
        t = torch.log(t.clamp_min(1e-12))
    return F.log_softmax(t / temperature, dim=-1)


# BCE against p is smallest at the student logit log(p / (1 - p)), so a teacher at p ~ 0 (BlazeFace's
# empty anchors: logit -30,000) lowers the student's logits for as long as it trains, and int8 spends its
# 256 steps on that range (BlazeFace, 60 epochs: a 367-wide score tensor, 12 pp of agreement lost to
# int8). Targets within sigmoid(+-8) bound the student's logits and change no decision.
LOGIT_BOUND = 8.0


def teacher_probs(t: torch.Tensor, space: str) -> torch.Tensor:
    return torch.sigmoid(t) if space == "sigmoid_logits" else t.clamp(0.0, 1.0)


def bounded_targets(t: torch.Tensor, space: str, bound: float) -> torch.Tensor:
    """The teacher's probabilities as BCE targets, within [sigmoid(-bound), sigmoid(bound)]."""
    if space == "sigmoid_logits":
        return torch.sigmoid(t.clamp(-bound, bound))
    lo = 1.0 / (1.0 + math.exp(bound))
    return t.clamp(lo, 1.0 - lo)


class _OutputLoss(DistillLoss):
    requires = OUTPUTS

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        if index < 0:
            raise ValueError("index must be >= 0")
        self.index = int(index)

    def pair(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["student_outputs"][self.index], batch["teacher_outputs"][self.index]


@register_loss
class KLOutputLoss(_OutputLoss):
    """Hinton et al. 2015 (arXiv:1503.02531) on one class-score output, over every row (per-frame or
    per-position scores count as rows):

        L = T^2 * mean_rows KL( softmax(t / T) || softmax(s / T) ),
        t = teacher logits, or log p for probabilities / log-probabilities outputs"""

    key = "kl_output"
    tasks = frozenset({"classification", "regression"})

    def __init__(self, index: int = 0, temperature: float = 4.0, teacher_space: str = "logits") -> None:
        super().__init__(index)
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        if teacher_space not in TEACHER_SPACES:
            raise ValueError(f"teacher_space must be one of {TEACHER_SPACES}")
        self.temperature, self.teacher_space = float(temperature), teacher_space

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self.pair(batch)
        T = self.temperature
        log_q = F.log_softmax(_rows(s) / T, dim=-1)
        log_p = teacher_log_probs(_rows(t), self.teacher_space, T)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * (T * T)


@register_loss
class BCEOutputLoss(_OutputLoss):
    """Binary cross-entropy against the teacher's probabilities (soft targets for independent
    sigmoid units, as in multi-label distillation, e.g. Liu et al. 2018 "Multi-Label Image
    Classification via Knowledge Distillation from Weakly-Supervised Detection"):

        L = -mean_units [ p log sigmoid(s) + (1 - p) log(1 - sigmoid(s)) ],
        p = teacher probability (sigmoid of the teacher's raw score for sigmoid_logits outputs),
            kept within [sigmoid(-b), sigmoid(b)], b = logit_bound (LOGIT_BOUND: bounded student logits)"""

    key = "bce_output"
    tasks = frozenset({"classification", "regression"})

    def __init__(self, index: int = 0, teacher_space: str = "sigmoid", logit_bound: float = LOGIT_BOUND) -> None:
        super().__init__(index)
        if teacher_space not in SCORE_SPACES:
            raise ValueError(f"teacher_space must be one of {SCORE_SPACES}")
        if not logit_bound > 0:
            raise ValueError("logit_bound must be > 0")
        self.teacher_space, self.logit_bound = teacher_space, float(logit_bound)

    def targets(self, t: torch.Tensor) -> torch.Tensor:
        return bounded_targets(t, self.teacher_space, self.logit_bound)

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self.pair(batch)
        return F.binary_cross_entropy_with_logits(s, self.targets(t))


@register_loss
class MaxScoreOutputLoss(BCEOutputLoss):
    """The image-level score of a per-anchor detector output (B, A[, 1]): the largest anchor score,
    which is what a detector thresholds (e.g. "is there a face"); the per-anchor BCE averages over
    hundreds of anchors the teacher is sure are empty, so alone it barely moves the few that decide
    the image. Binary cross-entropy between the maxima:

        L = -mean_batch [ p log sigmoid(m_s) + (1 - p) log(1 - sigmoid(m_s)) ],
        m_s = max_a s_a, p = max_a teacher probability (within the logit bound, as in bce_output)"""

    key = "max_score_output"

    def __init__(self, index: int = 0, teacher_space: str = "sigmoid_logits", logit_bound: float = LOGIT_BOUND) -> None:
        super().__init__(index, teacher_space, logit_bound)  # a detector's scores are raw logits by default

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self.pair(batch)
        m = s.reshape(s.shape[0], -1).amax(dim=1)
        p = self.targets(t).reshape(t.shape[0], -1).amax(dim=1)
        return F.binary_cross_entropy_with_logits(m, p)


@register_loss
class SmoothL1OutputLoss(_OutputLoss):
    """Smooth-L1 (Huber) output matching, Girshick 2015 "Fast R-CNN" (arXiv:1504.08083), on values
    divided by the teacher's spread so outputs of any scale weigh alike:

        L = mean smoothL1((s - t) / scale),  smoothL1(d) = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta"""

    key = "smooth_l1_output"
    tasks = frozenset({"classification", "regression"})

    def __init__(self, index: int = 0, scale: float = 1.0, beta: float = 1.0) -> None:
        super().__init__(index)
        if not scale > 0 or not beta > 0:
            raise ValueError("scale and beta must be > 0")
        self.scale, self.beta = float(scale), float(beta)

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self.pair(batch)
        return F.smooth_l1_loss(s / self.scale, t / self.scale, beta=self.beta)


@register_loss
class BoxesOutputLoss(_OutputLoss):
    """Dense per-anchor regressors weighted by the teacher's own confidence per anchor, as in
    detector distillation that imitates the teacher where it sees objects (Chen et al. 2017,
    "Learning Efficient Object Detection Models with Knowledge Distillation"; the score-weighted
    form of Wang et al. 2019, "Distilling Object Detectors with Fine-grained Feature Imitation"):

        w_a = p_a (the teacher's score probability at anchor a),
        L = sum_a w_a * mean_k smoothL1((s_ak - t_ak) / scale) / (sum_a w_a + eps)"""

    key = "boxes_output"
    tasks = frozenset({"classification", "regression"})

    def __init__(
        self, index: int = 0, scores_index: int = 1, scores_space: str = "sigmoid_logits", scale: float = 1.0,
        beta: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(index)
        if scores_space not in SCORE_SPACES:
            raise ValueError(f"scores_space must be one of {SCORE_SPACES}")
        if not scale > 0 or not beta > 0:
            raise ValueError("scale and beta must be > 0")
        self.scores_index, self.scores_space = int(scores_index), scores_space
        self.scale, self.beta = float(scale), float(beta)

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self.pair(batch)
        score = batch["teacher_outputs"][self.scores_index]
        w = teacher_probs(score, self.scores_space).reshape(s.shape[0], s.shape[1])  # (B, A)
        err = F.smooth_l1_loss(s / self.scale, t / self.scale, beta=self.beta, reduction="none")
        per_anchor = err.reshape(s.shape[0], s.shape[1], -1).mean(-1)
        return (w * per_anchor).sum() / (w.sum() + 1e-6)


@register_loss
class CEOutputLoss(_OutputLoss):
    """Hard-label cross-entropy on one class-score output: L = -mean_batch log softmax(s)_y."""

    key = "ce_output"
    requires = frozenset({"student_outputs", "labels"})
    tasks = frozenset({"classification"})

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(batch["student_outputs"][self.index], batch["labels"])
