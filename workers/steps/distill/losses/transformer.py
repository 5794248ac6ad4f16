"""Transformer distillation losses on paired sequence features (features.SequencePlan): attention
probabilities (B, H, L, L), values (B, H, L, dh) and hidden states (B, L, d). Each term reads the pairs
named by its `pairs` kwarg (indices into batch["student_features"] / batch["teacher_features"]) and
averages over them.

Heads: when the student has as many heads as the teacher, attention is compared head by head; otherwise
both sides are averaged over heads first (one (L, L) map each), which keeps a distribution per row. The
value relation re-splits the concatenated values into the student's head count instead (MiniLMv2,
Wang et al. 2021, arXiv:2012.15828), which works for any head counts whose widths divide."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.workers.steps.distill.losses.registry import Batch, DistillLoss, PairShape, register_loss

SEQUENCE = frozenset({"student_features", "teacher_features"})
EPS = 1e-12


def match_heads(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Hs, L, L), (B, Ht, L, L): as they are when Hs == Ht, else both averaged over heads."""
    if s.shape[1] == t.shape[1]:
        return s, t
    return s.mean(1, keepdim=True), t.mean(1, keepdim=True)


def row_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """mean over every row of KL(p || q) along the last axis, p and q probabilities."""
    return (torch.xlogy(p, p) - p * torch.log(q.clamp_min(EPS))).sum(-1).mean()


class _PairsLoss(DistillLoss):
    requires = SEQUENCE

    def __init__(self, pairs: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.pairs = [int(i) for i in pairs]
        if not self.pairs or any(i < 0 for i in self.pairs):
            raise ValueError("pairs must be a non-empty list of feature-pair indices >= 0")

    def _each(self, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        s, t = batch["student_features"], batch["teacher_features"]
        return [(s[i], t[i]) for i in self.pairs]


@register_loss
class MiniLMAttentionLoss(_PairsLoss):
    """MiniLM self-attention distribution transfer (Wang et al. 2020, arXiv:2002.10957), on the last
    layer's attention probabilities A (B, H, L, L):

        L = 1 / (H L) sum_h sum_i KL( A^T_{h,i,:} || A^S_{h,i,:} ), averaged over the batch"""

    key = "minilm_attention"

    def forward(self, batch: Batch) -> torch.Tensor:
        losses = []
        for s, t in self._each(batch):
            s, t = match_heads(s, t)
            losses.append(row_kl(t, s))
        return torch.stack(losses).mean()


def relation(v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(V V^T / sqrt(dh)) per head after re-splitting (B, H, L, dh) values into `heads` heads."""
    b, h, n, dh = v.shape
    width = h * dh
    if width % heads:
        raise ValueError(f"values of width {width} cannot be split into {heads} relation heads")
    v = v.transpose(1, 2).reshape(b, n, heads, width // heads).transpose(1, 2)
    return torch.softmax(v @ v.transpose(-1, -2) / (width // heads) ** 0.5, dim=-1)


@register_loss
class MiniLMValueLoss(_PairsLoss):
    """MiniLM value-relation transfer (Wang et al. 2020, arXiv:2002.10957): with
    VR = softmax(V V^T / sqrt(dh)) per head,

        L = 1 / (R L) sum_r sum_i KL( VR^T_{r,i,:} || VR^S_{r,i,:} ),  R = the student's head count"""

    key = "minilm_value"

    def forward(self, batch: Batch) -> torch.Tensor:
        losses = []
        for s, t in self._each(batch):
            heads = s.shape[1]
            losses.append(row_kl(relation(t, heads), relation(s, heads)))
        return torch.stack(losses).mean()


@register_loss
class TinyBERTAttentionLoss(_PairsLoss):
    """TinyBERT attention-based distillation (Jiao et al. 2020, arXiv:1909.10351), here on attention
    probabilities (the Softmax outputs the teacher graph exposes; the paper uses the pre-softmax scores):

        L = 1 / h sum_i MSE(A^S_i, A^T_i), averaged over paired layers"""

    key = "tinybert_attention"

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.stack([F.mse_loss(*match_heads(s, t)) for s, t in self._each(batch)]).mean()


@register_loss
class TinyBERTHiddenLoss(_PairsLoss):
    """TinyBERT hidden-state distillation (Jiao et al. 2020, arXiv:1909.10351):

    L = MSE(H^S W_h, H^T), W_h a learned (d_S, d_T) projection (trained with the student, discarded
    after training); the identity when the widths match"""

    key = "tinybert_hidden"

    def __init__(self, pairs: Sequence[int] = (0,)) -> None:
        super().__init__(pairs)
        self.proj = nn.ModuleDict()

    def setup(self, pairs: Sequence[PairShape]) -> None:
        for i in self.pairs:
            if i >= len(pairs):
                raise ValueError(f"tinybert_hidden: no feature pair {i} (the run has {len(pairs)})")
            ds, dt = pairs[i].student[-1], pairs[i].teacher[-1]
            if ds != dt:
                self.proj[str(i)] = nn.Linear(ds, dt)

    def forward(self, batch: Batch) -> torch.Tensor:
        losses = []
        for i, (s, t) in zip(self.pairs, self._each(batch), strict=True):
            if str(i) in self.proj:
                s = self.proj[str(i)](s)
            losses.append(F.mse_loss(s, t))
        return torch.stack(losses).mean()
