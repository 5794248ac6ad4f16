from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgedistill.contracts.spec import JobOptions
from edgedistill.contracts.verdict import quality_verdict, verdict_line


def test_quality_target_defaults_to_97_percent_and_is_bounded() -> None:
    assert JobOptions().quality_target == 0.97
    assert JobOptions(quality_target=1.2).quality_target == 1.2
    for bad in (0, -0.1, 1.6):
        with pytest.raises(ValidationError):
            JobOptions(quality_target=bad)


def test_accuracy_is_kept_as_a_ratio_to_the_teacher() -> None:
    q = quality_verdict(metric="accuracy", teacher=0.9, student=0.468, target=0.97, samples=540, variant="onnx_int8")
    assert q["kept"] == pytest.approx(0.52) and q["met"] is False and q["small_sample"] is False
    line = verdict_line(q) or ""
    assert line.startswith("below target: onnx_int8 keeps 52.0 % of the teacher's accuracy")
    assert "target 97.0 %" in line and "on 540 test samples" in line and "small" not in line
    ok = quality_verdict(metric="accuracy", teacher=0.9, student=0.88, target=0.97, samples=540, variant="x")
    assert ok["met"] is True and (verdict_line(ok) or "").startswith("meets target")


def test_agreement_is_kept_as_is_because_the_teacher_scores_one() -> None:
    q = quality_verdict(metric="top1_agreement", teacher=1.0, student=0.95, target=0.97, samples=120, variant="v")
    assert q["kept"] == 0.95 and q["teacher"] == 1.0 and q["met"] is False
    assert "by definition" in q["basis"] and q["small_sample"] is True
    assert "small test split" in (verdict_line(q) or "")


def test_a_quality_problem_or_a_missing_figure_never_meets_the_target() -> None:
    q = quality_verdict(metric="top1_agreement", teacher=1.0, student=0.99, target=0.5, samples=300, variant="v",
                        problem="output 'y': no better than a constant")  # fmt: skip
    assert q["met"] is False and "no better than a constant" in (verdict_line(q) or "")
    missing = quality_verdict(metric="accuracy", teacher=0.9, student=None, target=0.97, samples=None, variant=None)
    assert missing["met"] is False and missing["kept"] is None


def test_a_teacher_at_or_below_zero_r2_has_no_ratio() -> None:
    worse = quality_verdict(metric="r2", teacher=-0.2, student=-0.5, target=0.97, samples=300, variant="v")
    better = quality_verdict(metric="r2", teacher=-0.2, student=0.1, target=0.97, samples=300, variant="v")
    assert worse["kept"] is None and worse["met"] is False and better["met"] is True
    assert verdict_line(None) is None and verdict_line({"problem": None}) is None
