"""A teacher's whole I/O signature and what each output means: the contract shared by the engine
(load, train, export, verify, report), the API's submit-time checks and the dashboard.

Pure pydantic, no numpy or ML imports: the API process reads and compares signatures too.
Shapes include the batch axis; ``None`` marks a dynamic dimension."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

# numpy dtype names a teacher input or output may have.
DType = Literal["float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]
FLOAT_DTYPES: frozenset[str] = frozenset({"float16", "float32", "float64"})
INT_DTYPES: frozenset[str] = frozenset({"int8", "uint8", "int16", "int32", "int64", "bool"})

# How an input's axes are laid out, as far as it is known; the student export keeps it.
Layout = Literal["NCHW", "NHWC", "NCL", "NLC", "NC", "tokens", "unknown"]

# What an output means; each kind has its own loss and metric against the teacher.
OutputKind = Literal[
    "logits",  # unnormalised class scores: KL at temperature, top-1 agreement
    "probabilities",  # softmax probabilities (rows sum to 1)
    "log_probabilities",  # log-softmax
    "sigmoid",  # independent probabilities in [0, 1], one or many units (wake word, per-frame VAD)
    "sigmoid_logits",  # raw scores a sigmoid turns into probabilities (e.g. detector anchor scores)
    "multilabel",  # several labels at once, each a sigmoid probability
    "class_index",  # an integer class (skl2onnx `label`): a check, never trained on
    "regression",  # real values: R^2 / MAE
    "boxes",  # dense per-anchor regressors, weighted by the teacher's own scores (see OutputOptions.scores)
]
OUTPUT_KINDS: tuple[str, ...] = OutputKind.__args__  # type: ignore[attr-defined]
UNTRAINED_KINDS: frozenset[str] = frozenset({"class_index"})


class TensorSpec(BaseModel):
    """One input or output tensor as the model declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    dtype: DType
    shape: tuple[int | None, ...] = Field(description="With the batch axis; None = dynamic")
    layout: Layout | None = None

    @property
    def per_sample(self) -> tuple[int | None, ...]:
        return self.shape[1:]

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the model accepts, when it was exported with a static batch axis."""
        return self.shape[0] if self.shape and self.shape[0] is not None else None


class OutputSpec(TensorSpec):
    kind: OutputKind | None = Field(default=None, description="None until inferred or set by the job")
    scores: str | None = Field(default=None, description="boxes: the output whose scores weight this one")


class ModelSignature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[OutputSpec, ...] = Field(min_length=1)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def output(self, name: str) -> OutputSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


class OutputOptions(BaseModel):
    """Per-output overrides in the job options: ``outputs: {name: {kind, weight, ...}}``."""

    model_config = ConfigDict(extra="forbid")

    kind: OutputKind | None = Field(default=None, description="None: inferred from the output and its values")
    weight: float = Field(default=1.0, ge=0, le=1000, description="Weight of this output's loss; 0 = not trained")
    scores: str | None = Field(
        default=None, max_length=256, description="boxes: the output whose scores weight this output's loss"
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="sigmoid kinds: the teacher's decision threshold (default 0.5)"
    )


def data_key_for(signature: ModelSignature, index: int) -> tuple[str, ...]:
    """The npz keys that may hold input ``index``: its name, and ``x`` for a single-input teacher."""
    name = signature.inputs[index].name
    return (name, "x") if len(signature.inputs) == 1 else (name,)


def _dtype_fits(model_dtype: str, data_dtype: str) -> bool:
    # Float data feeds float inputs (cast); token ids and masks must already be integers.
    if model_dtype in FLOAT_DTYPES:
        return data_dtype in FLOAT_DTYPES or data_dtype in INT_DTYPES
    return data_dtype in INT_DTYPES


def check_data(
    signature: ModelSignature,
    arrays: Mapping[str, tuple[Sequence[int], str]],
    *,
    output_options: Mapping[str, OutputOptions] | None = None,
) -> list[str]:
    """Every mismatch between a transfer set (npz key -> (shape with N, dtype)) and the teacher's
    inputs, as sentences a user can act on. Empty when the data fits."""
    problems: list[str] = []
    n_rows: dict[str, int] = {}
    for i, spec in enumerate(signature.inputs):
        keys = data_key_for(signature, i)
        key = next((k for k in keys if k in arrays), None)
        if key is None:
            found = ", ".join(sorted(arrays)) or "none"
            problems.append(
                f"input {spec.name!r} ({spec.dtype}, shape {_fmt(spec.shape)}) has no array in the data: "
                f"expected key {' or '.join(repr(k) for k in keys)} (found: {found})"
            )
            continue
        shape, dtype = arrays[key]
        if not _dtype_fits(spec.dtype, dtype):
            problems.append(f"input {spec.name!r} takes {spec.dtype} but data {key!r} is {dtype}")
        want = spec.per_sample
        got = tuple(shape[1:])
        if len(got) != len(want):
            problems.append(f"input {spec.name!r} takes samples of shape {_fmt(want)} but data {key!r} has {_fmt(got)}")
        else:
            for axis, (w, g) in enumerate(zip(want, got, strict=True), start=1):
                if w is not None and w != g:
                    problems.append(
                        f"input {spec.name!r} axis {axis} is {w} but data {key!r} has {g} "
                        f"(sample shape {_fmt(got)}, model {_fmt(want)})"
                    )
                    break
        if shape:
            n_rows[key] = int(shape[0])
    if len(set(n_rows.values())) > 1:
        rows = ", ".join(f"{k}: {n}" for k, n in n_rows.items())
        problems.append(f"the input arrays have different numbers of samples ({rows})")
    for name, opts in (output_options or {}).items():
        if name not in signature.output_names:
            problems.append(
                f"options.outputs names {name!r}, which is not a teacher output "
                f"(outputs: {', '.join(signature.output_names)})"
            )
        elif opts.kind == "boxes" and opts.scores is not None and opts.scores not in signature.output_names:
            problems.append(f"options.outputs[{name!r}].scores names {opts.scores!r}, which is not a teacher output")
    return problems


# Methods that train on a teacher with several inputs or outputs, or outputs other than plain class
# scores / regression values: the ones whose losses are defined per output kind.
MULTI_IO_METHODS: frozenset[str] = frozenset({"kd", "labels_only", "qat_kd", "transformer", "auto"})
# Output kinds the single-output methods (feature, relational, data-free, NAS, lifelong) handle.
LEGACY_KINDS: frozenset[str] = frozenset({"logits", "probabilities", "log_probabilities", "regression"})
CLASS_SCORE_KINDS: frozenset[str] = frozenset({"logits", "probabilities", "log_probabilities"})
# Output kinds a student exports as its raw values (heads.export_module adds no op after them).
RAW_OUTPUT_KINDS: frozenset[str] = frozenset({"logits", "sigmoid_logits", "regression", "boxes"})


def with_output_kinds(signature: ModelSignature, kinds: Mapping[str, str]) -> ModelSignature:
    """The same signature with output kinds set (by output name; others unchanged)."""
    outputs = tuple(o.model_copy(update={"kind": kinds[o.name]}) if o.name in kinds else o for o in signature.outputs)
    return signature.model_copy(update={"outputs": outputs})


class JobOptionsView(Protocol):
    """The part of a job's options the checks below read; spec.JobOptions satisfies it. A protocol,
    not an import: spec imports this module (OutputOptions), so this one imports nothing of spec."""

    @property
    def method(self) -> str: ...
    @property
    def qat(self) -> str: ...
    @property
    def losses(self) -> Sequence[object] | None: ...
    @property
    def outputs(self) -> Mapping[str, OutputOptions] | None: ...


def output_kind(signature: ModelSignature, name: str, options: JobOptionsView | None = None) -> str | None:
    """The kind the job will use for output ``name``: the options' override, else the signature's."""
    opts = (options.outputs or {}).get(name) if options is not None else None
    if opts is not None and opts.kind is not None:
        return opts.kind
    return signature.output(name).kind


def unsupported_reason(signature: ModelSignature, options: JobOptionsView) -> str | None:
    """Why this job cannot be run on this teacher, as a sentence for a 422 or a FAILED job; None when
    it can. Kinds still unknown (not inferred yet, not set in the options) are not judged; the engine
    calls this again once every kind is known."""
    method = options.method
    kinds = {o.name: output_kind(signature, o.name, options) for o in signature.outputs}
    weights = {n: o.weight for n, o in (options.outputs or {}).items()}
    multi = len(signature.inputs) > 1 or len(signature.outputs) > 1
    if method not in MULTI_IO_METHODS:
        if multi:
            return (
                f"method {method} supports teachers with one input and one output only; this teacher has "
                f"{len(signature.inputs)} input(s) ({', '.join(signature.input_names)}) and "
                f"{len(signature.outputs)} output(s) ({', '.join(signature.output_names)}); "
                f"use method kd, labels_only or auto"
            )
        kind = kinds[signature.outputs[0].name]
        if kind is not None and kind not in LEGACY_KINDS:
            return (
                f"method {method} supports class-score and regression outputs only; output "
                f"{signature.outputs[0].name!r} is {kind}; use method kd, labels_only or auto"
            )
    if method == "qat_kd" or options.qat == "always":
        blocker = qat_blocker(signature, kinds)
        if blocker is not None:
            asked = "method qat_kd" if method == "qat_kd" else "options.qat always"
            return (
                f"{asked}: quantization-aware training is implemented for teachers with float inputs whose outputs "
                "are raw values (logits, sigmoid_logits, regression, boxes), or one float input and one class-score "
                f"or regression output of shape (k,); this teacher {blocker}. Use method kd (or auto) "
                "with options.qat auto or never: the int8 artifacts are then post-training quantized and each "
                "output is judged against the teacher"
            )
    if options.losses and len(signature.outputs) > 1:
        return (
            "options.losses sets one loss for a single output; this teacher has several outputs "
            f"({', '.join(signature.output_names)}): weight them with options.outputs instead"
        )
    known = {n: k for n, k in kinds.items() if k is not None}
    if len(known) == len(kinds):
        trained = [n for n, k in known.items() if k not in UNTRAINED_KINDS and weights.get(n, 1.0) > 0]
        if not trained:
            return (
                "no teacher output is trained: class-index outputs are only checked, and every other "
                "output has weight 0 in options.outputs"
            )
    for name, kind in known.items():
        all_known = len(known) == len(kinds)
        if kind in UNTRAINED_KINDS and all_known and not any(k in CLASS_SCORE_KINDS for k in known.values()):
            return (
                f"output {name!r} is a class index, which a student reproduces from a logits or "
                "probabilities output, and the teacher has none"
            )
        if kind == "boxes":
            scores = (options.outputs or {}).get(name)
            score_name = scores.scores if scores is not None else None
            if score_name is not None and score_name in kinds:
                sk = kinds[score_name]
                if sk is not None and sk not in ("sigmoid", "sigmoid_logits", "multilabel"):
                    return f"boxes output {name!r} is weighted by {score_name!r}, which is {sk}, not a score output"
    several_trained = len(known) == len(kinds) and sum(k not in UNTRAINED_KINDS for k in known.values()) > 1
    if method == "labels_only" and several_trained:
        return (
            "method labels_only trains on the labels y of one output; this teacher has several trained "
            "outputs: use kd or auto"
        )
    return None


def qat_blocker(signature: ModelSignature, kinds: Mapping[str, str | None]) -> str | None:
    """What keeps quantization-aware training from this teacher, as the end of a sentence; None when
    nothing does. Two cases are implemented: one float input and one class-score or regression output
    of shape (k,) (workers.steps.distill.qat), and float inputs whose outputs are all exported as the
    student's raw values, RAW_OUTPUT_KINDS (qat_multi: the fake-quant graph is then the exported one).
    Kinds not known yet are judged when they are (the engine calls unsupported_reason again)."""
    ints = [s for s in signature.inputs if s.dtype not in FLOAT_DTYPES]
    if ints:
        return f"takes {ints[0].dtype} input {ints[0].name!r} (token ids or indices)"
    if len(signature.inputs) == 1 and len(signature.outputs) == 1:
        out = signature.outputs[0]
        kind = kinds.get(out.name)
        if (kind is None or kind in LEGACY_KINDS) and len(out.per_sample) == 1:
            return None
    headed = [(n, k) for n, k in kinds.items() if k is not None and k not in RAW_OUTPUT_KINDS]
    if headed:
        name, kind = headed[0]
        return (
            f"has a {kind} output {name!r} (exported through softmax, sigmoid or argmax after the student's raw "
            "output, which the fake-quant graph does not train)"
        )
    return None


def _fmt(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
