"""Per-output losses against their formulas computed independently with numpy (golden values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.workers.steps.distill.losses.multi_output import (
    BCEOutputLoss,
    BoxesOutputLoss,
    CEOutputLoss,
    KLOutputLoss,
    MaxScoreOutputLoss,
    SmoothL1OutputLoss,
)

RNG = np.random.default_rng(0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _smooth_l1(d: np.ndarray, beta: float = 1.0) -> np.ndarray:
    a = np.abs(d)
    return np.where(a < beta, 0.5 * d**2 / beta, a - 0.5 * beta)


def _batch(s: list[np.ndarray], t: list[np.ndarray], y: np.ndarray | None = None) -> dict[str, object]:
    b: dict[str, object] = {
        "student_outputs": [torch.tensor(v, dtype=torch.float64) for v in s],
        "teacher_outputs": [torch.tensor(v, dtype=torch.float64) for v in t],
    }
    if y is not None:
        b["labels"] = torch.tensor(y)
    return b


@pytest.mark.parametrize("space", ["logits", "probabilities", "log_probabilities"])
def test_kl_output_is_hinton_kd_for_every_class_score_space(space: str) -> None:
    s, z = RNG.normal(size=(6, 5)) * 3, RNG.normal(size=(6, 5)) * 3
    T = 3.0
    log_p, log_q = _log_softmax(z / T), _log_softmax(s / T)
    expected = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)) * T * T
    teacher = {"logits": z, "probabilities": np.exp(_log_softmax(z)), "log_probabilities": _log_softmax(z)}[space]
    got = KLOutputLoss(index=1, temperature=T, teacher_space=space)(_batch([s * 0, s], [z * 0, teacher])).item()
    assert got == pytest.approx(expected, rel=1e-8)


def test_kl_output_counts_per_frame_scores_as_rows() -> None:
    s, z = RNG.normal(size=(4, 7, 3)), RNG.normal(size=(4, 7, 3))
    log_p, log_q = _log_softmax(z), _log_softmax(s)
    expected = np.sum(np.exp(log_p) * (log_p - log_q)) / (4 * 7)
    assert KLOutputLoss(temperature=1.0)(_batch([s], [z])).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("space", ["sigmoid", "sigmoid_logits"])
def test_bce_output_against_the_teachers_probabilities(space: str) -> None:
    s, z = RNG.normal(size=(8, 16)), RNG.normal(size=(8, 16)) * 2
    p = _sigmoid(z)
    q = _sigmoid(s)
    expected = -np.mean(p * np.log(q) + (1 - p) * np.log(1 - q))
    teacher = p if space == "sigmoid" else z
    assert BCEOutputLoss(teacher_space=space)(_batch([s], [teacher])).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("space", ["sigmoid_logits", "sigmoid"])
def test_bce_targets_stay_within_the_logit_bound(space: str) -> None:
    """A teacher sure beyond sigmoid(+-8) sets no target past it: the student's best logit is -8 / 8,
    not as far as the teacher's (int8 keeps its steps for the decision region)."""
    z = np.array([[-30000.0, -3.0, 0.5, 50.0]])
    teacher = z if space == "sigmoid_logits" else _sigmoid(z)
    loss = BCEOutputLoss(teacher_space=space)
    t = [torch.tensor(teacher, dtype=torch.float64)]
    st = torch.tensor(np.clip(z, -8, 8), dtype=torch.float64, requires_grad=True)
    loss({"student_outputs": [st], "teacher_outputs": t}).backward()
    assert st.grad is not None and float(st.grad.abs().max()) < 1e-9  # the optimum, inside the bound
    beyond = torch.tensor([[-20.0, -3.0, 0.5, 20.0]], dtype=torch.float64, requires_grad=True)
    loss({"student_outputs": [beyond], "teacher_outputs": t}).backward()
    assert beyond.grad is not None and beyond.grad[0, 0] < 0 < beyond.grad[0, 3]  # pulled back to +-8
    with pytest.raises(ValueError, match="logit_bound"):
        BCEOutputLoss(logit_bound=0)


def test_max_score_output_matches_the_largest_anchor_scores() -> None:
    s, z = RNG.normal(size=(6, 20, 1)) * 3, RNG.normal(size=(6, 20, 1)) * 3
    m, p = s.max(axis=(1, 2)), _sigmoid(np.clip(z.max(axis=(1, 2)), -8, 8))  # LOGIT_BOUND
    q = _sigmoid(m)
    expected = -np.mean(p * np.log(q) + (1 - p) * np.log(1 - q))
    loss = MaxScoreOutputLoss(teacher_space="sigmoid_logits")(_batch([s], [z]))
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    # only the largest anchor of each image gets a gradient
    st = torch.tensor(s, requires_grad=True)
    MaxScoreOutputLoss()({"student_outputs": [st], "teacher_outputs": [torch.tensor(z)]}).backward()
    assert st.grad is not None and int((st.grad != 0).sum()) == 6


def test_smooth_l1_output_scaled() -> None:
    s, t = RNG.normal(size=(5, 3)) * 4, RNG.normal(size=(5, 3)) * 4
    expected = np.mean(_smooth_l1((s - t) / 2.5))
    assert SmoothL1OutputLoss(scale=2.5)(_batch([s], [t])).item() == pytest.approx(expected, rel=1e-10)


def test_boxes_output_weighted_by_the_teachers_anchor_scores() -> None:
    s, t = RNG.normal(size=(3, 10, 4)) * 2, RNG.normal(size=(3, 10, 4)) * 2
    score = RNG.normal(size=(3, 10, 1)) * 3
    w = _sigmoid(score[..., 0])
    per_anchor = _smooth_l1((s - t) / 2.0).mean(-1)
    expected = np.sum(w * per_anchor) / (np.sum(w) + 1e-6)
    loss = BoxesOutputLoss(index=0, scores_index=1, scores_space="sigmoid_logits", scale=2.0)
    got = loss(_batch([s, score], [t, score])).item()
    assert got == pytest.approx(expected, rel=1e-8)
    # anchors the teacher is sure hold nothing do not count
    score_off = np.where(np.arange(10)[None, :, None] < 5, 30.0, -30.0) * np.ones((3, 10, 1))
    only_first = _smooth_l1((s - t) / 2.0).mean(-1)[:, :5].mean()
    got = loss(_batch([s, score_off], [t, score_off])).item()
    assert got == pytest.approx(only_first, rel=1e-5)


def test_ce_output() -> None:
    s, y = RNG.normal(size=(6, 4)), RNG.integers(0, 4, size=6)
    expected = -np.mean(_log_softmax(s)[np.arange(6), y])
    assert CEOutputLoss(index=0)(_batch([s], [s], y)).item() == pytest.approx(expected, rel=1e-10)
