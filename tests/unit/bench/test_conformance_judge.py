"""The conformance benchmark's own judgement of an artifact against its teacher, per output kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import conformance as c
from bench.material import Case


def _case(kinds: dict[str, str], options: dict | None = None) -> Case:
    p = Path("/x")
    return Case("t", p, p, p, kinds, ("x",), ("mobile-arm64",), options=options or {})


def test_always_no_scores_half_not_the_share_of_negatives() -> None:
    teacher = np.array([0.9] * 5 + [0.1] * 95)
    b = c.balanced_agreement(np.zeros(100), teacher)
    assert b["balanced_agreement"] == 0.5 and b["positives"] == 5
    assert c.balanced_agreement(teacher, teacher)["balanced_agreement"] == 1.0
    assert np.isnan(c.balanced_agreement(np.zeros(10), np.zeros(10))["balanced_agreement"])


def test_classification_target_depends_on_class_count() -> None:
    rng = np.random.default_rng(0)
    t = rng.random((50, 214))
    s = t.copy()
    s[:3] = s[:3, ::-1]  # 3 of 50 disagree
    v = c.judge(_case({"p": "probabilities"}), {"p": t}, {"p": s})[0]
    assert v["target"] == 0.90 and abs(v["value"] - top1(s, t)) < 1e-12
    v2 = c.judge(_case({"p": "logits"}), {"p": t[:, :10]}, {"p": t[:, :10]})[0]
    assert v2["target"] == 0.95 and v2["value"] == 1.0


def top1(s: np.ndarray, t: np.ndarray) -> float:
    return float((s.argmax(1) == t.argmax(1)).mean())


def test_detector_face_score_and_box_error_on_teacher_anchors() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(-5, 1, (20, 896, 1))
    scores[:10, 7, 0] = 4.0  # a face in the first 10 images
    boxes = rng.normal(0, 10, (20, 896, 16))
    case = _case(
        {"regressors": "boxes", "classificators": "sigmoid_logits"},
        {"outputs": {"regressors": {"kind": "boxes", "scores": "classificators"}}},
    )
    teacher = {"regressors": boxes, "classificators": scores}
    student = {"regressors": boxes + 1.0, "classificators": scores.copy()}
    student["classificators"][:2, 7, 0] = -4.0  # misses 2 faces
    verdicts = {v["output"]: v for v in c.judge(case, teacher, student)}
    assert verdicts["classificators"]["value"] == 0.9
    assert abs(verdicts["regressors"]["value"] - 1.0) < 1e-9
    assert verdicts["regressors"]["extra"]["positive_anchors"] == 10


def test_row_says_by_how_much_a_target_is_missed() -> None:
    base = c.Row("t", "mobile-arm64", teacher_bytes=1000, student_bytes=500, io_kept="yes")
    row = c._row(base, {"output": "p", "kind": "logits", "metric": "top1_agreement", "value": 0.9, "target": 0.95})
    assert not row.met and "by 0.050" in row.why and "2.0x smaller" in row.why
    ok = c.Row("t", "mobile-arm64", teacher_bytes=1000, student_bytes=100, io_kept="yes")
    good = c._row(ok, {"output": "p", "kind": "logits", "metric": "top1_agreement", "value": 0.97, "target": 0.95})
    assert good.met and good.why == ""


def test_option_pairs_are_json_values_or_plain_words() -> None:
    got = c.parse_options(["calibration_samples=2048", "qat=never", 'student={"width": 16}'])
    assert got == {"calibration_samples": 2048, "qat": "never", "student": {"width": 16}}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        c.parse_options(["calibration_samples"])
