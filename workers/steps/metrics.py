"""How well one model variant does on the held-out test split, judged against the labels (when given),
the teacher's outputs and the float student. Pure numpy."""

from __future__ import annotations

from typing import Any

import numpy as np


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


def top1_agreement(outputs: np.ndarray, teacher: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == np.argmax(teacher, axis=1)))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination over all output columns (1 - SS_res / SS_tot)."""
    t = target.astype(np.float64).reshape(target.shape[0], -1)
    p = pred.astype(np.float64).reshape(pred.shape[0], -1)
    ss_tot = float(np.sum((t - t.mean(axis=0)) ** 2))
    ss_res = float(np.sum((t - p) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def quality_key(task: str, has_labels: bool) -> str:
    """The single number, higher is better, used to compare variants and to judge int8 drops."""
    if task == "classification":
        return "accuracy" if has_labels else "top1_agreement"
    return "r2" if has_labels else "r2_vs_teacher"


def evaluate(
    outputs: np.ndarray,
    *,
    task: str,
    teacher: np.ndarray,
    student: np.ndarray | None,
    labels: np.ndarray | None,
) -> dict[str, Any]:
    """Metrics of one variant; all arrays cover the same samples in the same order."""
    out: dict[str, Any] = {"samples": int(outputs.shape[0])}
    if task == "classification":
        if labels is not None:
            out["accuracy"] = accuracy(outputs, labels)
        out["top1_agreement"] = top1_agreement(outputs, teacher)
    else:
        out["mse_vs_teacher"] = mse(outputs, teacher)
        out["r2_vs_teacher"] = r2(outputs, teacher)
        if labels is not None:
            y = labels.reshape(outputs.shape)
            out["mse"] = mse(outputs, y)
            out["r2"] = r2(outputs, y)
    if student is not None:
        out["max_abs_diff_vs_student_fp32"] = float(np.max(np.abs(outputs.astype(np.float64) - student)))
        out["mean_abs_diff_vs_student_fp32"] = float(np.mean(np.abs(outputs.astype(np.float64) - student)))
    return out
