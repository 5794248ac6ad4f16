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


# --------------------------------------------------------------------------------------------------
# per output kind (teachers with several outputs, or outputs other than one class-score vector)
# --------------------------------------------------------------------------------------------------

CLASS_KINDS = ("logits", "probabilities", "log_probabilities")
SIGMOID_KINDS = ("sigmoid", "sigmoid_logits", "multilabel")
PER_UNIT_AUC_MAX_UNITS = 64  # above this many sigmoid units the AUC is pooled over all of them
BALANCED_AGREEMENT_MIN = 0.8  # quality_problem: sigmoid outputs below this are not a usable student
CLASS_GAIN_MIN = 0.5  # ... nor class outputs that close less than half the gap from a constant guess to 1


def _prob(kind: str, a: np.ndarray) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60))) if kind == "sigmoid_logits" else x


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def output_metrics(
    kind: str,
    student_out: np.ndarray,
    teacher_out: np.ndarray,
    labels: np.ndarray | None = None,
    threshold: float = 0.5,
    teacher_scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """One output of one variant against the teacher, in the teacher's space (what the exported model
    returns). ``headline`` is the figure each kind is judged by, higher is better:
    top-1 agreement (class scores, class indices), balanced decision agreement at the teacher's
    threshold (sigmoid kinds), R^2 vs the teacher (regression), R^2 on the anchors the teacher's
    scores mark positive (boxes; ``teacher_scores`` are its probabilities per anchor)."""
    s = np.asarray(student_out)
    t = np.asarray(teacher_out)
    n = int(t.shape[0])
    out: dict[str, Any] = {"kind": kind, "samples": n}
    if kind in CLASS_KINDS:
        ps, pt = np.argmax(s, axis=-1), np.argmax(t, axis=-1)
        out["top1_agreement"] = float(np.mean(ps == pt))
        counts = np.bincount(pt.reshape(-1), minlength=t.shape[-1])
        out["constant_agreement"] = float(counts.max() / max(1, counts.sum()))  # always guessing the mode
        if labels is not None and ps.ndim == 1:
            out["accuracy"] = float(np.mean(ps == labels))
        out["headline"], out["headline_name"] = out["top1_agreement"], "top-1 agreement"
    elif kind == "class_index":
        out["agreement"] = float(np.mean(s.reshape(n, -1) == t.reshape(n, -1)))
        if labels is not None and t.ndim == 1:
            out["accuracy"] = float(np.mean(s == labels))
        out["headline"], out["headline_name"] = out["agreement"], "agreement"
    elif kind in SIGMOID_KINDS:
        p_s = _prob(kind, s).reshape(n, -1)
        p_t = _prob(kind, t).reshape(n, -1)
        pos_t, pos_s = p_t >= threshold, p_s >= threshold
        per_unit: list[float] = []
        tpr: list[float] = []
        tnr: list[float] = []
        for u in range(p_t.shape[1]):
            rates = []
            if pos_t[:, u].any():
                tpr.append(float(np.mean(pos_s[pos_t[:, u], u])))
                rates.append(tpr[-1])
            if (~pos_t[:, u]).any():
                tnr.append(float(np.mean(~pos_s[~pos_t[:, u], u])))
                rates.append(tnr[-1])
            per_unit.append(float(np.mean(rates)))
        out["balanced_agreement"] = float(np.mean(per_unit))
        out["agreement"] = float(np.mean(pos_s == pos_t))
        out["positive_agreement"] = float(np.mean(tpr)) if tpr else None
        out["negative_agreement"] = float(np.mean(tnr)) if tnr else None
        out["teacher_positive_rate"] = float(np.mean(pos_t))
        out["threshold"] = threshold
        if p_t.shape[1] <= PER_UNIT_AUC_MAX_UNITS:
            aucs = [a for u in range(p_t.shape[1]) if (a := _auc(pos_t[:, u], p_s[:, u])) is not None]
            out["auc"] = float(np.mean(aucs)) if aucs else None
            out["auc_over"] = "per unit, averaged"
        else:
            out["auc"] = _auc(pos_t.reshape(-1), p_s.reshape(-1))
            out["auc_over"] = f"all {p_t.shape[1]} units pooled"
        out["mae"] = float(np.mean(np.abs(p_s - p_t)))
        if kind == "sigmoid_logits" and p_t.shape[1] > 1:
            # detector anchor scores: what the user decides per image is whether its best anchor fires
            img_s, img_t = p_s.max(1) >= threshold, p_t.max(1) >= threshold
            out["image_agreement"] = float(np.mean(img_s == img_t))
            out["image_positive_rate"] = float(np.mean(img_t))
        out["headline"], out["headline_name"] = out["balanced_agreement"], "balanced agreement"
    elif kind == "boxes":
        s3 = s.reshape(n, s.shape[1], -1).astype(np.float64)
        t3 = t.reshape(n, t.shape[1], -1).astype(np.float64)
        if teacher_scores is not None:
            w = np.asarray(teacher_scores, dtype=np.float64).reshape(n, s.shape[1])
            mask = w >= threshold
            if not mask.any():  # no confident anchor: the teacher's top 1 % count
                mask = w >= np.quantile(w, 0.99)
        else:
            mask = np.ones(s3.shape[:2], dtype=bool)
        sel_s, sel_t = s3[mask], t3[mask]
        out["positive_anchors"] = int(mask.sum())
        out["mae_positive"] = float(np.mean(np.abs(sel_s - sel_t))) if sel_s.size else None
        out["r2_positive"] = r2(sel_s, sel_t) if sel_s.size else None
        out["mae_all"] = float(np.mean(np.abs(s3 - t3)))
        out["headline"] = out["r2_positive"] if out["r2_positive"] is not None else 0.0
        out["headline_name"] = "R^2 on the teacher's positive anchors"
    else:  # regression
        out["r2_vs_teacher"] = r2(s, t)
        out["mae_vs_teacher"] = float(np.mean(np.abs(s.astype(np.float64) - t)))
        if labels is not None and labels.size == s.size:
            y = labels.reshape(s.shape)
            out["r2"] = r2(s, y)
            out["mae"] = float(np.mean(np.abs(s - y)))
        out["headline"], out["headline_name"] = out["r2_vs_teacher"], "R^2 vs the teacher"
    return out


def variant_headline(per_output: dict[str, dict[str, Any]], weights: dict[str, float] | None = None) -> float:
    """One figure per model variant: the weighted mean of its outputs' headlines, each clipped to
    [0, 1] (an R^2 of -5 counts as 0, not as minus five agreements)."""
    weights = weights or {}
    total = wsum = 0.0
    for name, m in per_output.items():
        w = float(weights.get(name, 1.0))
        if w <= 0 or m.get("kind") == "class_index":
            continue
        total += w * min(1.0, max(0.0, float(m["headline"])))
        wsum += w
    return total / wsum if wsum else 0.0


def quality_problem(metrics: dict[str, Any]) -> str | None:
    """Why a student is not meaningful, from its per-output metrics ({output name: output_metrics}),
    or None. Sigmoid outputs need balanced agreement >= 0.8; class-score outputs must close at least
    half the gap between a constant guess of the teacher's most common class and full agreement;
    regression and boxes must beat predicting the teacher's mean (R^2 > 0)."""
    problems: list[str] = []
    for name, m in metrics.items():
        kind = m.get("kind")
        if kind in SIGMOID_KINDS and m["balanced_agreement"] < BALANCED_AGREEMENT_MIN:
            problems.append(
                f"output {name!r}: balanced agreement {m['balanced_agreement']:.2f} < {BALANCED_AGREEMENT_MIN} "
                f"(positives {m['positive_agreement'] if m['positive_agreement'] is not None else 'n/a'}, "
                f"negatives {m['negative_agreement'] if m['negative_agreement'] is not None else 'n/a'})"
            )
        elif kind in CLASS_KINDS:
            base, got = m["constant_agreement"], m["top1_agreement"]
            gain = (got - base) / (1 - base) if base < 1 else 1.0
            if gain < CLASS_GAIN_MIN:
                problems.append(
                    f"output {name!r}: top-1 agreement {got:.2f} closes only {100 * max(gain, 0):.0f} % of the gap "
                    f"between a constant guess of the teacher's most common class ({base:.2f}) and full agreement"
                )
        elif kind in ("regression", "boxes") and m.get("headline") is not None and m["headline"] <= 0:
            problems.append(f"output {name!r}: {m['headline_name']} {m['headline']:.2f} is no better than a constant")
    return "; ".join(problems) if problems else None


def evaluate_outputs(
    kinds: dict[str, str],
    student: dict[str, np.ndarray],
    teacher: dict[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    primary: str | None = None,
    thresholds: dict[str, float] | None = None,
    scores: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """output_metrics for every output present in ``student`` (teacher space), by name. Labels go to
    the primary output; boxes are judged on the anchors their score output marks positive."""
    thresholds, scores = thresholds or {}, scores or {}
    result: dict[str, dict[str, Any]] = {}
    for name, out in student.items():
        kind = kinds[name]
        teacher_scores = None
        if kind == "boxes" and scores.get(name) in teacher:
            sname = scores[name]
            teacher_scores = _prob(kinds.get(sname, "sigmoid"), teacher[sname])
        result[name] = output_metrics(
            kind,
            out,
            teacher[name],
            labels=labels if name == primary else None,
            threshold=thresholds.get(name, 0.5),
            teacher_scores=teacher_scores,
        )
    return result
