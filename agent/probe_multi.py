"""The probe of a job whose teacher has several inputs or outputs (workers.steps.probe_multi): inputs
by the teacher's names in their own dtypes, each variant's outputs per output name, and a JSON
manifest naming them; and the output-by-output comparison of a device run with the host's."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgedistill.agent.errors import AgentError
from edgedistill.agent.probe import Agreement, compare, reference_variant

MANIFEST_KEY = "probe_manifest"
SEPARATOR = "__"
CLASS_KINDS = frozenset({"logits", "probabilities", "log_probabilities"})
INDEX_KINDS = frozenset({"class_index"})


@dataclass(frozen=True)
class MultiProbe:
    inputs: dict[str, np.ndarray]  # teacher input name -> samples (ids stay integers)
    output_kinds: dict[str, str | None]  # teacher output name -> kind, in teacher order
    outputs: dict[str, dict[str, np.ndarray]]  # variant -> output name -> host outputs
    y: np.ndarray | None

    @property
    def samples(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def reference_for(self, kind: str) -> tuple[str, dict[str, np.ndarray]]:
        variant = reference_variant(self.outputs, kind)
        return variant, self.outputs[variant]


def is_multi(arrays: dict[str, np.ndarray]) -> bool:
    return MANIFEST_KEY in arrays


def parse_multi(arrays: dict[str, np.ndarray], filename: str) -> MultiProbe:
    try:
        manifest = json.loads(str(arrays[MANIFEST_KEY][()]))
        input_names = [str(t["name"]) for t in manifest["inputs"]]
        kinds = {str(o["name"]): (None if o.get("kind") is None else str(o["kind"])) for o in manifest["outputs"]}
        variants = [str(v) for v in manifest["variants"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"the probe file {filename} has an unreadable manifest: {exc}") from exc
    missing = [n for n in input_names if n not in arrays]
    if not input_names or missing:
        raise AgentError(f"the probe file {filename} lacks inputs {missing or '(none listed)'}")
    inputs = {n: np.ascontiguousarray(arrays[n]) for n in input_names}
    n = int(inputs[input_names[0]].shape[0])
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for variant in variants:
        per: dict[str, np.ndarray] = {}
        for name in kinds:
            key = f"out_{variant}{SEPARATOR}{name}"
            if key not in arrays:
                raise AgentError(f"the probe file {filename} lists variant {variant} but has no {key}")
            if arrays[key].shape[0] != n:
                raise AgentError(f"probe output {key} has {arrays[key].shape[0]} rows for {n} inputs")
            per[name] = np.asarray(arrays[key])
        outputs[variant] = per
    if any(a.shape[0] != n for a in inputs.values()):
        raise AgentError(f"the probe file {filename}'s inputs have different numbers of samples")
    return MultiProbe(inputs=inputs, output_kinds=kinds, outputs=outputs, y=arrays.get("y"))


@dataclass(frozen=True)
class OutputAgreement:
    name: str
    kind: str | None
    agreement: float | None  # top-1 (class scores) or exact match (class indices); None otherwise
    max_abs_diff: float | None  # None for class indices (a distance between labels means nothing)
    mean_abs_diff: float | None
    reference_max_abs: float | None
    non_finite: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def relative(self) -> float:
        if self.max_abs_diff is None:
            return 0.0
        return self.max_abs_diff / max(self.reference_max_abs or 0.0, 1e-12)


def compare_outputs(
    device: dict[str, np.ndarray], host: dict[str, np.ndarray], kinds: dict[str, str | None]
) -> list[OutputAgreement]:
    out: list[OutputAgreement] = []
    for name, kind in kinds.items():
        if name not in device:
            raise AgentError(f"the model gave no output {name!r} (it gave: {', '.join(device) or 'none'})")
        d, h = np.asarray(device[name]), np.asarray(host[name])
        if kind in INDEX_KINDS:
            if d.shape != h.shape:
                raise AgentError(f"output {name!r} has shape {list(d.shape)}, the host's {list(h.shape)}")
            agree = float(np.mean(d.astype(np.int64) == h.astype(np.int64)))
            out.append(OutputAgreement(name, kind, agree, None, None, None, 0))
            continue
        a: Agreement = compare(d, h, classification=kind in CLASS_KINDS and h.ndim == 2 and h.shape[1] >= 2)
        out.append(
            OutputAgreement(name, kind, a.agreement, a.max_abs_diff, a.mean_abs_diff, a.reference_max_abs, a.non_finite)
        )
    return out


def headline(per: list[OutputAgreement]) -> tuple[float | None, OutputAgreement | None]:
    """The figures the service judges one measurement by: the lowest agreement of any output, and the
    output whose max |diff| is the largest share of its own scale (outputs differ in scale)."""
    agreements = [p.agreement for p in per if p.agreement is not None]
    with_diff = [p for p in per if p.max_abs_diff is not None]
    worst = max(with_diff, key=lambda p: p.relative) if with_diff else None
    return (min(agreements) if agreements else None), worst
