"""Intermediate-feature losses: FitNets hints and attention transfer.

Both read "student_features" / "teacher_features" (one tensor per paired layer, spatial sizes
already aligned by features.py; channels may differ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.workers.steps.distill.losses.registry import FEATURES, Batch, DistillLoss, PairShape, register_loss


@register_loss
class FitNetLoss(DistillLoss):
    """Hint-based training, Romero et al. 2015, "FitNets: Hints for Thin Deep Nets" (arXiv:1412.6550):
    a learned regressor r_j maps the student's guided layer to the shape of the teacher's hint layer
    and the loss is their squared distance, averaged over the P paired layers:

        L = 1/P sum_j mean_{b,c,h,w} (r_j(S_j) - T_j)^2

    (the paper's 1/2 ||u_h - r(v_g)||^2 per sample, normalised by the number of elements so the
    weight does not depend on the layer size). r_j is a 1x1 convolution for (C, H, W) features and a
    linear map for vectors; regressors train with the student and are discarded afterwards. The
    paper trains hints first and distils second; here both are terms of one weighted sum."""

    key = "fitnet"
    requires = FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.regressors = nn.ModuleList()

    def setup(self, pairs: Sequence[PairShape]) -> None:
        self.regressors = nn.ModuleList()
        for p in pairs:
            if p.spatial:
                self.regressors.append(nn.Conv2d(p.student[0], p.teacher[0], kernel_size=1, bias=False))
            elif len(p.student) == 1 and len(p.teacher) == 1:
                self.regressors.append(nn.Linear(p.student[0], p.teacher[0], bias=False))
            else:
                raise ValueError(f"fitnet: cannot pair features of shapes {p.student} and {p.teacher}")

    def forward(self, batch: Batch) -> torch.Tensor:
        s_feats, t_feats = batch["student_features"], batch["teacher_features"]
        if len(self.regressors) != len(s_feats):
            raise RuntimeError("fitnet: setup() was not called with the feature pairs")
        total = torch.zeros((), dtype=s_feats[0].dtype, device=s_feats[0].device)
        for reg, s, t in zip(self.regressors, s_feats, t_feats, strict=True):
            total = total + F.mse_loss(reg(s), t)
        return total / len(s_feats)


def attention_map(a: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis' activation-based spatial attention: F(A) = sum_c |A_c|^p (here the mean
    over channels, which the normalisation makes identical), flattened and L2-normalised per sample."""
    return F.normalize(a.abs().pow(p).mean(1).flatten(1), dim=1)


@register_loss
class AttentionTransferLoss(DistillLoss):
    """Attention transfer, Zagoruyko & Komodakis 2017, "Paying More Attention to Attention"
    (arXiv:1612.03928): match the normalised spatial attention maps Q = vec(sum_c |A_c|^p) of each
    paired layer:

        L = beta/2 * sum_j mean_{b,i} ( Q_S^j / ||Q_S^j||_2 - Q_T^j / ||Q_T^j||_2 )_{b,i}^2

    with p = 2 and beta = 1000 as in the authors' code (which averages over the batch and the
    positions). Only spatial (C, H, W) pairs take part; channels may differ."""

    key = "at"
    requires = FEATURES

    def __init__(self, p: float = 2.0, beta: float = 1000.0) -> None:
        super().__init__()
        if not p > 0:
            raise ValueError("p must be > 0")
        if not beta >= 0:
            raise ValueError("beta must be >= 0")
        self.p, self.beta = float(p), float(beta)
        self.use: list[bool] = []

    def setup(self, pairs: Sequence[PairShape]) -> None:
        self.use = [p.spatial for p in pairs]
        if not any(self.use):
            raise ValueError("attention transfer needs at least one pair of spatial (C, H, W) features")

    def forward(self, batch: Batch) -> torch.Tensor:
        s_feats, t_feats = batch["student_features"], batch["teacher_features"]
        use = self.use or [s.dim() == 4 and t.dim() == 4 for s, t in zip(s_feats, t_feats, strict=True)]
        total = torch.zeros((), dtype=s_feats[0].dtype, device=s_feats[0].device)
        for keep, s, t in zip(use, s_feats, t_feats, strict=True):
            if keep:
                total = total + (attention_map(s, self.p) - attention_map(t, self.p)).pow(2).mean()
        return self.beta / 2 * total
