from __future__ import annotations

import numpy as np

from bench.real_tasks import agreement, score


def test_text_score_is_top1_against_the_labels_and_agreement_against_the_teacher() -> None:
    logits = {"logits": np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])}
    teacher = {"logits": np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])}
    held = {"y": np.array([0, 1, 1, 1])}
    assert score("text", logits, held) == 0.75
    assert agreement("text", logits, teacher) == 0.75


def test_vad_score_is_per_frame_at_one_half_over_the_rows_scored() -> None:
    # the MCU file is judged on a prefix of the held-out set (TFLM runs one sample at a time)
    student = {"speech": np.array([[0.9, 0.2, 0.6, 0.4]])}
    teacher = {"speech": np.array([[0.8, 0.1, 0.1, 0.9], [0.0, 0.0, 0.0, 0.0]])}
    held = {"y": np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])}
    assert score("vad", student, held) == 0.75
    assert agreement("vad", student, teacher) == 0.5
