"""probe.npz for teachers with several inputs or outputs (or any output kind): the first test samples
under each teacher input's name (their own dtype: token ids stay integers), and every variant's
outputs on them, one array per teacher output, so a device can check an artifact output by output.

Keys: ``<input name>`` per input (the probe is itself transfer data), ``out_<variant>__<output name>``
per variant and output, ``y`` when the data has labels, and ``probe_manifest``: a JSON string (read
without pickle) naming the inputs, the outputs with their kinds, and the variants, so readers never
parse key names. The single-input probe (``x``, ``out_<variant>``) is unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts import artifact_kinds
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file

PROBE_FILENAME = "probe.npz"
MANIFEST_KEY = "probe_manifest"
PROBE_FORMAT = "edgedistill-probe/multi-1"
SEPARATOR = "__"
ARTIFACT_KINDS = artifact_kinds.student_model_kinds()


def output_key(variant: str, output: str) -> str:
    return f"out_{variant}{SEPARATOR}{output}"


def _as_stored(a: np.ndarray) -> np.ndarray:
    # float outputs as float32 (int8 models' dequantized); class indices stay integers
    return np.ascontiguousarray(a if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32))


def _variant_outputs(ctx: RunContext, state: RunState, x: dict[str, np.ndarray], n: int) -> dict[str, Any]:
    from edgedistill.workers.steps.export_multi import torch_predict_all
    from edgedistill.workers.steps.heads import export_module
    from edgedistill.workers.steps.verify_multi import predict_variant

    sig = state.signature
    found: dict[str, dict[str, np.ndarray]] = {
        "teacher": {k: v[:n] for k, v in state.teacher_outputs["test"].items() if k in sig.output_names}
    }
    module = state.export_module if state.export_module is not None else export_module(state.student, sig)
    found["student_fp32"] = torch_predict_all(module, sig, x)
    skipped: dict[str, str] = {}
    for kind in ARTIFACT_KINDS:
        if kind not in state.artifacts or "error" in state.metrics.get(kind, {}):
            continue
        found[kind] = predict_variant(state, kind, x)
    tflm_kind = artifact_kinds.tflm_kind()
    if tflm_kind in state.artifacts and ctx.spec.profile.device_class == "mcu":
        from edgedistill.runtimes.tflm import run_tflm_all

        meta = state.artifacts[tflm_kind].metadata
        io = meta.get("teacher_io") or {}
        try:
            found[artifact_kinds.TFLM_VARIANT], _ = run_tflm_all(
                state.artifacts[tflm_kind].path, x,
                input_names=tuple(io["inputs"]) if io.get("inputs") else None,
                output_names=tuple(io["outputs"]) if io.get("outputs") else None,
                layouts=meta.get("input_layouts"),
            )  # fmt: skip
        except Exception as exc:  # the probe still serves the other variants; the reason is kept
            skipped[artifact_kinds.TFLM_VARIANT] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return {"outputs": found, "skipped": skipped}


def save_probe(ctx: RunContext, state: RunState, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """probe.npz (written atomically, plain arrays only) recorded as the run's probe artifact; its
    metadata gets every array's shape and dtype."""
    with staged_file(ctx.work_dir, PROBE_FILENAME) as tmp, Path(tmp).open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    arrays_meta = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
    record_artifact(
        ctx, state, kind="probe", path=ctx.work_dir / PROBE_FILENAME, metadata={**metadata, "arrays": arrays_meta}
    )


def write_multi_probe(ctx: RunContext, state: RunState, samples: int) -> None:
    sig, data = state.signature, state.data
    test = data.inputs_of("test")
    n = min(samples, int(next(iter(test.values())).shape[0]))
    x = {name: np.ascontiguousarray(test[name][:n]) for name in sig.input_names}
    got = _variant_outputs(ctx, state, x, n)
    arrays: dict[str, np.ndarray] = dict(x)
    y = data.y_of("test")
    if y is not None:
        arrays["y"] = np.asarray(y[:n])
    variants: list[str] = []
    for variant, outs in got["outputs"].items():
        if all(name in outs and outs[name].shape[0] == n for name in sig.output_names):
            variants.append(variant)
            for name in sig.output_names:
                arrays[output_key(variant, name)] = _as_stored(np.asarray(outs[name]))
    manifest = {
        "format": PROBE_FORMAT,
        "samples": n,
        "inputs": [{"name": t.name, "dtype": str(x[t.name].dtype), "layout": t.layout} for t in sig.inputs],
        "outputs": [{"name": o.name, "kind": o.kind} for o in sig.outputs],
        "variants": variants,
        "skipped": got["skipped"],
    }
    arrays[MANIFEST_KEY] = np.array(json.dumps(manifest))
    save_probe(
        ctx,
        state,
        arrays,
        {
            "samples": n,
            "format": PROBE_FORMAT,
            "inputs": list(sig.input_names),
            "outputs": list(sig.output_names),
            "variants": variants,
            "input_layout": "the data's layout per input (NCHW images); each TFLite artifact's input_layouts says "
            "which inputs it takes NHWC",
            "output_keys": f"out_<variant>{SEPARATOR}<output name>; int8 models' outputs dequantized with the "
            "model's own scale/zero-point",
            **({"skipped": got["skipped"]} if got["skipped"] else {}),
        },
    )
