"""ONNX operators onnx2torch 1.5 lacks on the project's real teachers, added through its converter
registry (onnx2torch.node_converters.registry.add_converter) so that the converted graph holds ordinary,
trainable torch modules:

- GlobalMaxPool (opsets 1, 22; magika): max over every axis after the channel axis, keepdims.
- LSTM (opsets 7, 14, 22; the row-LSTM teacher, any torch.onnx export of nn.LSTM): an nn.LSTM with the ONNX
  gate blocks (i, o, f, c) reordered to torch's (i, f, g=c, o) and W/R biases split into bias_ih/bias_hh.
- GRU (opsets 7, 14, 22; the VAD teacher): an nn.GRU with ONNX's (z, r, h) blocks reordered to torch's
  (r, z, n). Only linear_before_reset=1 is torch's GRU (what torch.onnx writes); 0 is refused.

- Clip (opsets 11-13), replacing onnx2torch's: it reads an absent optional bound ("", as torch.onnx writes
  clamp(min=...)) as a constant and fails ("Dynamic value of min/max is not implemented"; the text
  transformer's mask-length clamp); here absent bounds are absent, constant bounds constants and computed
  bounds graph inputs of the module. Replaced in the registry (add_converter refuses a second
  registration of an operator and version).
- Reshape (opsets 5, 13, 14), replacing onnx2torch's where the target shape is a constant: onnx2torch's
  module takes the shape as a tensor input, which torch.export (litert-torch, PT2E) cannot guard on
  ("Could not guard on data-dependent expression"; the TFLite route's students); here a constant
  target is a Python tuple (0 = copy that input dimension, allowzero 0), a computed one keeps
  onnx2torch's module.

Recurrent converters take the default activations only, layout 0 (time-major, as torch.onnx writes), no
peepholes (P), no clip and no per-sample sequence_lens (every sequence runs its full length); any other
attribute raises NotImplementedError at conversion with the reason, which convert.py reports per teacher.
Each module returns what the ONNX node returns: Y (T, directions, B, H), Y_h (directions, B, H) and, for
LSTM, Y_c; onnx2torch reads the outputs a graph uses by index.

Importing this module registers the converters once (registration is idempotent here: the registry
refuses a second registration of the same operator and version)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgedistill.workers.steps.derived.onnx2torch_import import import_onnx2torch

import_onnx2torch()

from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter  # noqa: E402
from onnx2torch.onnx_graph import OnnxGraph  # noqa: E402
from onnx2torch.onnx_node import OnnxNode  # noqa: E402
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node  # noqa: E402

# the operators (type, opset versions) this module adds; convert.py's coverage table lists them
ADDED: dict[str, tuple[int, ...]] = {"GlobalMaxPool": (1, 22), "LSTM": (7, 14, 22), "GRU": (7, 14, 22)}
REPLACED: dict[str, tuple[int, ...]] = {"Clip": (11, 12, 13), "Reshape": (5, 13, 14)}


class GlobalMaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)


def _global_max_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return OperationConverterResult(torch_module=GlobalMaxPool(), onnx_mapping=onnx_mapping_from_node(node))


class Clip(nn.Module):
    """torch.clamp with constant bounds (None: unbounded) or bounds given as inputs."""

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(
        self, x: torch.Tensor, low: torch.Tensor | None = None, high: torch.Tensor | None = None
    ) -> torch.Tensor:
        lo = low if low is not None else self.low
        hi = high if high is not None else self.high
        if lo is None and hi is None:
            return x
        return torch.clamp(x, lo, hi)  # type: ignore[arg-type]  # clamp takes numbers too


def _clip(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    from onnx2torch.utils.common import get_const_value

    names = [*node.input_values[1:3], "", ""][:2]
    consts: list[float | None] = [None, None]
    dynamic = ["", ""]
    for i, name in enumerate(names):
        if not name:
            continue
        try:
            consts[i] = float(get_const_value(name, graph))
        except KeyError:
            dynamic[i] = name
    inputs = (node.input_values[0], *dynamic)
    while len(inputs) > 1 and not inputs[-1]:
        inputs = inputs[:-1]
    module = Clip(consts[0], consts[1])
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=inputs, outputs=node.output_values)
    )


class ConstReshape(nn.Module):
    """torch.reshape to a shape fixed at conversion: -1 inferred, 0 copies the input's dimension."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])


