"""What each teacher output means, decided from its cached values, its name, its shape next to the
other outputs and the job's overrides (options.outputs). Every decision carries the reason, which
the report shows. Pure numpy.

Rules, first match wins: the job's kind; integer outputs are class indices (skl2onnx ``label``);
(anchors, k >= 4) next to an (anchors, 1) output are boxes weighted by that output's scores; rows
that are non-negative and sum to 1 are probabilities, rows whose exponentials sum to 1 are
log-probabilities; values all in [0, 1] are sigmoid probabilities (one unit per sample, or dense)
or multi-label (k units); the score output of boxes outside [0, 1] is sigmoid logits; any other
float output is logits when it is a class-score vector (a name like 'logits'/'scores'/'class', or
integer labels, or a classification task) and regression otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgedistill.contracts.signature import ModelSignature, OutputOptions

ROW_SUM_TOLERANCE = 1e-3
LOGIT_NAME_HINTS = ("logit", "score", "class", "cls")
PROB_NAME_HINTS = ("prob", "softmax")
SIGMOID_NAME_HINTS = ("sigmoid",)


@dataclass(frozen=True)
class KindDecision:
    name: str
    kind: str
    reason: str
    scores: str | None = None


def _per_sample(arr: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in arr.shape[1:])


def _rows_sum_to_one(arr: np.ndarray) -> bool:
    return bool(arr.size and np.allclose(arr.sum(axis=-1), 1.0, atol=ROW_SUM_TOLERANCE))


def _in_unit_interval(arr: np.ndarray) -> bool:
    return bool(arr.size and np.min(arr) >= 0.0 and np.max(arr) <= 1.0)


def _box_pairs(outputs: Mapping[str, np.ndarray]) -> dict[str, str]:
    """boxes output -> its score output: (A, k>=4) floats next to (A, 1) or (A,) floats, same A > 1."""
    pairs: dict[str, str] = {}
    for name, arr in outputs.items():
        ps = _per_sample(arr)
        if arr.dtype.kind != "f" or len(ps) != 2 or ps[0] < 2 or ps[1] < 4:
            continue
        for other, oarr in outputs.items():
            ops = _per_sample(oarr)
            if other != name and oarr.dtype.kind == "f" and ops in ((ps[0], 1), (ps[0],)):
                pairs[name] = other
                break
    return pairs


def infer_output_kinds(
    signature: ModelSignature,
    outputs: Mapping[str, np.ndarray],
    *,
    options: Mapping[str, OutputOptions] | None = None,
    labels: np.ndarray | None = None,
    task: str = "auto",
) -> list[KindDecision]:
    """One decision per teacher output, in teacher order. ``outputs`` are the teacher's outputs on
    (a sample of) the transfer data; ``labels`` the data's y, if any; ``task`` the job's task option."""
    options = options or {}
    boxes = _box_pairs(outputs)
    score_of = {score: box for box, score in boxes.items()}
    int_labels = bool(
        labels is not None and labels.ndim == 1 and (labels.dtype.kind in "iub" or np.all(np.mod(labels, 1) == 0))
    )
    decisions: list[KindDecision] = []
    class_scores_seen = False
    for spec in signature.outputs:
        name, arr = spec.name, np.asarray(outputs[spec.name])
        lname = name.lower()
        ps = _per_sample(arr)
        k = ps[-1] if ps else 1
        opt = options.get(name)
        if opt is not None and opt.kind is not None:
            scores = opt.scores or (boxes.get(name) if opt.kind == "boxes" else None)
            decisions.append(KindDecision(name, opt.kind, "set in options.outputs", scores))
            class_scores_seen |= opt.kind in ("logits", "probabilities", "log_probabilities")
            continue
        if arr.dtype.kind in "iub":
            decisions.append(KindDecision(name, "class_index", f"integer values ({arr.dtype}): a class index"))
            continue
        if name in boxes:
            decisions.append(
                KindDecision(
                    name, "boxes", f"{ps[0]} anchors x {ps[1]} values next to the score output {boxes[name]!r}",
                    boxes[name],
                )
            )  # fmt: skip
            continue
        if name in score_of:
            kind = "sigmoid" if _in_unit_interval(arr) else "sigmoid_logits"
            why = "in [0, 1]" if kind == "sigmoid" else "outside [0, 1]: raw scores"
            decisions.append(KindDecision(name, kind, f"per-anchor scores of boxes {score_of[name]!r}, {why}"))
            continue
        if k >= 2 and np.min(arr) >= 0 and _rows_sum_to_one(arr):
            decisions.append(KindDecision(name, "probabilities", f"non-negative rows of {k} that sum to 1"))
            class_scores_seen = True
            continue
        if k >= 2 and np.max(arr) <= 0 and _rows_sum_to_one(np.exp(arr)):
            decisions.append(KindDecision(name, "log_probabilities", f"rows of {k} whose exponentials sum to 1"))
            class_scores_seen = True
            continue
        if _in_unit_interval(arr) and not any(h in lname for h in LOGIT_NAME_HINTS):
            if int(np.prod(ps)) <= 1:
                decisions.append(KindDecision(name, "sigmoid", "one value per sample, all in [0, 1]"))
            elif len(ps) == 1:
                decisions.append(
                    KindDecision(name, "multilabel", f"{k} values per sample, all in [0, 1], rows not summing to 1")
                )
            else:
                decisions.append(KindDecision(name, "sigmoid", f"dense {ps} values, all in [0, 1]"))
            continue
        if any(h in lname for h in SIGMOID_NAME_HINTS):
            decisions.append(KindDecision(name, "sigmoid_logits", f"name {name!r} and values outside [0, 1]"))
            continue
        if k >= 2 and len(ps) == 1:
            if task == "regression":
                decisions.append(KindDecision(name, "regression", "options.task is regression"))
            elif task == "classification":
                decisions.append(KindDecision(name, "logits", "options.task is classification"))
                class_scores_seen = True
            elif labels is not None and not int_labels and not class_scores_seen:
                decisions.append(KindDecision(name, "regression", f"{k} values and real-valued labels y"))
            elif any(h in lname for h in LOGIT_NAME_HINTS + PROB_NAME_HINTS):
                decisions.append(KindDecision(name, "logits", f"{k} unnormalised scores; the name {name!r}"))
                class_scores_seen = True
            elif not class_scores_seen:
                why = "integer labels y" if int_labels else "no labels; a vector of scores"
                decisions.append(KindDecision(name, "logits", f"{k} unnormalised scores ({why})"))
                class_scores_seen = True
            else:
                decisions.append(
                    KindDecision(name, "regression", f"{k} real values (another output holds the classes)")
                )
            continue
        if task == "classification" and k >= 2:
            decisions.append(KindDecision(name, "logits", "options.task is classification"))
            continue
        decisions.append(KindDecision(name, "regression", f"real values of per-sample shape {ps or '()'}"))
    return decisions
