"""Checks made before a job is queued (API, dashboard) or a local run starts (CLI): does the data fit
the teacher's signature, can every output be trained as asked, and does the method support this
teacher? Each problem names where in the job request it lies, so the API answers a 422 per field.

Pure: signatures, data summaries (npz key -> (shape with N, dtype)) and job options, no arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgedistill.contracts.signature import (
    FLOAT_DTYPES,
    INT_DTYPES,
    ModelSignature,
    OutputSpec,
    check_data,
    output_kind,
    unsupported_reason,
)
from edgedistill.contracts.spec import JobOptions

DataArrays = Mapping[str, tuple[Sequence[int], str]]

# Kinds whose loss is a softmax over the last axis: they need at least two classes there.
_CLASS_KINDS = frozenset({"logits", "probabilities", "log_probabilities"})


@dataclass(frozen=True)
class SubmitProblem:
    loc: tuple[str, ...]  # the job request field: ("dataset_id",), ("options", "outputs", "scores"), ...
    message: str


def is_data_free(options: JobOptions, has_data: bool) -> bool:
    """The run synthesises its training inputs (see workers.steps.load_data)."""
    return options.method == "data_free" or (options.method == "auto" and not has_data)


def submit_problems(
    signature: ModelSignature | None,
    *,
    model_format: str,
    data: DataArrays | None,
    options: JobOptions,
    has_data: bool | None = None,
) -> list[SubmitProblem]:
    """Every reason the job cannot produce a meaningful student, as far as the files tell before it
    runs. signature None: not recorded at upload (TorchScript, .pt2); the worker checks it then.
    data: the transfer set's input arrays, None when there is none (or, with has_data=True, when its
    arrays were not recorded)."""
    data_free = is_data_free(options, data is not None if has_data is None else has_data)
    if signature is None:
        if data_free and model_format == "torchscript" and options.data_free.input_shape is None:
            return [
                SubmitProblem(
                    ("options", "data_free", "input_shape"),
                    "data-free distillation needs the input shape, and a TorchScript teacher records none: "
                    "set options.data_free.input_shape (per sample, without the batch axis)",
                )
            ]
        return []
    problems: list[SubmitProblem] = []
    reason = unsupported_reason(signature, options)
    if reason is not None:
        problems.append(SubmitProblem(("options", "method"), reason))
    if data is not None:
        problems += [SubmitProblem(("dataset_id",), m) for m in check_data(signature, data)]
    if data_free:
        problems += _data_free_problems(signature, options)
    # unsupported_reason already says when nothing is trained (once kinds are known): say it once.
    problems += output_problems(signature, options, judge_untrained=reason is None)
    return problems


def _data_free_problems(signature: ModelSignature, options: JobOptions) -> list[SubmitProblem]:
    given = options.data_free.input_shape
    loc = ("options", "data_free", "input_shape")
    out: list[SubmitProblem] = []
    for spec in signature.inputs:
        declared = spec.per_sample
        if given is None:
            if any(d is None for d in declared):
                out.append(
                    SubmitProblem(
                        loc,
                        f"data-free distillation needs the input shape, but the teacher's input {spec.name!r} "
                        f"declares {_fmt(declared)} (? = dynamic): set options.data_free.input_shape",
                    )
                )
        elif len(given) != len(declared) or any(
            d is not None and d != g for d, g in zip(declared, given, strict=False)
        ):
            out.append(
                SubmitProblem(
                    loc,
                    f"options.data_free.input_shape {_fmt(given)} does not fit the teacher's input "
                    f"{spec.name!r} {_fmt(declared)}",
                )
            )
    return out


def output_problems(
    signature: ModelSignature, options: JobOptions, *, judge_untrained: bool = True
) -> list[SubmitProblem]:
    """Per-output options that name no output, kinds an output cannot be trained as, and (judged from
    the dtypes even while kinds are unknown) a teacher with no output left to train."""
    overrides = options.outputs or {}
    names = signature.output_names
    problems: list[SubmitProblem] = []
    for name, opts in overrides.items():
        loc = ("options", "outputs", name)
        if name not in names:
            problems.append(
                SubmitProblem(
                    loc, f"options.outputs names {name!r}, which is not a teacher output (outputs: {', '.join(names)})"
                )
            )
            continue
        if opts.scores is not None:
            if opts.scores not in names:
                problems.append(
                    SubmitProblem(
                        loc, f"options.outputs[{name!r}].scores names {opts.scores!r}, which is not a teacher output"
                    )
                )
            elif opts.scores == name:
                problems.append(SubmitProblem(loc, f"options.outputs[{name!r}].scores names the output itself"))
    trained = 0
    for spec in signature.outputs:
        override = overrides.get(spec.name)
        kind = output_kind(signature, spec.name, options)
        message = kind_problem(spec, kind)
        if message is not None:
            problems.append(SubmitProblem(("options", "outputs", spec.name), message))
        weight = override.weight if override is not None else 1.0
        if spec.dtype in FLOAT_DTYPES and kind != "class_index" and weight > 0:
            trained += 1
    if trained == 0 and judge_untrained:
        problems.append(
            SubmitProblem(
                ("options", "outputs") if overrides else ("model_id",),
                "no teacher output is left to learn from: "
                + ", ".join(
                    f"{o.name!r} ({o.dtype}{', weight 0' if _weight(overrides, o.name) == 0 else ''})"
                    for o in signature.outputs
                )
                + "; integer outputs are class indices (checked, not trained) and weight 0 skips an output",
            )
        )
    return problems


def kind_problem(spec: OutputSpec, kind: str | None) -> str | None:
    """Why output `spec` cannot be trained as `kind` (None: inferred later), or None when it can."""
    if spec.dtype in INT_DTYPES:
        if kind not in (None, "class_index"):
            return (
                f"output {spec.name!r} is {spec.dtype}, so it cannot be trained as {kind}: integer outputs "
                "are class indices (kind class_index, used as a check)"
            )
        return None
    if kind == "class_index":
        return f"output {spec.name!r} is {spec.dtype}; kind class_index is for integer class outputs"
    if kind in _CLASS_KINDS:
        classes = spec.per_sample[-1] if spec.per_sample else 0
        if classes is not None and classes < 2:
            shape = _fmt(spec.shape)
            return (
                f"output {spec.name!r} has shape {shape}: kind {kind} needs at least 2 classes on its last "
                "axis (a single probability is kind sigmoid)"
            )
    return None


def _weight(overrides: Mapping[str, object], name: str) -> float:
    opts = overrides.get(name)
    return float(getattr(opts, "weight", 1.0))


def _fmt(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def one_line(problems: Sequence[SubmitProblem]) -> str:
    """All problems as one line for a CLI."""
    return "; ".join(p.message for p in problems)
