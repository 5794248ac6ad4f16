"""Step load_data: read the transfer data (one array per teacher input), check it against the
teacher, run the teacher once over every sample, decide what each output means and split the rows.
The student trains on these cached outputs (no augmentation), which on a CPU is 25-70x faster than
running the teacher every step (docs: toolchain.md).

Reads spec.data_path, spec.options, state.teacher; writes state.data (TransferData),
state.teacher_outputs ({split: {output name: array}}: float32, int64 for class indices; one copy
of each output, split by rows), state.signature (ModelSignature with every output kind set),
state.output_kinds (each kind and how it was decided), state.metrics["teacher"], state.warnings.

Data-free runs (method data_free, or auto without data) have no transfer rows yet: the input shape
comes from the teacher's signature (or options.data_free.input_shape) and data given with method
data_free becomes the test split only, for evaluation; the distill step adds the generated rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.signature import CLASS_SCORE_KINDS, UNTRAINED_KINDS, ModelSignature
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState

# Teacher outputs whose rows are non-negative and sum to 1 are probabilities, not logits.
_PROB_TOLERANCE = 1e-3
KIND_SAMPLE_ROWS = 4096  # rows the kind inference looks at (all of them up to this many)


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(out.shape[1] >= 2 and (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=_PROB_TOLERANCE))


def primary_output(signature: ModelSignature) -> str:
    """The output labels y belong to and single-output steps use: the first trained class-score
    output, else the first trained output."""
    trained = [o for o in signature.outputs if o.kind not in UNTRAINED_KINDS]
    for o in trained:
        if o.kind in CLASS_SCORE_KINDS:
            return o.name
    return trained[0].name if trained else signature.outputs[0].name


def _check_finite(outputs: dict[str, np.ndarray], n: int) -> None:
    for name, out in outputs.items():
        if out.dtype.kind != "f":
            continue
        finite = np.isfinite(out.reshape(n, -1)).all(axis=1)
        if not finite.all():
            raise InputError(
                f"the teacher outputs NaN or Inf for {int((~finite).sum())} of {n} transfer samples"
                + (f" (output {name!r})" if len(outputs) > 1 else "")
                + "; check the teacher and the data's scaling"
            )


class LoadData(Step):
    name = "load_data"
    stage = "load"
    order = 20

    def run(self, ctx: RunContext, state: RunState) -> None:
        try:
            self._load(ctx, state)
        finally:
            # a TorchScript file records no shapes or dtypes: they are known once run on the data (also
            # when a later check of this step refuses the job)
            teacher = state.teacher
            if teacher is not None and teacher.format == "torchscript" and teacher.shapes_known():
                from edgedistill.workers.steps.teacher_record import emit_teacher_signature

                emit_teacher_signature(ctx, teacher, teacher.io)

    def _load(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.contracts.signature import unsupported_reason, with_output_kinds
        from edgedistill.workers.steps.data import (
            TransferData,
            infer_modality,
            make_splits,
            prepare_labels,
            read_npz,
            read_npz_inputs,
        )
        from edgedistill.workers.steps.output_kinds import infer_output_kinds

        spec, opts, teacher = ctx.spec, ctx.spec.options, state.teacher
        if spec.data_path is None:
            if opts.method not in ("data_free", "auto"):
                raise InputError(
                    "transfer data is required: upload an .npz with x (and optionally y), or use method data_free "
                    "(or auto) to distill without data"
                )
            self._data_free(ctx, state, None, None, None)
            return
        if opts.method == "data_free":
            if len(teacher.io.inputs) != 1:
                raise InputError(unsupported_reason(teacher.io, opts) or "data-free needs a single-input teacher")
            x, y_raw, names = read_npz(spec.data_path)
            self._data_free(ctx, state, x, y_raw, names)
            return
        input_names = teacher.io.input_names
        arrays, y_raw, names = read_npz_inputs(spec.data_path, input_names)
        first = arrays[input_names[0]]
        sample_shape = tuple(int(d) for d in first.shape[1:])
        modality = infer_modality(sample_shape) if len(sample_shape) <= 3 else "image"
        if len(input_names) == 1:
            expected = teacher.signature.input_shape
            if expected is not None and tuple(expected) != sample_shape:
                raise InputError(
                    f"data x has per-sample shape {sample_shape} but the teacher expects {tuple(expected)}"
                )
        teacher.complete_io({k: v[:4] for k, v in arrays.items()})

        n = int(first.shape[0])
        check_outputs_budget(n, [o.per_sample for o in teacher.io.outputs], opts.teacher_outputs_mb)
        ctx.emit("progress", {"message": f"running the teacher over {n:,} samples"}, progress=2.0)
        outputs = teacher.predict_all(arrays)
        _check_finite(outputs, n)
        sample = {k: v[:KIND_SAMPLE_ROWS] for k, v in outputs.items()}
        decisions = infer_output_kinds(teacher.io, sample, options=opts.outputs, labels=y_raw, task=opts.task)
        signature = with_output_kinds(teacher.io, {d.name: d.kind for d in decisions})
        scores = {d.name: d.scores for d in decisions if d.scores}
        if scores:
            signature = signature.model_copy(
                update={
                    "outputs": tuple(
                        o.model_copy(update={"scores": scores[o.name]}) if o.name in scores else o
                        for o in signature.outputs
                    )
                }
            )
        reason = unsupported_reason(signature, opts)
        if reason:
            raise InputError(reason)
        state.signature = signature
        state.output_kinds = [
            {"name": d.name, "kind": d.kind, "how": d.reason, **({"scores": d.scores} if d.scores else {})}
            for d in decisions
        ]
        primary = primary_output(signature)
        pkind = signature.output(primary).kind
        task = "classification" if pkind in CLASS_SCORE_KINDS else "regression"
        pout = outputs[primary]
        num_outputs = int(pout.shape[-1]) if task == "classification" else int(np.prod(pout.shape[1:]) or 1)
        if task == "classification" and pout.ndim != 2:
            labels = None  # per-position class scores: labels of shape (N,) do not apply
            if y_raw is not None:
                state.warnings.append(f"labels y ignored: output {primary!r} has per-sample shape {pout.shape[1:]}")
        else:
            labels = prepare_labels(y_raw, task, num_outputs)  # type: ignore[arg-type]
        if pkind == "probabilities" and len(signature.outputs) == 1:
            state.warnings.append("the teacher outputs probabilities; distilling from their logarithms")

        splits, stratified = make_splits(
            n,
            labels if task == "classification" else None,
            val_fraction=opts.val_fraction,
            test_fraction=opts.test_fraction,
            seed=opts.seed,
        )
        class_labels = spec.class_labels or names
        if class_labels is not None and len(class_labels) != num_outputs:
            state.warnings.append(
                f"{len(class_labels)} class names given for a teacher with {num_outputs} outputs; names ignored"
            )
            class_labels = None
        data = TransferData(
            x=first,
            y=labels,
            splits=splits,
            modality=modality,
            task=task,  # type: ignore[arg-type]
            num_outputs=num_outputs,
            class_labels=class_labels,
            stratified=stratified,
            arrays=arrays if len(input_names) > 1 else None,
            input_names=input_names,
            primary_output=primary,
        )
        if labels is not None and task == "classification" and not stratified:
            state.warnings.append("some classes have too few samples to stratify the splits; split at random")
        state.data = data
        state.teacher_outputs = {
            split: {name: out[idx] for name, out in outputs.items()} for split, idx in splits.items()
        }
        del outputs  # the split copies are the only ones kept
        state.metrics["teacher"] = teacher_metrics(data, state.teacher_outputs)
        kinds = ", ".join(f"{d.name}: {d.kind}" for d in decisions)
        ctx.emit(
            "progress",
            {
                "message": f"{modality} {task} data: "
                + ", ".join(f"{k} {v}" for k, v in data.sizes().items())
                + f"; outputs {kinds}"
            },
            progress=5.0,
        )

    def _data_free(
        self,
        ctx: RunContext,
        state: RunState,
        x: np.ndarray | None,
        y_raw: np.ndarray | None,
        names: list[str] | None,
    ) -> None:
        """No transfer rows: shapes from the teacher; real data (if any) is the test split only."""
        from edgedistill.workers.steps.data import TransferData, decide_task, infer_modality, prepare_labels

        opts, teacher = ctx.spec.options, state.teacher
        sig = teacher.signature
        if sig.input_shape is not None:
            shape = tuple(int(d) for d in sig.input_shape)
        elif opts.data_free.input_shape is not None:
            shape = tuple(opts.data_free.input_shape)
        elif x is not None:
            shape = tuple(int(d) for d in x.shape[1:])
        else:
            raise InputError(
                "data-free distillation needs the input shape: this teacher does not record it (TorchScript); "
                "set options.data_free.input_shape"
            )
        if x is not None and tuple(x.shape[1:]) != shape:
            raise InputError(f"data x has per-sample shape {tuple(x.shape[1:])} but the teacher expects {shape}")
        modality = infer_modality(shape)
        rng = np.random.default_rng(opts.seed)
        probe = rng.normal(size=(4, *shape)).astype(np.float32)
        if opts.data_free.input_range is not None:
            lo, hi = opts.data_free.input_range
            probe = rng.uniform(lo, hi, size=(4, *shape)).astype(np.float32)
        if sig.input_shape is None or sig.output_shape is None:
            teacher.complete_signature(shape, probe if x is None else x[:4])
        out_shape: tuple[int, ...] = tuple(teacher.signature.output_shape or ())
        if len(out_shape) != 1:
            raise InputError(f"the teacher outputs per-sample shape {out_shape}; (classes,) or (k,) is needed")
        num_outputs = int(out_shape[0])
        task = decide_task(y_raw, num_outputs, opts.task)
        labels = prepare_labels(y_raw, task, num_outputs) if x is not None else None
        empty = np.zeros((0,), dtype=np.int64)
        if x is None:
            x_all = np.zeros((0, *shape), dtype=np.float32)
            test_out = np.zeros((0, num_outputs), dtype=np.float32)
        else:
            ctx.emit("progress", {"message": f"running the teacher over {x.shape[0]:,} evaluation-only samples"})
            x_all = x
            test_out = teacher.predict(x).reshape(x.shape[0], -1)
        class_labels = ctx.spec.class_labels or names
        if class_labels is not None and len(class_labels) != num_outputs:
            class_labels = None
        state.data = TransferData(
            x=x_all,
            y=labels,
            splits={"train": empty, "val": empty, "test": np.arange(x_all.shape[0])},
            modality=modality,
            task=task,
            num_outputs=num_outputs,
            class_labels=class_labels,
            synthetic=True,
            notes=["data-free: no transfer rows; real data, if given, is only the test split"],
        )
        out_name = teacher.io.outputs[0].name
        state.teacher_outputs = {
            "train": {out_name: np.zeros((0, num_outputs), np.float32)},
            "val": {out_name: np.zeros((0, num_outputs), np.float32)},
            "test": {out_name: test_out},
        }
        kind = "logits" if task == "classification" else "regression"
        from edgedistill.contracts.signature import with_output_kinds

        state.signature = with_output_kinds(teacher.io, {out_name: kind})
        state.output_kinds = [{"name": out_name, "kind": kind, "how": f"data-free {task}"}]
        state.data.primary_output = out_name
        state.metrics["teacher"] = (
            teacher_metrics(state.data, state.teacher_outputs) if x is not None else {"test_accuracy": None}
        )
        ctx.emit(
            "progress",
            {
                "message": f"data-free {modality} {task}: input {shape}, {num_outputs} outputs"
                + (f", {x_all.shape[0]:,} real samples for evaluation only" if x is not None else "")
            },
            progress=5.0,
        )


def check_outputs_budget(samples: int, per_sample: Sequence[tuple[int | None, ...]], budget_mb: float) -> int:
    """Bytes of the teacher-output cache (every output, every sample, 4 bytes a value, kept for the whole
    run); refused with a clear message when over options.teacher_outputs_mb, before the teacher runs."""
    values = sum(math.prod(d or 1 for d in shape) for shape in per_sample)
    need = samples * values * 4
    if need > budget_mb * 2**20:
        raise InputError(
            f"caching the teacher's outputs for {samples:,} samples x {values:,} values needs "
            f"{need / 2**20:,.0f} MiB, over options.teacher_outputs_mb={budget_mb:g}; raise it or send fewer samples"
        )
    return need


def teacher_metrics(data: object, outputs: dict[str, Any]) -> dict[str, float | None]:
    """The teacher's own test accuracy (classification) or RMSE (regression) against the labels,
    on its primary output."""
    from edgedistill.workers.steps.data import TransferData, primary_targets

    assert isinstance(data, TransferData)
    y = data.y_of("test")
    if y is None:
        return {"test_accuracy": None}
    out = primary_targets(data, outputs["test"])
    if data.task == "classification":
        return {"test_accuracy": float((out.argmax(axis=1) == y).mean())}
    return {"test_rmse": float(np.sqrt(np.mean((out - y) ** 2)))}
