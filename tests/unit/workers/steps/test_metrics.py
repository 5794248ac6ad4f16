from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from workers.steps.metrics import accuracy, evaluate, quality_key, r2, top1_agreement


def test_classification_metrics() -> None:
    out = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0]])
    teacher = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    assert accuracy(out, labels) == 0.75
    assert top1_agreement(out, teacher) == 0.5
    m = evaluate(out, task="classification", teacher=teacher, student=out + 0.25, labels=labels)
    assert m == {
        "samples": 4,
        "accuracy": 0.75,
        "top1_agreement": 0.5,
        "max_abs_diff_vs_student_fp32": 0.25,
        "mean_abs_diff_vs_student_fp32": 0.25,
    }
    assert "accuracy" not in evaluate(out, task="classification", teacher=teacher, student=None, labels=None)


def test_r2_matches_sklearn_on_multi_output() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 3))
    p = t + 0.3 * rng.normal(size=(50, 3))
    # sklearn's "variance_weighted" is the same pooled 1 - SS_res / SS_tot.
    assert r2(p, t) == pytest.approx(r2_score(t, p, multioutput="variance_weighted"))
    assert r2(t, t) == 1.0


def test_regression_metrics_use_labels_when_given() -> None:
    teacher = np.array([[0.0], [1.0], [2.0]])
    out = np.array([[0.0], [1.0], [3.0]])
    m = evaluate(out, task="regression", teacher=teacher, student=None, labels=np.array([[0.0], [1.0], [3.0]]))
    assert m["mse_vs_teacher"] == pytest.approx(1 / 3)
    assert m["mse"] == 0.0 and m["r2"] == 1.0
    assert m["r2_vs_teacher"] == pytest.approx(1 - 1 / 2)


@pytest.mark.parametrize(
    ("task", "labels", "key"),
    [("classification", True, "accuracy"), ("classification", False, "top1_agreement"),
     ("regression", True, "r2"), ("regression", False, "r2_vs_teacher")],
)  # fmt: skip
def test_quality_key(task: str, labels: bool, key: str) -> None:
    assert quality_key(task, labels) == key
