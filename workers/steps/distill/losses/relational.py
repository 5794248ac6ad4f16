"""Relational losses: what is transferred is the structure among the samples of a batch, not the
individual outputs, so student and teacher widths may differ and no regressor is needed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from edgedistill.workers.steps.distill.losses.registry import FEATURES, Batch, DistillLoss, PairShape, register_loss


def embedding(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features -> (B, C) by global average pooling; (B, D) unchanged."""
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


def _pdist(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, B); the clamp keeps the gradient finite on the zero diagonal."""
    sq = e.pow(2).sum(1)
    d2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * e @ e.t()).clamp_min(1e-12)
    d = d2.sqrt()
    return d * (1 - torch.eye(e.shape[0], dtype=e.dtype, device=e.device))


@register_loss
class RKDLoss(DistillLoss):
    """Relational knowledge distillation, Park, Kim, Lu, Cho 2019 (arXiv:1904.05068), distance- and
    angle-wise potentials on embeddings e (the deepest paired feature, globally average-pooled, or the
    logits with on="logits"):

        psi_D(e_i, e_j) = ||e_i - e_j||_2 / mu,   mu = mean_{i != j} ||e_i - e_j||_2
        psi_A(e_i, e_j, e_k) = < (e_i - e_j) / ||e_i - e_j||, (e_k - e_j) / ||e_k - e_j|| >
        L = w_D * mean_{i,j} huber(psi_D^S - psi_D^T) + w_A * mean_{i,j,k} huber(psi_A^S - psi_A^T)

    huber is the smooth L1 with delta 1; means run over all B^2 / B^3 index tuples as in the authors'
    code, and w_D = 1, w_A = 2 are its defaults."""

    key = "rkd"
    requires = FEATURES

    def __init__(
        self, distance_weight: float = 1.0, angle_weight: float = 2.0, on: Literal["features", "logits"] = "features"
    ) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ValueError("distance_weight and angle_weight must be >= 0 and not both 0")
        if on not in ("features", "logits"):
            raise ValueError("on must be 'features' or 'logits'")
        self.distance_weight, self.angle_weight, self.on = float(distance_weight), float(angle_weight), on

    def needs(self) -> frozenset[str]:
        return self.requires if self.on == "features" else frozenset({"student_logits", "teacher_logits"})

    def _embeddings(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on == "logits":
            return batch["student_logits"], batch["teacher_logits"]
        return embedding(batch["student_features"][-1]), embedding(batch["teacher_features"][-1])

    def forward(self, batch: Batch) -> torch.Tensor:
        s, t = self._embeddings(batch)
        loss = torch.zeros((), dtype=s.dtype, device=s.device)
        if self.distance_weight:
            with torch.no_grad():
                td = _pdist(t)
                td = td / td[td > 0].mean()
            sd = _pdist(s)
            sd = sd / sd[sd > 0].mean()
            loss = loss + self.distance_weight * F.smooth_l1_loss(sd, td)
        if self.angle_weight:
            with torch.no_grad():
                tv = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
                ta = torch.bmm(tv, tv.transpose(1, 2))
            sv = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
            sa = torch.bmm(sv, sv.transpose(1, 2))
            loss = loss + self.angle_weight * F.smooth_l1_loss(sa, ta)
        return loss


def similarity(a: torch.Tensor) -> torch.Tensor:
    """Tung & Mori's batch similarity: G = Q Q^T with Q the (B, C*H*W) activations, rows L2-normalised."""
    q = a.flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


@register_loss
class SimilarityPreservingLoss(DistillLoss):
    """Similarity-preserving KD, Tung & Mori 2019 (arXiv:1907.09682): inputs that the teacher maps to
    similar activations should be similar for the student too. Per paired layer j:

        G^j = row_normalise(Q^j Q^j^T),  Q^j: the (B, C*H*W) activations
        L = gamma * sum_j 1/B^2 ||G_T^j - G_S^j||_F^2

    with the paper's gamma = 3000 (CIFAR-10) as the default. Channels and spatial sizes may differ
    between student and teacher."""

    key = "sp"
    requires = FEATURES

    def __init__(self, gamma: float = 3000.0) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError("gamma must be >= 0")
        self.gamma = float(gamma)

    def setup(self, pairs: Sequence[PairShape]) -> None:
        if not pairs:
            raise ValueError("similarity-preserving KD needs at least one feature pair")

    def forward(self, batch: Batch) -> torch.Tensor:
        s_feats, t_feats = batch["student_features"], batch["teacher_features"]
        b = s_feats[0].shape[0]
        total = torch.zeros((), dtype=s_feats[0].dtype, device=s_feats[0].device)
        for s, t in zip(s_feats, t_feats, strict=True):
            total = total + (similarity(t) - similarity(s)).pow(2).sum() / (b * b)
        return self.gamma * total
