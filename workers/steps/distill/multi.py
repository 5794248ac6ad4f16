"""Distillation of teachers with several inputs or outputs, or outputs other than one class-score /
regression vector: one loss term per trained output by its kind (losses/multi_output.py), weighted by
options.outputs[name].weight, and validation / early stopping on the headline metric across outputs
(metrics.variant_headline; detector anchor scores count half per anchor, half per image:
selection_view). Inputs keep their dtypes (token ids int64) and live on the training device for the
whole run, as on the single-input path.

Reads state.signature, state.data, state.teacher_outputs; writes what step.fit/finish_student write."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.signature import (
    CLASS_SCORE_KINDS,
    FLOAT_DTYPES,
    LEGACY_KINDS,
    UNTRAINED_KINDS,
    ModelSignature,
)
from edgedistill.contracts.spec import JobOptions, LossTerm

if TYPE_CHECKING:
    import torch

    from edgedistill.workers.pipeline.context import RunState
    from edgedistill.workers.steps.distill.trainer import SplitTensors

SIGMOID_KINDS = ("sigmoid", "sigmoid_logits", "multilabel")


def needs_multi(signature: ModelSignature | None) -> bool:
    """False for the classic case the single-input fast path handles: one float input, one output of
    a class-score or regression kind with a (k,) per-sample shape."""
    if signature is None:
        return False
    if len(signature.inputs) != 1 or len(signature.outputs) != 1:
        return True
    if signature.inputs[0].dtype not in FLOAT_DTYPES:  # token ids stay integers (the fast path casts to float)
        return True
    out = signature.outputs[0]
    return out.kind not in LEGACY_KINDS or len(out.per_sample) != 1


def trained(signature: ModelSignature) -> list[str]:
    return [o.name for o in signature.outputs if o.kind not in UNTRAINED_KINDS]


def _weight(opts: JobOptions, name: str) -> float:
    o = (opts.outputs or {}).get(name)
    return 1.0 if o is None else float(o.weight)


def _scale(arr: np.ndarray) -> float:
    std = float(np.std(arr)) if arr.size else 1.0
    return std if std > 1e-6 else 1.0


def output_terms(
    signature: ModelSignature,
    opts: JobOptions,
    train_outputs: dict[str, np.ndarray],
    *,
    method: str,
    has_labels: bool,
    primary: str | None,
) -> list[LossTerm]:
    """One weighted term per trained output (student output order); labels CE on the primary output."""
    names = trained(signature)
    terms: list[LossTerm] = []
    if method == "labels_only":
        if not has_labels or primary is None or signature.output(primary).kind not in CLASS_SCORE_KINDS:
            raise InputError("method labels_only needs labels y and a class-score output")
        return [LossTerm(key="ce_output", kwargs={"index": names.index(primary)})]
    for i, name in enumerate(names):
        spec = signature.output(name)
        w = _weight(opts, name)
        if w <= 0:
            continue
        kind = spec.kind
        if kind in CLASS_SCORE_KINDS:
            use_labels = has_labels and name == primary and opts.alpha < 1
            kw = {"index": i, "temperature": opts.temperature, "teacher_space": kind}
            terms.append(LossTerm(key="kl_output", weight=w * (opts.alpha if use_labels else 1.0), kwargs=kw))
            if use_labels:
                terms.append(LossTerm(key="ce_output", weight=w * (1 - opts.alpha), kwargs={"index": i}))
        elif kind in SIGMOID_KINDS:
            terms.append(LossTerm(key="bce_output", weight=w, kwargs={"index": i, "teacher_space": kind}))
            if kind == "sigmoid_logits" and math.prod(int(d or 1) for d in spec.per_sample[:-1]) > 1:
                # detector anchor scores: also match the image-level score (the largest anchor's)
                terms.append(LossTerm(key="max_score_output", weight=w, kwargs={"index": i, "teacher_space": kind}))
        elif kind == "boxes" and spec.scores in names:
            skind = signature.output(spec.scores).kind
            terms.append(
                LossTerm(
                    key="boxes_output",
                    weight=w,
                    kwargs={
                        "index": i,
                        "scores_index": names.index(spec.scores),
                        "scores_space": skind if skind in SIGMOID_KINDS else "sigmoid_logits",
                        "scale": _scale(train_outputs[name]),
                    },
                )
            )
        else:  # regression, or boxes without a score output
            terms.append(
                LossTerm(key="smooth_l1_output", weight=w, kwargs={"index": i, "scale": _scale(train_outputs[name])})
            )
    return terms


def split_tensors(state: RunState, split: str, device: torch.device) -> SplitTensors:
    from edgedistill.workers.steps.distill.trainer import SplitTensors

    sig, data = state.signature, state.data
    inputs = data.inputs_of(split)
    outs = state.teacher_outputs[split]
    return SplitTensors.from_outputs(
        [inputs[n] for n in sig.input_names],
        [outs[n] for n in trained(sig)],
        data.y_of(split),
        task=data.task,
        device=device,
    )


def thresholds(signature: ModelSignature, opts: JobOptions) -> dict[str, float]:
    out: dict[str, float] = {}
    for o in signature.outputs:
        opt = (opts.outputs or {}).get(o.name)
        out[o.name] = opt.threshold if opt is not None and opt.threshold is not None else 0.5
    return out


def evaluate_raw(
    state: RunState, opts: JobOptions, raw: tuple[Any, ...], teacher: dict[str, np.ndarray], labels: Any
) -> dict[str, dict[str, Any]]:
    """Per-output metrics of raw student outputs (numpy or tensors, student order) vs the teacher."""
    from edgedistill.workers.steps.heads import raw_to_teacher_space
    from edgedistill.workers.steps.metrics import evaluate_outputs

    sig = state.signature
    names = trained(sig)
    kinds = {o.name: str(o.kind) for o in sig.outputs}
    student = {
        n: raw_to_teacher_space(kinds[n], r.detach().cpu().numpy() if hasattr(r, "detach") else r)
        for n, r in zip(names, raw, strict=True)
    }
    return evaluate_outputs(
        kinds, student, {n: teacher[n] for n in names},
        labels=None if labels is None else np.asarray(labels), primary=state.data.primary_output,
        thresholds=thresholds(sig, opts), scores={o.name: o.scores for o in sig.outputs if o.scores},
    )  # fmt: skip


def selection_view(per_output: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-output metrics with the headline validation selects epochs by. Detector anchor scores
    (outputs with an image_agreement) count the mean of the per-anchor balanced agreement and the
    per-image decision: the per-anchor figure is dominated by hundreds of anchors that never fire,
    while the user acts on whether the image's best anchor fires (an int8 file's false faces move
    the image figure, not the anchor one); other outputs keep their headline."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in per_output.items():
        image = m.get("image_agreement")
        out[name] = m if image is None else {**m, "headline": (float(m["headline"]) + float(image)) / 2}
    return out


def score_fn(state: RunState, opts: JobOptions, split: str) -> Any:
    """Validation: the weighted headline across outputs (selection_view), and the primary output's
    label accuracy."""
    from edgedistill.workers.steps.metrics import variant_headline

    teacher = state.teacher_outputs[split]
    weights = {n: _weight(opts, n) for n in trained(state.signature)}

    def score(raw: tuple[Any, ...], val: SplitTensors) -> tuple[float, float | None]:
        y = None if val.y is None else val.y.cpu().numpy()
        m = evaluate_raw(state, opts, raw, teacher, y)
        primary = state.data.primary_output
        acc = m.get(primary, {}).get("accuracy") if primary else None
        return variant_headline(selection_view(m), weights), acc

    return score


def student_test_metrics(state: RunState, opts: JobOptions, student: Any) -> dict[str, Any]:
    """state.metrics["student_fp32"] for a multi-output student: per output and the headline."""
    import torch

    from edgedistill.workers.steps.distill.trainer import predict_outputs
    from edgedistill.workers.steps.metrics import quality_problem, variant_headline

    test = split_tensors(state, "test", torch.device("cpu"))
    raw = predict_outputs(student, test.inputs)
    y = state.data.y_of("test")
    per = evaluate_raw(state, opts, raw, state.teacher_outputs["test"], y)
    weights = {n: _weight(opts, n) for n in per}
    primary = state.data.primary_output
    return {
        "outputs": per,
        "headline": variant_headline(per, weights),
        "test_fidelity": variant_headline(per, weights),
        "test_accuracy": per.get(primary, {}).get("accuracy") if primary else None,
        "quality_problem": quality_problem(per),
    }