def _reshape(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    from onnx2torch.utils.common import get_const_value

    if node.attributes.get("allowzero", 0) == 1:
        raise NotImplementedError('Reshape "allowzero=1" is not implemented')
    try:
        shape = tuple(int(v) for v in get_const_value(node.input_values[1], graph).reshape(-1).tolist())
    except KeyError:  # computed in the graph: onnx2torch's tensor-shaped module
        return _ONNX2TORCH_RESHAPE(node, graph)
    return OperationConverterResult(
        torch_module=ConstReshape(shape),
        onnx_mapping=OnnxMapping(inputs=node.input_values[:1], outputs=node.output_values),
    )


# --------------------------------------------------------------------------------------------------
# recurrent layers
# --------------------------------------------------------------------------------------------------

# ONNX gate block order -> torch's, as indices into the ONNX blocks
_LSTM_ORDER = (0, 2, 3, 1)  # onnx (i, o, f, c) -> torch (i, f, g, o)
_GRU_ORDER = (1, 0, 2)  # onnx (z, r, h) -> torch (r, z, n)
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


class OnnxRecurrent(nn.Module):
    """nn.LSTM / nn.GRU (time-major) with the ONNX node's inputs and outputs."""

    def __init__(self, rnn: nn.LSTM | nn.GRU) -> None:
        super().__init__()
        self.rnn = rnn
        self.lstm = isinstance(rnn, nn.LSTM)

    def forward(
        self, x: torch.Tensor, initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        dirs = 2 if self.rnn.bidirectional else 1
        hidden = self.rnn.hidden_size
        batch = x.shape[1]
        h0 = initial_h if initial_h is not None else x.new_zeros(dirs, batch, hidden)
        if self.lstm:
            c0 = initial_c if initial_c is not None else x.new_zeros(dirs, batch, hidden)
            y, (h, c) = self.rnn(x, (h0, c0))
        else:
            y, h = self.rnn(x, h0)
        # torch: (T, B, dirs * H); ONNX: (T, dirs, B, H)
        y = y.reshape(y.shape[0], batch, dirs, hidden).transpose(1, 2)
        return (y, h, c) if self.lstm else (y, h)


def _blocks(t: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    parts = t.chunk(len(order), dim=0)
    return torch.cat([parts[i] for i in order], dim=0)


def _recurrent(kind: str, node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = dict(node.attributes)
    ins = list(node.input_values) + [""] * (8 - len(node.input_values))
    x_name, w_name, r_name, b_name, lens_name, h0_name = ins[:6]
    c0_name = ins[6] if kind == "LSTM" else ""
    peep = ins[7] if kind == "LSTM" else ""
    why: list[str] = []
    if attrs.get("layout", 0) != 0:
        why.append("layout 1 (batch-major)")
    if attrs.get("clip") is not None:
        why.append("clip")
    if attrs.get("input_forget", 0):
        why.append("input_forget")
    acts = attrs.get("activations")
    dirs_attr = attrs.get("direction", "forward")
    dirs_attr = dirs_attr.decode() if isinstance(dirs_attr, bytes) else str(dirs_attr)
    n_dirs = 2 if dirs_attr == "bidirectional" else 1
    if acts is not None:
        acts = [a.decode() if isinstance(a, bytes) else str(a) for a in acts]
        if [a.lower() for a in acts] != [a.lower() for a in _DEFAULT_ACTIVATIONS[kind] * n_dirs]:
            why.append(f"activations {acts}")
    if dirs_attr == "reverse":
        why.append("direction reverse")
    if kind == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        why.append("linear_before_reset=0 (torch's GRU applies the reset gate after the linear map)")
    if peep:
        why.append("peepholes (P)")
    if lens_name:
        why.append("sequence_lens (per-sample lengths)")
    if any(n and n not in graph.initializers for n in (w_name, r_name, b_name)):
        why.append("weights computed in the graph (not initializers)")
    if why:
        raise NotImplementedError(f"ONNX {kind} with {', '.join(why)} has no torch equivalent here")
    w = graph.initializers[w_name].to_torch().float()  # (dirs, G*H, I)
    r = graph.initializers[r_name].to_torch().float()  # (dirs, G*H, H)
    gates = 4 if kind == "LSTM" else 3
    hidden = int(attrs.get("hidden_size", r.shape[-1]))
    b = graph.initializers[b_name].to_torch().float() if b_name else torch.zeros(n_dirs, 2 * gates * hidden)
    order = _LSTM_ORDER if kind == "LSTM" else _GRU_ORDER
    cls = nn.LSTM if kind == "LSTM" else nn.GRU
    rnn = cls(int(w.shape[-1]), hidden, bidirectional=n_dirs == 2)
    with torch.no_grad():
        for d in range(n_dirs):
            suffix = "_reverse" if d == 1 else ""
            getattr(rnn, f"weight_ih_l0{suffix}").copy_(_blocks(w[d], order))
            getattr(rnn, f"weight_hh_l0{suffix}").copy_(_blocks(r[d], order))
            wb, rb = b[d].chunk(2)
            getattr(rnn, f"bias_ih_l0{suffix}").copy_(_blocks(wb, order))
            getattr(rnn, f"bias_hh_l0{suffix}").copy_(_blocks(rb, order))
    inputs: tuple[str, ...] = (x_name, h0_name, c0_name) if kind == "LSTM" else (x_name, h0_name)
    # trailing absent optional inputs dropped; an absent one in the middle stays "" (onnx2torch passes None)
    while inputs and not inputs[-1]:
        inputs = inputs[:-1]
    mapping = OnnxMapping(inputs=tuple(inputs), outputs=node.output_values)
    return OperationConverterResult(torch_module=OnnxRecurrent(rnn), onnx_mapping=mapping)


def _lstm(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return _recurrent("LSTM", node, graph)


def _gru(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return _recurrent("GRU", node, graph)


def _register(op: str, versions: tuple[int, ...], fn: Any) -> None:
    for v in versions:
        if OperationDescription(domain="", operation_type=op, version=v) not in _CONVERTER_REGISTRY:
            add_converter(operation_type=op, version=v)(fn)


_register("GlobalMaxPool", ADDED["GlobalMaxPool"], _global_max_pool)
_register("LSTM", ADDED["LSTM"], _lstm)
_register("GRU", ADDED["GRU"], _gru)
for _v in REPLACED["Clip"]:
    _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type="Clip", version=_v)] = _clip
# onnx2torch's own converter (one function for every version), kept for computed shapes
_ONNX2TORCH_RESHAPE: Any = _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type="Reshape", version=13)]
for _v in REPLACED["Reshape"]:
    _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type="Reshape", version=_v)] = _reshape
