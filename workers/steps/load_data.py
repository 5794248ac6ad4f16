"""Step load_data: read the transfer data, check it against the teacher, split it and run the
teacher once over every sample. The student trains on these cached outputs (no augmentation), which
on a CPU is 25-70x faster than running the teacher every step (docs: toolchain.md).

Reads spec.data_path, spec.options, state.teacher; writes state.data (TransferData),
state.teacher_outputs ({split: float32 (n, k)}), state.metrics["teacher"], state.warnings.

Data-free runs (method data_free, or auto without data) have no transfer rows yet: the input shape
comes from the teacher's signature (or options.data_free.input_shape) and data given with method
data_free becomes the test split only, for evaluation; the distill step adds the generated rows."""

from __future__ import annotations

import math

import numpy as np

from workers.pipeline.base import Step
from workers.pipeline.context import RunContext, RunState
from workers.pipeline.errors import InputError

# Teacher outputs whose rows are non-negative and sum to 1 are probabilities, not logits.
_PROB_TOLERANCE = 1e-3


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(out.shape[1] >= 2 and (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=_PROB_TOLERANCE))


class LoadData(Step):
    name = "load_data"
    stage = "load"

    def run(self, ctx: RunContext, state: RunState) -> None:
        from workers.steps.data import TransferData, decide_task, infer_modality, make_splits, prepare_labels, read_npz

        spec, opts, teacher = ctx.spec, ctx.spec.options, state.teacher
        if spec.data_path is None:
            if opts.method not in ("data_free", "auto"):
                raise InputError(
                    "transfer data is required: upload an .npz with x (and optionally y), or use method data_free "
                    "(or auto) to distill without data"
                )
            self._data_free(ctx, state, None, None, None)
            return
        x, y_raw, names = read_npz(spec.data_path)
        if opts.method == "data_free":
            self._data_free(ctx, state, x, y_raw, names)
            return
        sample_shape = tuple(int(d) for d in x.shape[1:])
        modality = infer_modality(sample_shape)
        expected = teacher.signature.input_shape
        if expected is not None and tuple(expected) != sample_shape:
            raise InputError(f"data x has per-sample shape {sample_shape} but the teacher expects {tuple(expected)}")
        if expected is None or teacher.signature.output_shape is None:
            teacher.complete_signature(sample_shape, x[:4])
        out_shape = teacher.signature.output_shape or ()
        if len(out_shape) > 1:
            raise InputError(
                f"the teacher outputs per-sample shape {out_shape}; only (classes,) logits or (k,) regression "
                "outputs are supported"
            )

        check_outputs_budget(x.shape[0], out_shape, opts.teacher_outputs_mb)
        ctx.emit("progress", {"message": f"running the teacher over {x.shape[0]:,} samples"}, progress=2.0)
        outputs = teacher.predict(x).reshape(x.shape[0], -1)
        finite = np.isfinite(outputs).all(axis=1)
        if not finite.all():
            raise InputError(
                f"the teacher outputs NaN or Inf for {int((~finite).sum())} of {x.shape[0]} transfer samples; "
                "check the teacher and the data's scaling"
            )
        num_outputs = int(outputs.shape[1])
        task = decide_task(y_raw, num_outputs, opts.task)
        if task == "classification" and num_outputs < 2:
            raise InputError("classification needs a teacher with at least 2 outputs (one logit per class)")
        labels = prepare_labels(y_raw, task, num_outputs)
        if task == "classification" and _looks_like_probabilities(outputs):
            # log-probabilities are logits up to a per-row constant, which softmax ignores.
            outputs = np.log(np.clip(outputs, 1e-12, None)).astype(np.float32)
            state.warnings.append("the teacher outputs probabilities; distilling from their logarithms")

        splits, stratified = make_splits(
            x.shape[0],
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
            x=x,
            y=labels,
            splits=splits,
            modality=modality,
            task=task,
            num_outputs=num_outputs,
            class_labels=class_labels,
            stratified=stratified,
        )
        if labels is not None and task == "classification" and not stratified:
            state.warnings.append("some classes have too few samples to stratify the splits; split at random")
        state.data = data
        state.teacher_outputs = {name: outputs[idx] for name, idx in splits.items()}
        state.metrics["teacher"] = teacher_metrics(data, state.teacher_outputs)
        ctx.emit(
            "progress",
            {"message": f"{modality} {task} data: " + ", ".join(f"{k} {v}" for k, v in data.sizes().items())},
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
        from workers.steps.data import TransferData, decide_task, infer_modality, prepare_labels

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
        state.teacher_outputs = {
            "train": np.zeros((0, num_outputs), np.float32),
            "val": np.zeros((0, num_outputs), np.float32),
            "test": test_out,
        }
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


def check_outputs_budget(samples: int, out_shape: tuple[int, ...], budget_mb: float) -> int:
    """Bytes of the teacher-output cache (float32, every sample, kept for the whole run); refused with a
    clear message when over options.teacher_outputs_mb, before the teacher spends time on it."""
    need = samples * math.prod(out_shape) * 4
    if need > budget_mb * 2**20:
        raise InputError(
            f"caching the teacher's outputs for {samples:,} samples x {math.prod(out_shape):,} values needs "
            f"{need / 2**20:,.0f} MiB, over options.teacher_outputs_mb={budget_mb:g}; raise it or send fewer samples"
        )
    return need


def teacher_metrics(data: object, outputs: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The teacher's own test accuracy (classification) or RMSE (regression) against the labels."""
    from workers.steps.data import TransferData

    assert isinstance(data, TransferData)
    y = data.y_of("test")
    out = outputs["test"]
    if y is None:
        return {"test_accuracy": None}
    if data.task == "classification":
        return {"test_accuracy": float((out.argmax(axis=1) == y).mean())}
    return {"test_rmse": float(np.sqrt(np.mean((out - y) ** 2)))}
