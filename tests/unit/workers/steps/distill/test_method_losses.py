"""The method losses (FitNets, attention transfer, RKD, similarity-preserving, LwF, DFAD L1) and the
data-free generator losses against their papers' formulas, computed independently with numpy loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.steps.distill.datafree import adversarial_loss, balance_loss, bn_statistics_loss, zo_gradient
from edgedistill.workers.steps.distill.losses import L1LogitsLoss, LwFLoss, LwFMSELoss, PairShape, build_loss
from edgedistill.workers.steps.distill.losses.feature import AttentionTransferLoss, FitNetLoss
from edgedistill.workers.steps.distill.losses.relational import RKDLoss, SimilarityPreservingLoss

F64 = torch.float64


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=F64)


def _feats(seed: int, b: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s1, t1 = rng.normal(size=(b, 3, 4, 4)), rng.normal(size=(b, 6, 4, 4))  # spatial pair, channels differ
    s2, t2 = rng.normal(size=(b, 8)), rng.normal(size=(b, 5))  # vector pair
    return s1, t1, s2, t2


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _huber(d: np.ndarray) -> np.ndarray:
    a = np.abs(d)
    return np.where(a < 1, 0.5 * d * d, a - 0.5)


def test_fitnet_is_the_mean_squared_hint_error_after_the_regressors() -> None:
    s1, t1, s2, t2 = _feats(0)
    loss = FitNetLoss()
    loss.setup([PairShape((3, 4, 4), (6, 4, 4)), PairShape((8,), (5,))])
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(6, 3)), rng.normal(size=(5, 8))
    loss.double()
    with torch.no_grad():
        loss.regressors[0].weight.copy_(_t(w1).view(6, 3, 1, 1))
        loss.regressors[1].weight.copy_(_t(w2))
    r1 = np.einsum("oc,bchw->bohw", w1, s1)  # 1x1 convolution
    r2 = s2 @ w2.T
    expected = (np.mean((r1 - t1) ** 2) + np.mean((r2 - t2) ** 2)) / 2
    got = loss({"student_features": [_t(s1), _t(s2)], "teacher_features": [_t(t1), _t(t2)]}).item()
    assert got == pytest.approx(expected, rel=1e-10)
    assert sum(p.numel() for p in loss.parameters()) == 6 * 3 + 5 * 8  # regressors train with the student


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_attention_transfer_matches_zagoruyko_komodakis(p: float) -> None:
    s1, t1, s2, t2 = _feats(2)

    def q(a: np.ndarray) -> np.ndarray:
        m = (np.abs(a) ** p).sum(axis=1).reshape(a.shape[0], -1)  # sum over channels
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    expected = 1000.0 / 2 * np.mean((q(s1) - q(t1)) ** 2)  # the vector pair takes no part
    loss = AttentionTransferLoss(p=p, beta=1000.0)
    loss.setup([PairShape((3, 4, 4), (6, 4, 4)), PairShape((8,), (5,))])
    got = loss({"student_features": [_t(s1), _t(s2)], "teacher_features": [_t(t1), _t(t2)]}).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_attention_transfer_needs_a_spatial_pair() -> None:
    with pytest.raises(ValueError, match="spatial"):
        AttentionTransferLoss().setup([PairShape((8,), (5,))])


def _rkd_numpy(s: np.ndarray, t: np.ndarray, wd: float, wa: float) -> float:
    b = s.shape[0]

    def dist(e: np.ndarray) -> np.ndarray:
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(b)] for i in range(b)])
        return d / d[~np.eye(b, dtype=bool)].mean()  # mu over i != j

    def angle(e: np.ndarray) -> np.ndarray:
        out = np.zeros((b, b, b))
        for i in range(b):
            for j in range(b):
                for k in range(b):
                    u, v = e[i] - e[j], e[k] - e[j]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    if nu > 0 and nv > 0:
                        out[j, i, k] = (u / nu) @ (v / nv)
        return out

    return wd * _huber(dist(s) - dist(t)).mean() + wa * _huber(angle(s) - angle(t)).mean()


@pytest.mark.parametrize(("wd", "wa"), [(1.0, 2.0), (1.0, 0.0), (0.0, 1.0)])
def test_rkd_distance_and_angle_match_park_et_al(wd: float, wa: float) -> None:
    s1, t1, _, _ = _feats(3)
    s, t = s1.mean(axis=(2, 3)), t1.mean(axis=(2, 3))  # embeddings: global average pool
    expected = _rkd_numpy(s, t, wd, wa)
    loss = RKDLoss(distance_weight=wd, angle_weight=wa)
    got = loss({"student_features": [_t(s1)], "teacher_features": [_t(t1)]}).item()
    assert got == pytest.approx(expected, rel=1e-7)


def test_rkd_on_logits_needs_no_features() -> None:
    rng = np.random.default_rng(4)
    s, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    loss = RKDLoss(on="logits")
    assert loss.needs() == {"student_logits", "teacher_logits"}
    assert loss({"student_logits": _t(s), "teacher_logits": _t(t)}).item() == pytest.approx(
        _rkd_numpy(s, t, 1.0, 2.0), rel=1e-7
    )
    assert loss({"student_logits": _t(t), "teacher_logits": _t(t)}).item() == pytest.approx(0.0, abs=1e-9)


def test_similarity_preserving_matches_tung_and_mori() -> None:
    s1, t1, s2, t2 = _feats(5)
    b = s1.shape[0]

    def g(a: np.ndarray) -> np.ndarray:
        q = a.reshape(b, -1)
        gram = q @ q.T
        return gram / np.linalg.norm(gram, axis=1, keepdims=True)

    expected = 3000.0 * sum(np.sum((g(t) - g(s)) ** 2) / b**2 for s, t in ((s1, t1), (s2, t2)))
    loss = SimilarityPreservingLoss()
    got = loss({"student_features": [_t(s1), _t(s2)], "teacher_features": [_t(t1), _t(t2)]}).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_lwf_is_the_papers_cross_entropy_at_t2() -> None:
    rng = np.random.default_rng(6)
    s, prev = rng.normal(size=(5, 4)) * 2, rng.normal(size=(5, 4)) * 2
    p, q = _softmax(prev / 2), _softmax(s / 2)
    expected = -np.mean(np.sum(p * np.log(q), axis=1))
    assert LwFLoss()({"student_logits": _t(s), "prev_logits": _t(prev)}).item() == pytest.approx(expected, rel=1e-10)
    assert LwFMSELoss()({"student_logits": _t(s), "prev_logits": _t(prev)}).item() == pytest.approx(
        np.mean((s - prev) ** 2), rel=1e-12
    )


def test_l1_logits_is_dfads_mean_absolute_error() -> None:
    rng = np.random.default_rng(7)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    assert L1LogitsLoss()({"student_logits": _t(s), "teacher_logits": _t(t)}).item() == pytest.approx(
        np.abs(s - t).sum() / s.size, rel=1e-12
    )
    assert adversarial_loss(_t(s), _t(t)).item() == pytest.approx(-np.abs(s - t).mean(), rel=1e-12)


def test_bn_statistics_loss_matches_deepinversion() -> None:
    rng = np.random.default_rng(8)
    f = rng.normal(size=(6, 3, 4, 4)) * 2 + 1
    mu, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    m = f.transpose(1, 0, 2, 3).reshape(3, -1).mean(1)
    v = f.transpose(1, 0, 2, 3).reshape(3, -1).var(1)  # biased, as BN in training
    f2 = rng.normal(size=(6, 5))  # a BatchNorm1d input
    mu2, var2 = np.zeros(5), np.ones(5)
    expected = np.linalg.norm(m - mu) + np.linalg.norm(v - var)
    expected += np.linalg.norm(f2.mean(0) - mu2) + np.linalg.norm(f2.var(0) - var2)
    got = bn_statistics_loss([_t(f), _t(f2)], [(_t(mu), _t(var)), (_t(mu2), _t(var2))]).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_balance_loss_is_the_negative_entropy_of_the_mean_prediction() -> None:
    rng = np.random.default_rng(9)
    t = rng.normal(size=(8, 4)) * 3
    pbar = _softmax(t).mean(0)
    assert balance_loss(_t(t)).item() == pytest.approx(np.sum(pbar * np.log(pbar)), rel=1e-10)
    uniform = balance_loss(torch.zeros(5, 4, dtype=F64)).item()
    assert uniform == pytest.approx(-np.log(4), rel=1e-12)  # the minimum: every class used equally


def test_zero_order_gradient_estimates_the_true_gradient() -> None:
    rng = np.random.default_rng(10)
    a = _t(rng.normal(size=(3, 2, 2)))

    def f(x: torch.Tensor) -> torch.Tensor:  # per-sample linear function: gradient a, exact differences
        return (x * a).flatten(1).sum(1)

    x = _t(rng.normal(size=(4, 3, 2, 2)))
    g = zo_gradient(f, x, directions=4000, generator=torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity(g.flatten(1), a.flatten().expand(4, -1), dim=1)
    assert cos.min().item() > 0.95
    assert g.flatten(1).norm(dim=1).mean().item() == pytest.approx(a.norm().item(), rel=0.1)


@pytest.mark.parametrize(
    ("key", "available", "message"),
    [
        ("fitnet", {"student_logits", "teacher_logits"}, "intermediate features"),
        ("lwf", {"student_logits", "teacher_logits"}, "an earlier student"),
    ],
)
def test_build_loss_names_what_a_method_loss_is_missing(key: str, available: set[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_loss([LossTerm(key=key)], task="classification", available=available)
