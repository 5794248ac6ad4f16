"""Quantization-aware distillation for students of teachers with several inputs/outputs, or outputs
other than one (k,) vector (distill.multi.needs_multi), when every output is exported as the student's
raw value (contracts.signature.qat_blocker: float inputs, RAW_OUTPUT_KINDS; e.g. a detector's anchor
boxes and scores). heads.export_module then adds no op after the student, so the
fake-quant graph of the raw student IS the graph export_tflite converts.

The graph is made as qat.prepare_qat makes it (BatchNorm folded, torch.export with a dynamic batch,
litert-torch's symmetric per-channel QAT observers), with float NCHW image inputs channel-last as
export_tflite.convert_signature_int8 exports them; the fine-tuning uses the per-output terms
(fitting.fit -> _fit_multi) without the FitNets hints (the exported graph has no named layers to read).
The caller (qat.QatKD) copies the trained float weights back and keeps the graph for export_tflite."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from edgedistill.contracts.signature import ModelSignature


def prepare_qat_multi(student: Any, signature: ModelSignature, example: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """(qat.QatModel, BN-folded float student) for a raw-output multi student; example: input name ->
    a few training samples in the data's layout."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_train, quantize_pt2e

    from edgedistill.runtimes.common import CHANNEL_LAST, to_model_layout
    from edgedistill.workers.steps.distill.qat_graph import QatModel, fuse_batchnorm, qat_quantizer
    from edgedistill.workers.steps.export_multi import channel_last_inputs

    fused = fuse_batchnorm(student)
    images = channel_last_inputs(signature)
    layouts = {signature.inputs[i].name: CHANNEL_LAST for i in images}
    module = litert_torch.to_channel_last_io(fused, args=images).eval() if images else fused
    args = []
    for spec in signature.inputs:
        x = to_model_layout(np.ascontiguousarray(example[spec.name][:4], dtype=np.float32), layouts.get(spec.name))
        t = torch.from_numpy(np.ascontiguousarray(x))
        args.append(torch.cat([t, t]) if t.shape[0] < 2 else t)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    quantizer = qat_quantizer()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.export.export(module, tuple(args), dynamic_shapes=_batch_dims(module, len(args), batch))
        graph = quantize_pt2e.prepare_qat_pt2e(program.module(), quantizer)
    move_exported_model_to_train(graph)
    return QatModel(graph=graph, layout=None, quantizer=quantizer, input_layouts=layouts), fused


def _batch_dims(module: Any, n: int, batch: Any) -> tuple[Any, ...]:
    """dynamic_shapes freeing dim 0 of every input, shaped as torch.export matches them to forward's
    parameters: converted graphs (onnx2torch) take *args, which export sees as one tuple argument."""
    import inspect

    dims = tuple({0: batch} for _ in range(n))
    params = inspect.signature(module.forward).parameters.values()
    return (dims,) if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params) else dims


def multi_adapter(qat: Any, signature: ModelSignature) -> Any:
    """The fake-quant graph behind the data's layouts: forward(*inputs) in signature order returns the
    raw outputs; train()/eval() that exported graphs accept."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    nhwc = {i for i, s in enumerate(signature.inputs) if s.name in (qat.input_layouts or {})}

    class MultiLayoutAdapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph = qat.graph

        def train(self, mode: bool = True) -> MultiLayoutAdapter:
            self.training = mode
            (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.graph)
            return self

        def forward(self, *inputs: torch.Tensor) -> Any:
            xs = [x.permute(0, 2, 3, 1) if i in nhwc else x for i, x in enumerate(inputs)]
            return self.graph(*(x.contiguous() for x in xs))

    return MultiLayoutAdapter()
