"""Lifelong / incremental distillation: continue an earlier run's student on a new transfer set
without forgetting what it did on the old one.

- The earlier student's architecture comes from that run's report.json (plain JSON) and its weights
  from its student_fp32.onnx (protobuf initializers read with onnx.numpy_helper). Nothing is
  unpickled. The ONNX file has BatchNorm folded into the convolutions; import_onnx_weights puts the
  folded weights into the convolutions and re-parameterises each BatchNorm to the new data's
  statistics so that the imported student computes exactly the earlier function in eval mode (and
  nearly so with batch statistics in train mode).
- Training distils from the teacher and, Learning-without-Forgetting style (Li & Hoiem 2016), from
  the earlier student's outputs on the new data (loss lwf), which onnxruntime computes once.
- The report gives accuracy (or agreement with the teacher without labels) on the old and the new
  data, before (earlier student) and after (new student), and the agreement between the two on the
  old data. Old data: spec.old_data_path (an .npz) or, when none is given, the earlier run's probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.students import MLP, Standardize, StudentArch, build_module, estimate

STAT_BATCH = 512


def read_previous_arch(report_path: Path | None) -> StudentArch:
    if report_path is None or not report_path.is_file():
        raise InputError(
            "the earlier run's report.json (which records the student's architecture) was not found next to "
            "its student_fp32.onnx"
        )
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        return StudentArch.from_dict(report["student"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"the earlier run's report {report_path.name!r} has no usable student section: {exc}") from exc


def _onnx_layers(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """("conv" | "linear", weight in torch layout, bias) for each Conv / Gemm / MatMul(+Add) in order."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path.name!r} is not a readable ONNX model: {exc}") from exc
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consts: dict[str, np.ndarray] = dict(init)
    for node in model.graph.node:  # constant-folded weights can also be Constant nodes
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    layers: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        if node.op_type == "Conv":
            w = consts.get(node.input[1])
            b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if w is None:
                raise InputError(f"{path.name}: a Conv weight is not a constant")
            layers.append(("conv", w, b))
        elif node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = consts.get(node.input[1])
            b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if w is None:
                raise InputError(f"{path.name}: a Gemm weight is not a constant")
            w = w if attrs.get("transB", 0) else w.T
            layers.append(("linear", w * float(attrs.get("alpha", 1.0)), b))
        elif node.op_type == "MatMul" and node.input[1] in consts:
            bias = None
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input:
                other = [n for n in nxt.input if n != node.output[0]]
                bias = consts.get(other[0]) if other else None
            layers.append(("linear", consts[node.input[1]].T, bias))
    return layers


def _module_layers(module: nn.Module) -> list[tuple[str, nn.Module, nn.BatchNorm2d | None]]:
    mods = list(module.modules())
    out: list[tuple[str, nn.Module, nn.BatchNorm2d | None]] = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            out.append(("conv", m, bn))  # type: ignore[arg-type]
        elif isinstance(m, nn.Linear):
            out.append(("linear", m, None))
    return out


@torch.no_grad()
def import_onnx_weights(module: nn.Module, onnx_path: Path, x: np.ndarray) -> None:
    """Load the earlier student's folded ONNX weights into a freshly built module of the same
    architecture. x: samples of the new data, for the BatchNorm statistics and (MLP) the input
    standardisation. Raises InputError when the layers do not match."""
    src = _onnx_layers(onnx_path)
    dst = _module_layers(module)
    if [k for k, _, _ in src] != [k for k, _, _ in dst]:
        raise InputError(
            f"the earlier student's ONNX layers ({len(src)}) do not match the architecture in its report "
            f"({len(dst)} layers)"
        )
    biases: list[tuple[nn.BatchNorm2d, torch.Tensor]] = []
    for (kind, w, b), (_, mod, bn) in zip(src, dst, strict=True):
        weight = getattr(mod, "weight")  # noqa: B009
        if tuple(w.shape) != tuple(weight.shape):
            raise InputError(f"earlier student {kind} weight {w.shape} does not fit {tuple(weight.shape)}")
        weight.copy_(torch.tensor(np.asarray(w, dtype=np.float32)))
        bias = torch.zeros(weight.shape[0]) if b is None else torch.tensor(np.asarray(b, dtype=np.float32))
        own_bias = getattr(mod, "bias", None)
        if bn is not None:
            # exact identity in eval mode, plus the folded bias: BN(z) = z + b
            _bn_buffers(bn)[0].zero_()
            _bn_buffers(bn)[1].fill_(1.0)
            bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
            bn.bias.copy_(bias)
            biases.append((bn, bias))
        elif isinstance(own_bias, torch.Tensor):
            own_bias.copy_(bias)
        elif b is not None and np.any(b != 0):
            raise InputError(f"the earlier student's {kind} has a bias the architecture has no place for")

    if isinstance(module, MLP):
        _restandardize(module, x)
    if biases:
        _reparameterize_bn(module, biases, x)


