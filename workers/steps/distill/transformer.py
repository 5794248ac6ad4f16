"""Method transformer: per-output KD (multi.output_terms, kl_output on logits) plus MiniLM and TinyBERT
terms on features read from the teacher's graph (features.OnnxSequenceTaps):

- minilm_attention: the last student layer's attention probabilities <- the last teacher layer's
  (per head when the head counts match, else averaged over heads);
- minilm_value: the same layers' value relations (re-split into the student's head count);
- tinybert_hidden: each student layer's output <- teacher layer g(m) = m * T / S (features.depth_pairs:
  every other layer for a half-depth student), through a learned projection when the widths differ.

Teachers whose graph has no attention Softmax (or formats whose attention is not read) get the KD
terms only, and the report says so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import LossTerm

if TYPE_CHECKING:
    from torch import nn

    from edgedistill.workers.pipeline.context import RunContext, RunState
    from edgedistill.workers.steps.distill.features import SequencePlan

ATTENTION_WEIGHT = 1.0
VALUE_WEIGHT = 1.0
HIDDEN_WEIGHT = 1.0
FEATURE_KEYS = ("minilm_attention", "minilm_value", "tinybert_attention", "tinybert_hidden")


def plan_transformer(
    ctx: RunContext, state: RunState, student: nn.Module
) -> tuple[list[LossTerm], SequencePlan | None, dict[str, Any]]:
    """(extra loss terms, the feature plan with the cached teacher features, what the report says)."""
    from edgedistill.workers.steps.distill.features import (
        depth_pairs,
        plan_sequence_features,
        sequence_taps,
        student_sequence_taps,
    )
    from edgedistill.workers.steps.students_transformer import TransformerStudent

    if not isinstance(student, TransformerStudent):
        raise InputError("method transformer needs the transformer student (options.student.family transformer)")
    inputs = state.data.inputs_of("train")
    taps = sequence_taps(state.teacher, inputs)
    info: dict[str, Any] = {"student_layers": student.depth, "student_heads": student.heads}
    if taps is None or not taps.layers:
        why = (
            "the teacher's format does not expose its attention here (ONNX only)"
            if taps is None
            else "the teacher's graph has no attention Softmax over (L, L) scores"
        )
        info["terms_used"] = ["kl_output"]
        info["note"] = f"{why}: logits KD only, no attention or hidden-state transfer"
        return [], None, info
    layers = taps.layers
    t_heads = layers[-1].attention.shape[0]
    s_count = student.depth
    info.update(
        teacher_layers=len(layers),
        teacher_heads=t_heads,
        heads=(
            f"per head ({t_heads} = {student.heads})"
            if t_heads == student.heads
            else f"averaged over heads (teacher {t_heads}, student {student.heads})"
        ),
    )
    last = layers[-1]
    wanted: list[tuple[str, str, Any, str]] = [
        ("attention", f"blocks.{s_count - 1}.attn_softmax", last.attention, "MiniLM: last layer <- last layer")
    ]
    if last.values is not None and (last.values.shape[0] * last.values.shape[2]) % student.heads == 0:
        wanted.append(("values", f"blocks.{s_count - 1}.value_tap", last.values, "MiniLM: last layer's values"))
    for si, ti in reversed(depth_pairs(s_count, len(layers))):  # deepest first: dropped last for the cache
        hidden = layers[ti].hidden
        if hidden is not None:
            wanted.append(
                ("hidden", f"blocks.{si}", hidden, f"TinyBERT: student layer {si + 1} <- teacher layer {ti + 1}")
            )
    names = [s for _, s, _, _ in wanted]
    s_taps = {t.name: t for t in student_sequence_taps(student, names, inputs, state.signature.input_names)}
    plan = plan_sequence_features(taps, wanted, inputs, s_taps, ctx.spec.options.features.cache_mb)
    weights = {"attention": ("minilm_attention", ATTENTION_WEIGHT), "values": ("minilm_value", VALUE_WEIGHT),
               "hidden": ("tinybert_hidden", HIDDEN_WEIGHT)}  # fmt: skip
    requested = {t.key: t for t in ctx.spec.options.losses or [] if t.key in FEATURE_KEYS}
    terms: list[LossTerm] = []
    for role, (key, weight) in weights.items():
        idx = plan.indices(role)
        if idx:
            terms.append(LossTerm(key=key, weight=weight, kwargs={"pairs": idx}))
    if requested:  # options.losses replaces the default feature terms (pairs by role when not given)
        by_key = {"minilm_attention": "attention", "tinybert_attention": "attention", "minilm_value": "values",
                  "tinybert_hidden": "hidden"}  # fmt: skip
        terms = [
            LossTerm(key=t.key, weight=t.weight, kwargs={"pairs": plan.indices(by_key[t.key]), **t.kwargs})
            for t in requested.values()
            if plan.indices(by_key[t.key])
        ]
    info["terms_used"] = ["kl_output", *(t.key for t in terms)]
    info["pairs"] = [
        {
            "role": r,
            "student": p.student.name,
            "teacher": p.teacher.name,
            "how": p.how,
            "teacher_shape": list(p.teacher.shape),
        }
        for r, p in zip(plan.roles, plan.pairs, strict=True)
    ]
    return terms, plan, info
