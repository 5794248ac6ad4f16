"""MiniLM and TinyBERT losses against their formulas computed independently with numpy (golden values),
and the depth pairing of student and teacher layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.steps.distill.features import depth_pairs
from edgedistill.workers.steps.distill.losses import PairShape, build_loss
from edgedistill.workers.steps.distill.losses.transformer import (
    MiniLMAttentionLoss,
    MiniLMValueLoss,
    TinyBERTAttentionLoss,
    TinyBERTHiddenLoss,
)

RNG = np.random.default_rng(0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _attention(b: int, h: int, n: int) -> np.ndarray:
    return _softmax(RNG.normal(size=(b, h, n, n)) * 2)


def _kl_rows(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


def _batch(s: list[np.ndarray], t: list[np.ndarray]) -> dict[str, object]:
    return {
        "student_features": [torch.tensor(v, dtype=torch.float64) for v in s],
        "teacher_features": [torch.tensor(v, dtype=torch.float64) for v in t],
    }


def test_minilm_attention_is_the_mean_row_kl_per_head() -> None:
    s, t = _attention(3, 4, 5), _attention(3, 4, 5)
    other_s, other_t = _attention(3, 4, 5), _attention(3, 4, 5)
    got = MiniLMAttentionLoss(pairs=[1])(_batch([other_s, s], [other_t, t]))
    assert float(got) == pytest.approx(_kl_rows(t, s), rel=1e-9)
    assert float(MiniLMAttentionLoss()(_batch([t], [t]))) == pytest.approx(0.0, abs=1e-12)


def test_minilm_attention_averages_heads_when_the_counts_differ() -> None:
    s, t = _attention(2, 2, 6), _attention(2, 4, 6)
    expected = _kl_rows(t.mean(1), s.mean(1))
    assert float(MiniLMAttentionLoss()(_batch([s], [t]))) == pytest.approx(expected, rel=1e-9)


def test_minilm_attention_ignores_keys_the_teacher_gives_zero() -> None:
    t = _attention(2, 2, 4)
    t[..., -1] = 0.0  # a masked key: exp(-1e4) is exactly 0 in float32
    t /= t.sum(-1, keepdims=True)
    s = _attention(2, 2, 4)
    expected = float(np.mean(np.sum(t[..., :3] * (np.log(t[..., :3]) - np.log(s[..., :3])), axis=-1)))
    got = float(MiniLMAttentionLoss()(_batch([s], [t])))
    assert np.isfinite(got) and got == pytest.approx(expected, rel=1e-9)


def _relation(v: np.ndarray, heads: int) -> np.ndarray:
    b, h, n, dh = v.shape
    split = v.transpose(0, 2, 1, 3).reshape(b, n, heads, h * dh // heads).transpose(0, 2, 1, 3)
    return _softmax(split @ split.transpose(0, 1, 3, 2) / np.sqrt(h * dh // heads))


def test_minilm_value_relation_resplits_the_teachers_values_into_the_students_heads() -> None:
    s = RNG.normal(size=(2, 2, 5, 4))  # 2 heads of 4
    t = RNG.normal(size=(2, 4, 5, 4))  # 4 heads of 4 = width 16, re-split into 2 heads of 8
    expected = _kl_rows(_relation(t, 2), _relation(s, 2))
    assert float(MiniLMValueLoss()(_batch([s], [t]))) == pytest.approx(expected, rel=1e-9)
    # with equal heads the re-split is the identity: the paper's per-head relation
    t2 = RNG.normal(size=(2, 2, 5, 4))
    rel_t = _softmax(t2 @ t2.transpose(0, 1, 3, 2) / 2.0)
    rel_s = _softmax(s @ s.transpose(0, 1, 3, 2) / 2.0)
    assert float(MiniLMValueLoss()(_batch([s], [t2]))) == pytest.approx(_kl_rows(rel_t, rel_s), rel=1e-9)


def test_tinybert_attention_is_the_mse_of_the_maps_averaged_over_pairs() -> None:
    s1, t1, s2, t2 = (_attention(2, 2, 4) for _ in range(4))
    expected = (np.mean((s1 - t1) ** 2) + np.mean((s2 - t2) ** 2)) / 2
    got = TinyBERTAttentionLoss(pairs=[0, 1])(_batch([s1, s2], [t1, t2]))
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_tinybert_hidden_projects_the_student_when_the_widths_differ() -> None:
    s, t = RNG.normal(size=(3, 5, 4)), RNG.normal(size=(3, 5, 6))
    same_s, same_t = RNG.normal(size=(3, 5, 6)), RNG.normal(size=(3, 5, 6))
    loss = TinyBERTHiddenLoss(pairs=[0, 1])
    loss.setup([PairShape((5, 4), (5, 6)), PairShape((5, 6), (5, 6))])
    assert list(loss.proj) == ["0"]  # no projection where the widths match
    w, b = RNG.normal(size=(6, 4)), RNG.normal(size=6)
    loss = loss.double()
    with torch.no_grad():
        loss.proj["0"].weight.copy_(torch.tensor(w))
        loss.proj["0"].bias.copy_(torch.tensor(b))
    expected = (np.mean((s @ w.T + b - t) ** 2) + np.mean((same_s - same_t) ** 2)) / 2
    assert float(loss(_batch([s, same_s], [t, same_t])).detach()) == pytest.approx(expected, rel=1e-9)
    assert sum(p.numel() for p in loss.parameters()) == 6 * 4 + 6


def test_the_losses_are_registered_and_refuse_runs_without_features() -> None:
    terms = [LossTerm(key=k, kwargs={"pairs": [0]}) for k in
             ("minilm_attention", "minilm_value", "tinybert_attention", "tinybert_hidden")]  # fmt: skip
    built = build_loss(terms, task="classification", available={"student_features", "teacher_features"})
    assert built.keys == [t.key for t in terms] and built.needs_features
    from edgedistill.contracts.errors import InputError

    with pytest.raises(InputError, match="intermediate features"):
        build_loss(terms[:1], task="classification", available={"student_outputs", "teacher_outputs"})
    with pytest.raises(InputError, match="bad kwargs"):
        build_loss([LossTerm(key="minilm_attention", kwargs={"pairs": []})], task="classification",
                   available={"student_features", "teacher_features"})  # fmt: skip


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        (2, 4, [(0, 1), (1, 3)]),
        (3, 6, [(0, 1), (1, 3), (2, 5)]),
        (1, 4, [(0, 3)]),
        (4, 4, [(0, 0), (1, 1), (2, 2), (3, 3)]),
    ],
)
def test_depth_pairs_take_every_other_layer_and_end_with_the_last(
    student: int, teacher: int, expected: list[tuple[int, int]]
) -> None:
    assert depth_pairs(student, teacher) == expected