def _bn_buffers(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.running_mean is None or bn.running_var is None:
        raise InputError("the student's BatchNorm keeps no running statistics")
    return bn.running_mean, bn.running_var


def _restandardize(module: MLP, x: np.ndarray) -> None:
    """The ONNX MLP has its input standardisation folded in; put the new data's back in front of an
    adjusted first layer: W' = W diag(std), b' = b + W mean, so W' (x - mean) / std + b' = W x + b."""
    xt = torch.as_tensor(x, dtype=torch.float32).reshape(x.shape[0], -1)
    mean, std = xt.mean(0), xt.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    first = module.body[0]
    assert isinstance(first, nn.Linear) and first.bias is not None
    first.bias.add_(first.weight @ mean)
    first.weight.mul_(std)
    module.standardize = Standardize(xt.shape[1])
    module.set_input_statistics(mean, std)


def _reparameterize_bn(module: nn.Module, biases: list[tuple[nn.BatchNorm2d, torch.Tensor]], x: np.ndarray) -> None:
    """Each BN is identity + bias now; give it the new data's statistics mu, var of its input z and
    gamma = sqrt(var + eps), beta = mu + b, which leaves the eval-mode function unchanged
    ((z - mu) / sqrt(var + eps) * gamma + beta = z + b) while train-mode batch statistics ~ mu, var."""
    sums: dict[int, list[torch.Tensor]] = {}
    handles = []
    for bn, _ in biases:

        def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            z = inp[0].double()
            acc = sums.setdefault(id(m), [torch.zeros(z.shape[1], dtype=torch.float64)] * 2 + [torch.zeros(())])
            acc[0] = acc[0] + z.sum(dim=(0, 2, 3))
            acc[1] = acc[1] + (z * z).sum(dim=(0, 2, 3))
            acc[2] = acc[2] + z.shape[0] * z.shape[2] * z.shape[3]

        handles.append(bn.register_forward_hook(hook))
    was = module.training
    module.eval()
    try:
        for i in range(0, x.shape[0], STAT_BATCH):
            module(torch.as_tensor(np.ascontiguousarray(x[i : i + STAT_BATCH], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
        module.train(was)
    for bn, bias in biases:
        s, sq, n = sums[id(bn)]
        mu = s / n
        var = (sq / n - mu * mu).clamp_min(0)
        running_mean, running_var = _bn_buffers(bn)
        running_mean.copy_(mu.float())
        running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.copy_(mu.float() + bias)


def build_previous_student(ctx: RunContext, state: RunState) -> None:
    """BuildStudent for lifelong runs: the earlier architecture and weights (module docstring)."""
    spec, data = ctx.spec, state.data
    assert spec.init_from_path is not None
    if not spec.init_from_path.is_file():
        raise InputError(f"the earlier student {str(spec.init_from_path)!r} does not exist")
    arch = read_previous_arch(spec.init_from_report)
    if tuple(arch.input_shape) != tuple(data.sample_shape):
        raise InputError(
            f"the earlier student takes inputs of shape {arch.input_shape}, the new data has {data.sample_shape}"
        )
    if arch.num_outputs != data.num_outputs:
        raise InputError(
            f"the earlier student has {arch.num_outputs} outputs and the teacher {data.num_outputs}: "
            "lifelong distillation keeps the output classes (new classes are not supported)"
        )
    torch.manual_seed(spec.options.seed)
    module = build_module(arch)
    import_onnx_weights(module, spec.init_from_path, data.x_of("train"))
    est = estimate(arch)
    state.student = module
    state.student_arch = {
        **arch.to_dict(),
        "params": est.params,
        "macs": est.macs,
        "est_int8_bytes": est.est_int8_bytes,
        "est_arena_bytes": est.est_arena_bytes,
        "chosen_because": f"continued from the earlier student {spec.init_from_path.name} (options.init_from)",
    }
    if isinstance(module, MLP):
        state.student_arch["input_standardization"] = {
            "mean": module.input_mean.tolist(),
            "std": module.input_std.tolist(),
        }
    ctx.emit("progress", {"message": f"continuing the earlier student {arch.label()} ({est.params:,} params)"})


def previous_outputs(ctx: RunContext, state: RunState) -> dict[str, np.ndarray]:
    """The earlier student's outputs (onnxruntime on its ONNX file) on every split of the new data."""
    from edgedistill.runtimes.onnx import run_onnx

    path = ctx.spec.init_from_path
    assert path is not None
    data = state.data
    return {s: run_onnx(path, data.x_of(s)) for s in ("train", "val", "test")}


def _read_old(path: Path | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    if path is None or not path.is_file():
        return None
    from edgedistill.workers.steps.data import read_npz

    x, y, _ = read_npz(path)
    return x, y


def _quality(out: np.ndarray, y: np.ndarray | None, teacher: np.ndarray, task: str) -> dict[str, float]:
    from edgedistill.workers.steps.metrics import evaluate

    m = evaluate(out, task=task, teacher=teacher, student=None, labels=y)
    keep = ("accuracy", "top1_agreement", "r2", "r2_vs_teacher")
    return {k: float(v) for k, v in m.items() if k in keep}


def forgetting_report(ctx: RunContext, state: RunState) -> dict[str, Any]:
    """Before (earlier student) and after (new student) on the old and the new data."""
    from edgedistill.runtimes.onnx import run_onnx
    from edgedistill.workers.steps.export_onnx import torch_predict
    from edgedistill.workers.steps.metrics import top1_agreement

    spec, data = ctx.spec, state.data
    assert spec.init_from_path is not None
    task = data.task
    x_new, y_new = data.x_of("test"), data.y_of("test")
    from edgedistill.workers.steps.data import primary_targets

    t_new = primary_targets(data, state.teacher_outputs["test"])
    prev_new = run_onnx(spec.init_from_path, x_new)
    after_new = torch_predict(state.student, x_new)
    report: dict[str, Any] = {
        "init_from": spec.init_from_path.name,
        "lwf_weight": spec.options.lwf_weight,
        "new_data": {
            "samples": int(x_new.shape[0]),
            "before": _quality(prev_new, y_new, t_new, task),
            "after": _quality(after_new, y_new, t_new, task),
        },
    }
    old = _read_old(spec.old_data_path)
    if old is None:
        report["old_data"] = None
        report["old_data_note"] = (
            "no old data: give options.old_data (CLI an .npz path, API a dataset id) or keep the earlier run's probe"
        )
        return report
    x_old, y_old = old
    if tuple(x_old.shape[1:]) != tuple(data.sample_shape):
        report["old_data"] = None
        report["old_data_note"] = f"old data has per-sample shape {tuple(x_old.shape[1:])}, not {data.sample_shape}"
        return report
    if y_old is not None and task == "classification":
        y_old = y_old.astype(np.int64)
    t_old = state.teacher.predict(x_old).reshape(x_old.shape[0], -1)
    prev_old = run_onnx(spec.init_from_path, x_old)
    after_old = torch_predict(state.student, x_old)
    report["old_data"] = {
        "source": spec.old_data_path.name if spec.old_data_path else None,
        "samples": int(x_old.shape[0]),
        "before": _quality(prev_old, y_old, t_old, task),
        "after": _quality(after_old, y_old, t_old, task),
    }
    if task == "classification":
        report["old_data"]["agreement_with_earlier_student"] = top1_agreement(after_old, prev_old)
    return report
