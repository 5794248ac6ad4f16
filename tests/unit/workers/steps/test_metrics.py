from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from edgedistill.workers.steps.metrics import accuracy, evaluate, quality_key, r2, top1_agreement


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


# ---- per output kind -------------------------------------------------------------------------------

from edgedistill.workers.steps.metrics import output_metrics, quality_problem, variant_headline  # noqa: E402


def test_sigmoid_balanced_agreement_catches_an_always_negative_student() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.uniform(size=(200, 16)) ** 3  # mostly below 0.5: few positives per frame
    always_no = np.zeros_like(teacher)
    m = output_metrics("sigmoid", always_no, teacher)
    assert m["agreement"] > 0.6  # plain agreement looks fine
    assert m["negative_agreement"] == 1.0 and m["positive_agreement"] == 0.0
    assert m["balanced_agreement"] == pytest.approx(0.5)
    assert m["headline"] == m["balanced_agreement"] and m["auc_over"] == "per unit, averaged"
    problem = quality_problem({"vad": m})
    assert problem is not None and "balanced agreement 0.50 < 0.8" in problem
    good = output_metrics("sigmoid", teacher, teacher)
    assert good["balanced_agreement"] == 1.0 and good["auc"] == 1.0
    assert quality_problem({"vad": good}) is None


def test_sigmoid_logits_are_judged_as_probabilities_and_wide_outputs_pool_the_auc() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 896, 1)) * 3
    m = output_metrics("sigmoid_logits", z + rng.normal(size=z.shape) * 0.1, z)
    assert m["balanced_agreement"] > 0.9 and m["auc_over"] == "all 896 units pooled" and m["auc"] > 0.95


def test_anchor_scores_also_report_whether_each_image_fires_as_the_teachers_does() -> None:
    """Per anchor nearly everything agrees (empty anchors); per image the student misses every face."""
    z = np.full((10, 64, 1), -6.0)
    z[:4, 7, 0] = 4.0  # four images with one confident anchor
    student = np.full_like(z, -6.0)
    student[:4, 7, 0] = -1.0  # below the threshold: no face found
    m = output_metrics("sigmoid_logits", student, z)
    assert m["agreement"] > 0.99 and m["image_agreement"] == pytest.approx(0.6)
    assert m["image_positive_rate"] == pytest.approx(0.4)
    assert "image_agreement" not in output_metrics("sigmoid", 1 / (1 + np.exp(-student)), 1 / (1 + np.exp(-z)))


def test_class_scores_against_a_constant_guess() -> None:
    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(100, 4))
    teacher[:90, 0] += 10  # 90 % of samples are class 0, the rest class 1
    teacher[90:, 1] += 10
    constant = np.zeros_like(teacher)
    constant[:, 0] = 1
    m = output_metrics("probabilities", constant, teacher, labels=teacher.argmax(1))
    assert m["top1_agreement"] == pytest.approx(0.9) and m["constant_agreement"] == pytest.approx(0.9)
    assert m["accuracy"] == pytest.approx(0.9)
    assert "closes only 0 % of the gap between a constant guess" in (quality_problem({"p": m}) or "")
    assert quality_problem({"p": output_metrics("logits", teacher, teacher)}) is None


def test_regression_is_r2_and_boxes_count_positive_anchors_only() -> None:
    rng = np.random.default_rng(3)
    t = rng.normal(size=(50, 3))
    m = output_metrics("regression", t + 0.1 * rng.normal(size=t.shape), t)
    assert m["headline_name"] == "R^2 vs the teacher" and 0.95 < m["headline"] <= 1.0
    boxes_t = rng.normal(size=(4, 10, 4))
    boxes_s = boxes_t.copy()
    boxes_s[:, 5:] += 100.0  # wrong only where the teacher sees nothing
    scores = np.zeros((4, 10))
    scores[:, :5] = 0.9
    b = output_metrics("boxes", boxes_s, boxes_t, teacher_scores=scores)
    assert b["positive_anchors"] == 20 and b["mae_positive"] == 0.0 and b["r2_positive"] == 1.0
    assert b["mae_all"] == pytest.approx(50.0)
    idx = output_metrics("class_index", np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]))
    assert idx["agreement"] == 0.75
    # the variant headline clips R^2 and skips class indices
    assert variant_headline({"a": {"kind": "regression", "headline": -5.0}, "b": {"kind": "sigmoid", "headline": 1.0},
                             "c": {"kind": "class_index", "headline": 0.0}}) == pytest.approx(0.5)  # fmt: skip
