"""Response-based losses on the student's single output (logits or regression values): soft
targets, hard labels, output matching and Learning without Forgetting."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.workers.steps.distill.losses.registry import Batch, DistillLoss, register_loss


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
