"""The fake-quant graph pieces both quantization-aware paths share (qat.py for one input and one
logits output, qat_multi.py for raw-output multi students): the graph record export_tflite converts,
litert-torch's QAT quantizer, BatchNorm folding, and copying the trained weights back."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from edgedistill.contracts.errors import PipelineError


@dataclass
class QatModel:
    graph: Any  # torch.fx.GraphModule prepared for QAT, trained, in eval mode
    layout: str | None  # the graph's input layout (NHWC or the data's)
    quantizer: Any  # the litert-torch PT2EQuantizer it was prepared with
    input_layouts: dict[str, str] | None = None  # multi-input graphs (qat_multi): input name -> "NHWC"


def qat_quantizer() -> Any:
    from litert_torch.quantize import pt2e_quantizer

    cfg = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    # keep the fake-quant observers, annotate with the static patterns (why: qat.py's docstring)
    cfg = cfg._replace(is_qat=False) if hasattr(cfg, "_replace") else replace(cfg, is_qat=False)
    return pt2e_quantizer.PT2EQuantizer().set_global(cfg)


def fuse_batchnorm(module: Any) -> Any:
    """A copy of module with every Conv2d directly followed by BatchNorm2d (in a Sequential) folded
    into one Conv2d with bias; the BN becomes Identity."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module = copy.deepcopy(module).cpu().eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq)
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return module


def copy_back(graph: Any, fused: Any, *, strict: bool = False) -> Any:
    """The trained float weights of the QAT graph, by parameter name, into the BN-folded student.
    strict: every parameter of the student must be found in the graph (else PipelineError)."""
    import torch

    trained = dict(graph.named_parameters())
    state = fused.state_dict()
    params = {name for name, _ in fused.named_parameters()}
    missing = []
    for name in state:
        match = [name] if name in trained else [k for k in trained if k.endswith("." + name)]
        if len(match) != 1:
            missing.append(name)  # buffers (none after folding) or parameters the graph does not own
            continue
        with torch.no_grad():
            state[name] = trained[match[0]].detach().clone()
    lost = [n for n in missing if n in params]
    if strict and lost:
        raise PipelineError(f"the trained fake-quant graph has no single parameter for {', '.join(lost[:5])}")
    fused.load_state_dict(state)
    return fused.eval()
