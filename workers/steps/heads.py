"""The deployable face of a trained student: every teacher output, in teacher order, with the teacher's
semantics (softmax for probabilities, sigmoid for sigmoid kinds, argmax for class indices).

The raw student (the engine contract) returns one RAW tensor per trained output: logits for the
softmax kinds, pre-sigmoid scores for the sigmoid kinds, plain values otherwise, and nothing for
``class_index`` outputs. Training works on those raw values (numerically stable losses); every
exporter exports ``export_module(student, signature)`` so the user's post-processing (thresholds, label
maps, anchor decoding) sees exactly what the teacher gave it."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.signature import UNTRAINED_KINDS, ModelSignature

# kinds whose argmax is a class: a class_index output is computed from the first of these
CLASS_SCORE_KINDS: tuple[str, ...] = ("logits", "probabilities", "log_probabilities")
SIGMOID_KINDS: frozenset[str] = frozenset({"sigmoid", "multilabel"})


def trained_output_names(signature: ModelSignature) -> tuple[str, ...]:
    """Teacher outputs the student produces, in teacher order (class indices excluded)."""
    return tuple(o.name for o in signature.outputs if o.kind not in UNTRAINED_KINDS)


def head_plan(signature: ModelSignature) -> list[tuple[str, str, int]]:
    """Per teacher output: (name, kind, index into the raw student's outputs). For class_index
    outputs the index is that of the class-score output it labels."""
    trained = trained_output_names(signature)
    if not trained:
        raise InputError("the teacher has no output a student can be trained on (only class indices)")
    plan: list[tuple[str, str, int]] = []
    for spec in signature.outputs:
        if spec.kind is None:
            raise InputError(f"output {spec.name!r} has no kind yet (infer or set options.outputs)")
        if spec.kind in UNTRAINED_KINDS:
            source = next((o.name for o in signature.outputs if o.kind in CLASS_SCORE_KINDS), None)
            if source is None:
                raise InputError(
                    f"class-index output {spec.name!r} needs a logits or probabilities output to take its argmax from"
                )
            plan.append((spec.name, spec.kind, trained.index(source)))
        else:
            plan.append((spec.name, spec.kind, trained.index(spec.name)))
    return plan


def export_module(student: Any, signature: ModelSignature) -> Any:
    """Wrap the raw student: ``forward(*inputs)`` returns a tuple with every teacher output in teacher
    order (always a tuple, also for one output). The wrapper holds the student as a submodule, so
    ``.eval()``/``.cpu()`` and state_dict reach it."""
    import torch
    from torch import nn

    plan = head_plan(signature)

    class ExportModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.plan = plan

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            raw = self.student(*inputs)
            if isinstance(raw, torch.Tensor):
                raw = (raw,)
            outs: list[torch.Tensor] = []
            for _name, kind, idx in self.plan:
                r = raw[idx]
                if kind == "probabilities":
                    outs.append(torch.softmax(r, dim=-1))
                elif kind == "log_probabilities":
                    outs.append(torch.log_softmax(r, dim=-1))
                elif kind in SIGMOID_KINDS:
                    outs.append(torch.sigmoid(r))
                elif kind in UNTRAINED_KINDS:
                    outs.append(torch.argmax(r, dim=-1).to(torch.int64))
                else:  # logits, sigmoid_logits, regression, boxes: the raw values are the teacher's
                    outs.append(r)
            return tuple(outs)

    return ExportModule().eval()


def raw_to_teacher_space(kind: str, raw: Any) -> Any:
    """numpy version of the wrapper for one output (verify compares a raw torch student this way)."""
    import numpy as np

    x = np.asarray(raw, dtype=np.float64)
    if kind in ("probabilities", "log_probabilities"):
        z = x - x.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return (np.exp(logp) if kind == "probabilities" else logp).astype(np.float32)
    if kind in SIGMOID_KINDS:
        return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)
    return x.astype(np.float32)
