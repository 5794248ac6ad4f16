"""Distillation methods: each one is a plug-in with a default weighted loss (terms of the loss
registry) and the training procedure it needs (plain, data-free, quantization-aware, lifelong, NAS).

`options.losses` replaces a method's default terms with any weighted sum (the hybrid case); the
procedure still follows the method. `auto` picks a method by the inputs given, modality and data size
and says why (auto_method). Its rules come from the digits benchmark (docs/benchmarks.md, "Distillation
methods"): data-free without data, lifelong with an earlier student, FitNets for small image/sequence
transfer sets, RKD for larger ones, plain KD for vectors and regression. They were read off that
benchmark's test figures, so its auto rows are not an independent validation of the rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import METHODS as METHOD_NAMES
from edgedistill.contracts.spec import JobOptions, LossTerm

Procedure = Literal["train", "data_free", "nas"]

# Default weights of the extra terms. The AT and SP losses carry their papers' constants (AT: the
# authors' beta = 1000 with a per-position mean, tuned on 32x32 CIFAR maps; SP: gamma = 3000). On the
# engine's small students the maps are 2x2-8x8, where the per-position mean makes AT 16-250x larger than
# on 32x32 maps, and both terms then swamp KD: with a tenth (beta_eff = 100, gamma_eff = 300) the
# validation fidelity on digits was equal or better in both benchmark settings (docs/benchmarks.md), so
# the methods use 0.1. FitNets and RKD use the papers' weights.
FITNET_WEIGHT = 1.0
AT_WEIGHT = 0.1
RKD_WEIGHT = 1.0
SP_WEIGHT = 0.1
# auto: below this many training samples per class the transfer set counts as small (see docs/benchmarks.md)
SMALL_DATA_PER_CLASS = 40


def _kd(task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    """Hinton KD: alpha * KD + (1 - alpha) * CE with labels; output MSE for regression."""
    if task == "regression":
        terms = [LossTerm(key="mse_logits", weight=alpha if has_labels else 1.0)]
        if has_labels and alpha < 1:
            terms.append(LossTerm(key="mse_labels", weight=1 - alpha))
        return terms
    terms = [LossTerm(key="kd", weight=alpha if has_labels else 1.0, kwargs={"temperature": temperature})]
    if has_labels and alpha < 1:
        terms.append(LossTerm(key="ce", weight=1 - alpha))
    return terms


def _plus(*extra: LossTerm) -> Callable[[str, bool, float, float], list[LossTerm]]:
    def terms(task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
        return [*_kd(task, has_labels, alpha, temperature), *extra]

    return terms


def _labels_only(task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    if not has_labels:
        raise InputError("method labels_only needs labels (y in the data)")
    return [LossTerm(key="ce" if task == "classification" else "mse_labels")]


def _lifelong(task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    # lwf's weight is set from options.lwf_weight by plan_for()
    return [*_kd(task, has_labels, alpha, temperature), LossTerm(key="lwf" if task == "classification" else "lwf_mse")]


def _data_free(task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    # DFAD's student loss: the mean absolute logit difference on generated inputs (no labels exist)
    return [LossTerm(key="l1_logits")]


HYBRID_EXTRA = (LossTerm(key="at", weight=AT_WEIGHT), LossTerm(key="rkd", weight=RKD_WEIGHT))


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # what it does, with the paper
    terms: Callable[[str, bool, float, float], list[LossTerm]]
    procedure: Procedure = "train"
    qat: bool = False  # always fine-tune with fake-quant int8 afterwards
    lifelong: bool = False  # needs options.init_from


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("kd", "soft targets at temperature T (Hinton et al. 2015) + label cross-entropy", _plus()),
        Method("labels_only", "label cross-entropy only: the baseline without a teacher", _labels_only),
        Method(
            "fitnet",
            "KD + FitNets hints: 1x1-conv regressors onto teacher features (Romero et al. 2015)",
            _plus(LossTerm(key="fitnet", weight=FITNET_WEIGHT)),
        ),
        Method(
            "at",
            "KD + attention transfer of spatial attention maps (Zagoruyko & Komodakis 2017)",
            _plus(LossTerm(key="at", weight=AT_WEIGHT)),
        ),
        Method(
            "rkd",
            "KD + relational KD, distance and angle potentials (Park et al. 2019)",
            _plus(LossTerm(key="rkd", weight=RKD_WEIGHT)),
        ),
        Method(
            "sp",
            "KD + similarity-preserving KD over the batch (Tung & Mori 2019)",
            _plus(LossTerm(key="sp", weight=SP_WEIGHT)),
        ),
        Method(
            "relational",
            "KD + RKD + similarity-preserving KD",
            _plus(LossTerm(key="rkd", weight=RKD_WEIGHT), LossTerm(key="sp", weight=SP_WEIGHT)),
        ),
        Method(
            "data_free",
            "no transfer set: a generator trained against the student with the teacher as judge (DFAD, "
            "Fang et al. 2019) + BN-statistics matching (DeepInversion, Yin et al. 2020) + class balance "
            "(DAFL, Chen et al. 2019)",
            _data_free,
            procedure="data_free",
        ),
        Method(
            "qat_kd",
            "KD, then fine-tuning with fake-quant int8 (PT2E QAT) while distilling",
            _plus(),
            qat=True,
        ),
        Method(
            "lifelong",
            "continue an earlier student on new data: KD from the teacher + LwF from the earlier student "
            "(Li & Hoiem 2016)",
            _lifelong,
            lifelong=True,
        ),
        Method(
            "nas",
            "search width, depth, kernel and expansion under the device budgets, proxy-train, then train the best",
            _plus(),
            procedure="nas",
        ),
        Method("hybrid", "KD + attention transfer + relational KD", _plus(*HYBRID_EXTRA)),
        Method(
            "transformer",
            "token-sequence teachers: a smaller transformer student, logits KD + MiniLM self-attention and "
            "value-relation transfer (Wang et al. 2020) + TinyBERT hidden-state matching (Jiao et al. 2020); "
            "features from the teacher graph's Softmax nodes (distill/transformer.py)",
            _plus(),
        ),
    )
}
if set(METHODS) | {"auto"} != set(METHOD_NAMES):  # the API validates names with spec.METHODS
    raise RuntimeError("edgedistill.contracts.spec.METHODS and the distillation methods differ")


def default_terms(method: str, *, task: str, has_labels: bool, alpha: float, temperature: float) -> list[LossTerm]:
    m = METHODS.get(method)
    if m is None:
        raise InputError(f"unknown distillation method {method!r}; known: {', '.join(sorted(METHODS))}")
    return m.terms(task, has_labels, alpha, temperature)


@dataclass
class Plan:
    """What the distill step will do: the method, its loss terms and why they were chosen."""

    method: str
    requested: str
    terms: list[LossTerm]
    procedure: Procedure
    qat: bool
    lifelong: bool
    reason: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "requested": self.requested,
            "summary": METHODS[self.method].summary,
            "procedure": self.procedure,
            "loss_terms": [t.model_dump() for t in self.terms],
            "why": self.reason,
            "notes": list(self.notes),
        }


def auto_method(
    *, modality: str, task: str, train_samples: int, num_outputs: int, has_data: bool, has_init: bool
) -> tuple[str, str]:
    """auto: the method for these inputs and the reason, in words."""
    if not has_data:
        return "data_free", "no transfer set was given, so inputs are synthesised from the teacher (data-free)"
    if has_init:
        return "lifelong", "an earlier student was given (init_from): continue it without forgetting (LwF)"
    per_class = train_samples / max(1, num_outputs) if task == "classification" else float(train_samples)
    if task != "classification":
        return "kd", "regression outputs: output matching (MSE to the teacher and the labels)"
    if modality in ("image", "sequence") and per_class < SMALL_DATA_PER_CLASS:
        return "fitnet", (
            f"{modality} data with a small transfer set ({per_class:.0f} training samples per class < "
            f"{SMALL_DATA_PER_CLASS}): FitNets hints give the student the teacher's intermediate features as "
            "extra targets per sample (best mean on the 10 % digits benchmark: 82.0 % vs KD 79.6 %)"
        )
    if modality in ("image", "sequence"):
        return "rkd", (
            f"{modality} data with {per_class:.0f} training samples per class: KD + relational KD (best on the "
            "full digits benchmark: 98.4 % vs KD 97.1 %; it hurt with 10 % of the data)"
        )
    return "kd", "vector data: the student is an MLP without spatial features; plain KD"


def plan_for(opts: JobOptions, *, task: str, has_labels: bool, modality: str, train_samples: int,
             num_outputs: int, has_data: bool, has_init: bool) -> Plan:  # fmt: skip
    requested = opts.method
    if requested == "auto":
        method, reason = auto_method(
            modality=modality, task=task, train_samples=train_samples, num_outputs=num_outputs,
            has_data=has_data, has_init=has_init,
        )  # fmt: skip
    else:
        method, reason = requested, f"method {requested} requested in the options"
    m = METHODS[method]
    if not has_data and m.procedure != "data_free":
        raise InputError(f"method {method} needs a transfer set; without data use method data_free or auto")
    if m.lifelong and not has_init:
        raise InputError("method lifelong needs options.init_from (an earlier run's student)")
    if opts.losses:
        terms = list(opts.losses)
        reason += "; loss terms from options.losses"
    else:
        terms = m.terms(task, has_labels, opts.alpha, opts.temperature)
        if m.lifelong or has_init:
            key = "lwf" if task == "classification" else "lwf_mse"
            terms = [t for t in terms if t.key != key] + [LossTerm(key=key, weight=opts.lwf_weight)]
    qat = m.qat or opts.qat == "always"
    return Plan(
        method=method,
        requested=requested,
        terms=terms,
        procedure=m.procedure,
        qat=qat,
        lifelong=has_init,
        reason=reason,
    )
