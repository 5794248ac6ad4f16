"""KD losses against their formulas computed independently with numpy, and the registry's checks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm
from edgedistill.workers.steps.distill.losses import (
    LOSSES,
    CrossEntropyLoss,
    DistillLoss,
    KDLoss,
    MSELabelsLoss,
    MSELogitsLoss,
    build_loss,
    method_terms,
    register_loss,
)

CLS = {"student_logits", "teacher_logits", "labels"}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _logits(seed: int, n: int = 6, k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)) * 3, rng.normal(size=(n, k)) * 3, rng.integers(0, k, size=n)


def _batch(s: np.ndarray, t: np.ndarray, y: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    b = {"student_logits": torch.tensor(s, dtype=torch.float64), "teacher_logits": torch.tensor(t, dtype=torch.float64)}
    if y is not None:
        b["labels"] = torch.tensor(y)
    return b


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_matches_hinton_formula(temperature: float) -> None:
    s, t, _ = _logits(0)
    log_p, log_q = _log_softmax(t / temperature), _log_softmax(s / temperature)
    expected = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)) * temperature**2
    got = KDLoss(temperature=temperature)(_batch(s, t)).item()
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_matches_formula(smoothing: float) -> None:
    s, _, y = _logits(1)
    k = s.shape[1]
    target = (1 - smoothing) * np.eye(k)[y] + smoothing / k
    expected = -np.mean(np.sum(target * _log_softmax(s), axis=1))
    got = CrossEntropyLoss(label_smoothing=smoothing)(_batch(s, s, y)).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_mse_losses_match_formula() -> None:
    s, t, _ = _logits(2)
    assert MSELogitsLoss()(_batch(s, t)).item() == pytest.approx(np.mean((s - t) ** 2), rel=1e-12)
    b = _batch(s, t)
    b["labels"] = torch.tensor(t * 0.5)
    assert MSELabelsLoss()(b).item() == pytest.approx(np.mean((s - 0.5 * t) ** 2), rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 10.0))
def test_kd_is_nonnegative_and_zero_at_the_teacher(seed: int, temperature: float) -> None:
    s, t, _ = _logits(seed)
    loss = KDLoss(temperature)
    assert loss(_batch(s, t)).item() >= -1e-12
    assert abs(loss(_batch(t, t)).item()) < 1e-10


def test_weighted_sum_combines_terms() -> None:
    s, t, y = _logits(3)
    terms = [
        LossTerm(key="kd", weight=0.7, kwargs={"temperature": 3.0}),
        LossTerm(key="ce", weight=0.3),
        LossTerm(key="mse_logits", weight=0.0),  # weight 0: dropped
    ]
    loss = build_loss(terms, task="classification", available=CLS)
    b = _batch(s, t, y)
    expected = 0.7 * KDLoss(3.0)(b).item() + 0.3 * CrossEntropyLoss()(b).item()
    assert loss(b).item() == pytest.approx(expected, rel=1e-12)
    assert loss.describe() == [{"key": "kd", "weight": 0.7}, {"key": "ce", "weight": 0.3}]
    assert loss.requires == frozenset(CLS)


@pytest.mark.parametrize(
    ("terms", "task", "available", "message"),
    [
        (
            [LossTerm(key="nope")],
            "classification",
            CLS,
            "unknown loss 'nope'; known losses: at, bce_output, boxes_output, ce",
        ),
        ([LossTerm(key="ce")], "classification", CLS - {"labels"}, r"needs labels \(y in the data\)"),
        ([LossTerm(key="kd")], "regression", CLS, "does not apply to regression"),
        ([LossTerm(key="kd", kwargs={"temperature": -1})], "classification", CLS, "bad kwargs"),
        ([LossTerm(key="kd", kwargs={"tau": 2})], "classification", CLS, "bad kwargs"),
        ([LossTerm(key="kd", weight=0)], "classification", CLS, "no term with a positive weight"),
    ],
)
def test_build_loss_refuses_bad_configs(terms: list[LossTerm], task: str, available: set[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_loss(terms, task=task, available=available)


def test_method_terms() -> None:
    kw = {"alpha": 0.7, "temperature": 4.0}
    with_labels = method_terms("kd", task="classification", has_labels=True, **kw)
    assert [(t.key, t.weight) for t in with_labels] == [("kd", 0.7), ("ce", pytest.approx(0.3))]
    assert with_labels[0].kwargs == {"temperature": 4.0}
    no_labels = method_terms("kd", task="classification", has_labels=False, **kw)
    assert [(t.key, t.weight) for t in no_labels] == [("kd", 1.0)]
    baseline = method_terms("kd", task="classification", has_labels=True, alpha=0.0, temperature=4.0)
    loss = build_loss(baseline, task="classification", available=CLS)
    assert loss.keys == ["ce"]  # alpha=0: the labels-only baseline
    reg = method_terms("kd", task="regression", has_labels=True, **kw)
    assert [t.key for t in reg] == ["mse_logits", "mse_labels"]
    with pytest.raises(InputError, match="unknown distillation method 'fitnets'"):
        method_terms("fitnets", task="classification", has_labels=True, **kw)


@pytest.fixture
def _restore_registry() -> Iterator[None]:
    saved = dict(LOSSES)
    yield
    LOSSES.clear()
    LOSSES.update(saved)


@pytest.mark.usefixtures("_restore_registry")
def test_registering_a_new_loss() -> None:
    @register_loss
    class L1Logits(DistillLoss):
        """Mean absolute logit difference (test only)."""

        key = "test_l1_logits"

        def forward(self, batch):  # type: ignore[no-untyped-def]
            return (batch["student_logits"] - batch["teacher_logits"]).abs().mean()

    s, t, _ = _logits(4)
    loss = build_loss([LossTerm(key="test_l1_logits", weight=2.0)], task="regression", available=CLS)
    assert loss(_batch(s, t)).item() == pytest.approx(2 * np.mean(np.abs(s - t)), rel=1e-12)
    with pytest.raises(ValueError, match="registered twice"):
        register_loss(L1Logits)


def test_every_registered_loss_cites_its_formula() -> None:
    for key, cls in LOSSES.items():
        assert cls.key == key
        assert cls.__doc__ and ("L =" in cls.__doc__ or "L_" in cls.__doc__), key
