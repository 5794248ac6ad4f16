"""Export the trained float student to ONNX (kind onnx_fp32) and prove the file computes what the
torch module computes.

torch.onnx.export with dynamo=False, opset 17 (toolchain.md: one self-contained file in ~0.1 s; the
dynamo exporter takes seconds and may write external data). The batch axis is dynamic so one file
serves batch 1 latency and batched evaluation."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file
from edgedistill.workers.steps.export_multi import check_inputs, deploy_module, is_multi, max_diffs, torch_predict_all

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
FILENAME = "student_fp32.onnx"
CHECK_SAMPLES = 64
# float32 ONNX vs torch on CPU: the same kernels up to summation order.
ATOL = 1e-4
RTOL = 1e-3

DATA_LAYOUTS = {"image": "NCHW", "sequence": "NCT", "vector": "NF"}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def torch_predict(module: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float outputs of a torch module on CPU, in batches, without autograd."""
    import torch

    module = module.cpu().eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            outs.append(module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).float().numpy())
    return np.concatenate(outs).astype(np.float32, copy=False)


def export_student_onnx(
    module: Any, example: np.ndarray, path: Any, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME
) -> None:
    """torch.onnx.export, TorchScript-based exporter, opset 17, dynamic batch, named I/O."""
    import torch

    module = module.cpu().eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True; we choose it on purpose.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            module,
            (torch.from_numpy(np.ascontiguousarray(example)),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
    fold_computed_pads(path, {input_name: np.ascontiguousarray(example, dtype=np.float32)})


def fold_computed_pads(path: Any, feeds: dict[str, np.ndarray]) -> int:
    """Pad nodes whose amounts the TorchScript exporter computes in the graph (F.pad: ConstantOfShape,
    Concat, Reshape and a Slice with step -1 that its constant folding refuses) get the constant those
    amounts evaluate to, and the dead chain is dropped; returns how many. Without this, onnxruntime's
    symbolic shape inference (quant_pre_process) gives up on the graph. The amounts depend on ranks
    only, so one onnxruntime run on the example inputs computes them."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    names = sorted({n.input[1] for n in graph.node if n.op_type == "Pad" and len(n.input) > 1} - consts)
    if not names:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None) for n in names)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(names, feeds)
    for name, value in zip(names, values, strict=True):
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.int64), f"{name}__folded"))
        for node in graph.node:
            if node.op_type == "Pad" and len(node.input) > 1 and node.input[1] == name:
                node.input[1] = f"{name}__folded"
    while True:  # drop nodes nothing reads any more
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    onnx.save(model, str(path))
    return len(names)


def export_signature_onnx(
    module: Any,
    examples: tuple[Any, ...],
    path: Any,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
) -> None:
    """torch.onnx.export of a multi-input/-output module (heads.export_module of a student) under the
    teacher's input and output names, every axis 0 dynamic; integer inputs keep their dtype."""
    import torch

    module = module.cpu().eval()
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            module,
            tuple(examples),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    feeds = {n: np.asarray(e.detach().cpu().numpy()) for n, e in zip(input_names, examples, strict=True)}
    fold_computed_pads(path, feeds)


def io_names(state: RunState) -> tuple[str, str]:
    """The teacher's input and output names, so the student drops into the user's code unchanged
    (issue 10); the generic names when the teacher's signature is unknown or its names collide."""
    sig = state.signature
    if sig is None or len(sig.inputs) != 1 or len(sig.outputs) != 1:
        return INPUT_NAME, OUTPUT_NAME
    names = (sig.inputs[0].name, sig.outputs[0].name)
    return names if all(names) and names[0] != names[1] else (INPUT_NAME, OUTPUT_NAME)


class ExportOnnx(Step):
    """Reads state.student, state.data; writes state.artifacts["onnx_fp32"]. Runs when the profile
    targets onnx_fp32 or onnx_int8 (the int8 model is quantized from this file)."""

    name = "export_onnx"
    stage = "quantize"  # the fp32 graph is the quantizer's input; keeps stages in STAGES order
    order = 60

    def run(self, ctx: RunContext, state: RunState) -> None:
        targets = ctx.spec.profile.targets
        if "onnx_fp32" not in targets and "onnx_int8" not in targets:
            return
        if is_multi(state):  # several inputs/outputs or token ids: the teacher's names on every tensor
            export_onnx_multi(ctx, state, FILENAME, OPSET)
            return
        import onnx

        from edgedistill.runtimes.onnx import run_onnx
        from edgedistill.workers.steps.model_info import describe_onnx
        from edgedistill.workers.steps.students import standardized_export

        data = state.data
        x_check = data.x_of("test")[:CHECK_SAMPLES]
        if x_check.shape[0] == 0:
            x_check = data.x_of("train")[:CHECK_SAMPLES]
        reference = torch_predict(state.student, x_check)

        with staged_file(ctx.work_dir, FILENAME) as tmp:
            # An MLP keeps its input standardisation as float Sub/Div nodes in front of the first Gemm,
            # which quantize_static leaves float: the int8 layers see standardised features, not raw
            # ones of very different magnitudes under one scale (see export_tflite's docstring).
            module, _, float_pre = standardized_export(state.student, float_io=True)
            try:
                export_student_onnx(module, x_check[:1], tmp, *io_names(state))
                onnx.checker.check_model(str(tmp), full_check=True)
            except Exception as exc:
                raise PipelineError(f"ONNX export of the student failed: {exc}", stage=self.stage) from exc
            # Batches of several samples also exercise the dynamic batch axis.
            got = run_onnx(tmp, x_check)
            diff = max_abs_diff(got, reference)
            tol = ATOL + RTOL * float(np.max(np.abs(reference)))
            if got.shape != reference.shape or not np.isfinite(got).all() or diff > tol:
                raise PipelineError(
                    f"the exported ONNX model disagrees with the torch student (max |diff| {diff:.3g} > {tol:.3g})",
                    stage=self.stage,
                )
            info = describe_onnx(tmp)

        info["signature"]["layout"] = DATA_LAYOUTS.get(data.modality, "as-is")
        if float_pre:
            info["float_preprocessing"] = "per-feature (x - mean) / std (Sub, Div) before the first Gemm"
        record_artifact(
            ctx,
            state,
            kind="onnx_fp32",
            path=ctx.work_dir / FILENAME,
            metadata={
                **info,
                "precision": "fp32",
                "exporter": f"torch.onnx.export(dynamo=False, opset_version={OPSET})",
                "check": {"samples": int(x_check.shape[0]), "max_abs_diff_vs_torch": diff},
            },
        )


def export_onnx_multi(ctx: RunContext, state: RunState, filename: str, opset: int) -> None:
    """ExportOnnx for multi students (export_multi.is_multi): the teacher's names on every tensor."""
    import onnx

    from edgedistill.runtimes.onnx import OnnxModel
    from edgedistill.workers.steps.model_info import describe_onnx
    from edgedistill.workers.steps.students_multi import example_inputs

    sig = state.signature
    module = deploy_module(state)
    x = check_inputs(state)
    ref = torch_predict_all(module, sig, x)
    with staged_file(ctx.work_dir, filename) as tmp:
        try:
            examples = tuple(t.long() if not t.dtype.is_floating_point else t for t in example_inputs(sig))
            export_signature_onnx(module, examples, tmp, sig.input_names, sig.output_names)
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise PipelineError(f"ONNX export of the student failed: {exc}", stage="quantize") from exc
        got = OnnxModel(tmp).predict_all(x)
        diffs = max_diffs(got, ref)
        for name, d in diffs.items():
            tol = ATOL + RTOL * float(np.max(np.abs(ref[name]))) if ref[name].size else ATOL
            if d > tol and sig.output(name).kind != "class_index":
                raise PipelineError(f"the exported ONNX output {name!r} disagrees with torch ({d:.3g} > {tol:.3g})")
        info = describe_onnx(tmp)
    # token ids and masks are exported as int64 (what torch's embedding takes); say so if the teacher differs
    changes = [
        f"input {spec.name!r} takes int64 (the teacher's: {spec.dtype})"
        for spec in sig.inputs
        if not spec.dtype.startswith("float") and spec.dtype != "int64"
    ]
    record_artifact(
        ctx,
        state,
        kind="onnx_fp32",
        path=ctx.work_dir / filename,
        metadata={
            **info,
            "precision": "fp32",
            "exporter": f"torch.onnx.export(dynamo=False, opset_version={opset})",
            "teacher_io": {"inputs": list(sig.input_names), "outputs": list(sig.output_names)},
            "changes_vs_teacher": changes,
            "check": {"samples": int(next(iter(x.values())).shape[0]), "max_abs_diff_vs_torch": diffs},
        },
    )
