"""Students for any teacher signature: several inputs (images, float sequences, token ids + masks,
tabular vectors) and several outputs (class scores, sigmoid units, regressors, per-anchor heads).

Shape of the network (one encoder per input, a shared trunk, one head per trained output):
- image (N, C, H, W) float: the DS-CNN blocks of students.DSCNN (depthwise-separable, Howard et al.
  2017); its last feature map also feeds the per-anchor heads.
- float sequence (N, C, T) (layout NCL, or NLC transposed first): the same blocks on (N, C, 1, T), as
  DS-CNN keyword spotting does (Zhang et al. 2017).
- token ids (N, L) integer: ids >= V are hashed into V buckets in the graph (remainder), so the
  exported model takes the teacher's raw ids; an Embedding(V, E); then depthwise 1-D convolutions with
  growing dilation (a TCN-style receptive field, Bai et al. 2018, arXiv:1803.01271); mean pooling over
  the positions an integer mask input of the same shape marks (name containing "mask"), else over all.
  Long byte sequences (L >= 256, no mask) are downsampled by strided blocks as audio is.
- vector (N, F) float: standardisation + Linear/ReLU layers (as students.MLP).
No GRU: nn.GRU exports to ONNX (max |diff| 6e-8) but litert-torch's PT2E int8 conversion fails on it
(IndexError inside the converter, float and int8 I/O alike; litert-torch 0.10, measured 2026-12-01), so
recurrent teachers get the convolutional sequence encoder, which streams as a TCN does.
The encoders' pooled features are concatenated into a Linear/ReLU trunk. Each output gets a head:
Linear(trunk, prod(shape)) reshaped to the teacher's per-sample shape, or, for per-anchor outputs
(A anchors = prod of the non-last dims, d values each) when an encoder has a feature map (C, P):
- a GridHead when the teacher's anchor grid was inferred from its outputs (anchor_grid.infer_grid,
  e.g. BlazeFace's 16x16x2 + 8x8x6): per level a depthwise 3x3 + 1x1 conv to k * d channels on the
  encoder map of that resolution, reordered to the teacher's anchor order (C * (9 + k * d) weights);
- else an AnchorHead: Linear(P, A) over positions then Linear(C, d) shared by the anchors (a learned
  anchor assignment, A * P + C * d weights instead of trunk * A * d).

Outputs are RAW (logits / pre-sigmoid scores / plain values) in signature output order, without
class_index outputs (workers/steps/heads.py adds softmax/sigmoid/argmax for export).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.contracts.errors import BudgetError, InputError
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.contracts.signature import FLOAT_DTYPES, UNTRAINED_KINDS, ModelSignature, TensorSpec
from edgedistill.workers.steps.anchor_grid import AnchorGrid
from edgedistill.workers.steps.students import (
    _TFLITE_BYTES_PER_TENSOR,
    _TFLITE_FIXED_BYTES,
    FLASH_HEADROOM,
    TEACHER_PARAM_RATIO,
    StudentArch,
    StudentEstimate,
    budget_violation,
    plan_layers,
)

WIDTHS = (8, 12, 16, 24, 32, 48, 64, 96, 128)
DEPTHS = (1, 2, 3, 4)
PREFERRED_MIN_DEPTH = 2
# An embedding table may take at most this share of the flash budget (the rest: encoders and heads).
VOCAB_FLASH_SHARE = 0.4  # of the bytes: tables stay float32 (4 bytes per weight)
MIN_VOCAB = 16
LONG_SEQUENCE = 256  # token sequences at least this long (without a mask) are downsampled

InputStats = dict[str, dict[str, Any]]


def needs_multi_student(signature: ModelSignature) -> bool:
    """Whether the signature needs a MultiStudent: anything but one float input with one trained
    (k,)-shaped output, which the single-input families (students.py) cover."""
    trained = [o for o in signature.outputs if o.kind not in UNTRAINED_KINDS]
    single_in = len(signature.inputs) == 1 and signature.inputs[0].dtype in FLOAT_DTYPES
    return not (
        single_in and len(trained) == 1 and len(trained[0].per_sample) == 1 and 2 <= len(signature.inputs[0].shape) <= 4
    )


def input_kind(spec: TensorSpec) -> str:
    """ "image", "sequence", "tokens", "mask" or "vector" for one teacher input."""
    rank = len(spec.shape) - 1
    if spec.dtype not in FLOAT_DTYPES:
        if rank != 1:
            raise InputError(f"integer input {spec.name!r} of per-sample shape {spec.per_sample}: only (L,) token ids")
        return "mask" if "mask" in spec.name.lower() else "tokens"
    if rank == 1:
        return "vector"
    if rank == 2:
        return "sequence"
    if rank == 3:
        return "image"
    raise InputError(f"input {spec.name!r} of per-sample shape {spec.per_sample}: no student encoder for it")


def _known(shape: tuple[int | None, ...], what: str) -> tuple[int, ...]:
    if any(d is None for d in shape):
        raise InputError(f"{what} has dynamic per-sample dims {shape}: the student needs fixed ones")
    return tuple(int(d) for d in shape if d is not None)


def input_stats(signature: ModelSignature, inputs: Mapping[str, np.ndarray]) -> InputStats:
    """What build_student needs from the transfer data: feature mean/std of vector inputs, the largest
    token id of token inputs."""
    stats: InputStats = {}
    for spec in signature.inputs:
        x = inputs.get(spec.name)
        if x is None or x.shape[0] == 0:
            continue
        kind = input_kind(spec)
        if kind == "vector":
            stats[spec.name] = {"mean": x.mean(0).astype(np.float32), "std": x.std(0).astype(np.float32)}
        elif kind == "tokens":
            stats[spec.name] = {"max_id": int(x.max())}
    return stats


# --------------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], groups: int,
                  dilation: tuple[int, int] = (1, 1)) -> list[nn.Module]:  # fmt: skip
    pad = ((kernel[0] // 2) * dilation[0], (kernel[1] // 2) * dilation[1])
    return [
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


class ConvEncoder(nn.Module):
    """DS-CNN feature extractor (students.plan_layers) for images and float sequences; returns
    (pooled (N, C), map (N, C, P)). channels_last: an NLC sequence or an NHWC image (as TFLite teachers
    take them) is permuted to channels-first in the graph, so the convolutions run over the real
    spatial axes."""

    def __init__(self, family: str, per_sample: tuple[int, ...], width: int, depth: int, channels_last: bool) -> None:
        super().__init__()
        self.is_1d = family == "ds_cnn1d"
        self.channels_last = channels_last
        shape = (per_sample[-1], *per_sample[:-1]) if channels_last else per_sample
        arch = StudentArch(family, shape, 1, width, depth)  # type: ignore[arg-type]
        body: list[nn.Module] = []
        layers = [layer for layer in plan_layers(arch) if layer.kind == "conv"]
        # the index in `features` after which each resolution's last map is ready (its ReLU)
        self.taps: list[tuple[int, int, int, int]] = []  # (module index, channels, rows, cols)
        for layer in layers:
            body += _conv_bn_relu(layer.cin, layer.cout, layer.kernel, layer.stride, layer.groups)
            tap = (len(body) - 1, layer.cout, layer.out_hw[0], layer.out_hw[1])
            if self.taps and self.taps[-1][2:] == tap[2:]:
                self.taps[-1] = tap
            else:
                self.taps.append(tap)
        self.features = nn.Sequential(*body)
        self.channels = layers[-1].cout
        self.positions = layers[-1].out_hw[0] * layers[-1].out_hw[1]
        self.input_hw = tuple(shape[1:]) if not self.is_1d else (1, shape[1])

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_1d:
            return (x.transpose(1, 2) if self.channels_last else x).unsqueeze(2)
        return x.permute(0, 3, 1, 2) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(self._channels_first(x))
        return f.mean(dim=(2, 3), keepdim=True).flatten(1), f.flatten(2)

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(pooled, the last (N, C, h, w) map of every resolution, fine to coarse): what grid heads tap."""
        f = self._channels_first(x)
        wanted = {t[0] for t in self.taps}
        maps: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            f = layer(f)
            if i in wanted:
                maps.append(f)
        return f.mean(dim=(2, 3), keepdim=True).flatten(1), maps


class TokenEncoder(nn.Module):
    """Hashed embedding + dilated depthwise-separable 1-D blocks + (masked) mean pooling."""

    def __init__(
        self, length: int, vocab: int, width: int, depth: int, masked: bool, kernel: int = 5, hashed: bool = True
    ) -> None:
        super().__init__()
        self.vocab = vocab
        # Hashing (a remainder in the graph) only when the table is smaller than the ids seen: TFLite Micro
        # has no int32 FLOOR_MOD, so a table that covers every id clamps instead and runs on MCUs.
        self.hashed = hashed
        self.embedding = nn.Embedding(vocab, width)
        self.downsample = not masked and length >= LONG_SEQUENCE
        blocks: list[nn.Module] = []
        ch, positions = width, length
        for i in range(depth):
            stride = 2 if self.downsample and positions >= 8 else 1
            dilation = 1 if stride == 2 else 2 ** min(i, 3)
            cout = min(ch * 2, width * 4) if stride == 2 else ch
            blocks.append(
                nn.Sequential(
                    *_conv_bn_relu(ch, ch, (1, kernel), (1, stride), ch, (1, dilation)),
                    *_conv_bn_relu(ch, cout, (1, 1), (1, 1), 1),
                )
            )
            positions = (positions - 1) // stride + 1
            ch = cout
        self.blocks = nn.Sequential(*blocks)
        self.channels, self.positions = ch, positions

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # ids outside [0, V) are hashed (or, with a table covering every seen id, clamped) in the graph:
        # the model takes the raw ids
        ids = ids.long()
        h = self.embedding(torch.remainder(ids, self.vocab) if self.hashed else ids.clamp(0, self.vocab - 1))
        f = self.blocks(h.transpose(1, 2).unsqueeze(2))  # (N, C, 1, L')
        flat = f.flatten(2)
        if mask is None:
            return flat.mean(dim=2), flat
        m = mask.to(flat.dtype).unsqueeze(1)  # (N, 1, L); no downsampling with a mask
        pooled = (flat * m).sum(dim=2) / m.sum(dim=2).clamp(min=1.0)
        return pooled, flat * m


class VectorEncoder(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: int, width: int, depth: int, stats: Mapping[str, Any] | None) -> None:
        super().__init__()
        mean = (
            torch.zeros(features) if stats is None else torch.as_tensor(np.asarray(stats["mean"]), dtype=torch.float32)
        )
        std = torch.ones(features) if stats is None else torch.as_tensor(np.asarray(stats["std"]), dtype=torch.float32)
        self.register_buffer("mean", mean)
        self.register_buffer("std", torch.where(std > 1e-6, std, torch.ones_like(std)))
        layers: list[nn.Module] = []
        cin = features
        for _ in range(depth):
            layers += [nn.Linear(cin, width), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.channels, self.positions = width, 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Sub/Div stay float ops in front of the int8 layers at export (see students.FloatStandardized).
        return self.body((x - self.mean) / self.std), None


class AnchorHead(nn.Module):
    """(N, C, P) feature map -> (N, A, d): positions mapped to anchors, then channels to values."""

    def __init__(self, channels: int, positions: int, anchors: int, values: int) -> None:
        super().__init__()
        self.to_anchors = nn.Linear(positions, anchors)
        self.to_values = nn.Linear(channels, values)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.to_values(self.to_anchors(fmap).transpose(1, 2))


class GridHead(nn.Module):
    """Per-anchor outputs on the teacher's anchor grid (anchor_grid.infer_grid): for each level, the
    encoder map of that resolution (or the nearest finer one average-pooled down, or the coarsest
    upsampled), a depthwise 3x3 conv (context) and a 1x1 conv to k * d channels, reordered to
    (N, rows * cols * k, d) in the teacher's order; levels concatenated. About C * (9 + k * d)
    weights per level instead of a (positions x anchors) assignment."""

    def __init__(self, grid: AnchorGrid, taps: list[tuple[int, int, int, int]], values: int) -> None:
        super().__init__()
        self.grid, self.values = grid, values
        self.sources: list[int] = []  # index into the encoder's maps, per level
        self.resamplers = nn.ModuleList()
        self.convs = nn.ModuleList()
        for lv in grid.levels:
            src, resample = _grid_source(taps, lv.rows, lv.cols)
            channels = taps[src][1]
            self.sources.append(src)
            self.resamplers.append(resample)
            self.convs.append(
                nn.Sequential(
                    *_conv_bn_relu(channels, channels, (3, 3), (1, 1), channels),
                    nn.Conv2d(channels, lv.per_cell * values, 1),
                )
            )

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for lv, src, resample, conv in zip(self.grid.levels, self.sources, self.resamplers, self.convs, strict=True):
            y = conv(resample(maps[src]))  # (N, k * d, rows, cols)
            n = y.shape[0]
            if self.grid.order == "position":  # channel = anchor * d + value, anchors of a cell consecutive
                y = y.permute(0, 2, 3, 1).reshape(n, lv.anchors, self.values)
            else:  # anchor-major: all cells of anchor 0, then anchor 1, ...
                y = y.reshape(n, lv.per_cell, self.values, lv.rows * lv.cols).permute(0, 1, 3, 2)
                y = y.reshape(n, lv.anchors, self.values)
            outs.append(y)
        if len(outs) == 1:
            return outs[0]
        # Not torch.cat: PT2E int8 gives a concatenation one scale shared with its first input, which
        # clipped the other levels (primed biases give each level its own range; measured mean error 0.24
        # on a 0.9 range). Zero-padding each level to all anchors and adding lets every level keep its
        # scale and the sum get its own.
        total = sum(a.shape[1] for a in outs)
        start, padded = 0, []
        for a in outs:
            padded.append(F.pad(a, (0, 0, start, total - start - a.shape[1])))
            start += a.shape[1]
        out = padded[0]
        for a in padded[1:]:
            out = out + a
        return out


def _grid_source(taps: list[tuple[int, int, int, int]], rows: int, cols: int) -> tuple[int, nn.Module]:
    """The encoder map a level reads and how it is brought to rows x cols: the map of that size as is,
    else the smallest larger one that pools down evenly (AvgPool2d), else the coarsest map upsampled
    (nearest)."""
    for i in reversed(range(len(taps))):  # deepest first among equal sizes
        if taps[i][2:] == (rows, cols):
            return i, nn.Identity()
    finer = [i for i, t in enumerate(taps) if t[2] % rows == 0 and t[3] % cols == 0 and t[2] > rows]
    if finer:
        i = min(finer, key=lambda j: (taps[j][2], -j))
        return i, nn.AvgPool2d((taps[i][2] // rows, taps[i][3] // cols))
    return len(taps) - 1, nn.Upsample(size=(rows, cols), mode="nearest")


class TupleStudent(nn.Module):
    """A single-input, single-output student (students.DSCNN / MLP) under the multi-output contract:
    returns a 1-tuple; an NLC sequence is transposed to the NCT the DS-CNN takes."""

    def __init__(self, inner: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.inner(x.transpose(1, 2) if self.channels_last else x),)

    def fold_input_standardization(self) -> None:
        fold = getattr(self.inner, "fold_input_standardization", None)
        if callable(fold):
            fold()


@dataclass(frozen=True)
class HeadPlan:
    name: str
    shape: tuple[int, ...]  # the teacher's per-sample shape
    anchor: bool  # read the encoder's feature map (AnchorHead or GridHead), not the trunk
    grid: AnchorGrid | None = None  # a GridHead on this inferred grid

    @property
    def head_kind(self) -> str:
        return "grid" if self.grid is not None else ("anchor" if self.anchor else "dense")


class MultiStudent(nn.Module):
    """student(*inputs) -> tuple of raw outputs (see module docstring)."""

    def __init__(self, signature: ModelSignature, width: int, depth: int, vocab: Mapping[str, int],
                 stats: InputStats, grids: Mapping[int, AnchorGrid] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.grids = dict(grids or {})  # anchor count -> the teacher's inferred anchor grid
        self.input_names = signature.input_names
        self.kinds = tuple(input_kind(s) for s in signature.inputs)
        token_positions = [i for i, k in enumerate(self.kinds) if k == "tokens"]
        mask_positions = [i for i, k in enumerate(self.kinds) if k == "mask"]
        # each mask belongs to the first token input of its length
        self.mask_of: dict[int, int] = {}
        for mi in mask_positions:
            length = signature.inputs[mi].shape[1]
            owner = next((t for t in token_positions if signature.inputs[t].shape[1] == length), None)
            if owner is None:
                raise InputError(f"mask input {signature.inputs[mi].name!r} has no token input of its length")
            self.mask_of[owner] = mi
        encoders: dict[str, nn.Module] = {}
        dims: dict[str, tuple[int, int]] = {}  # encoder -> (channels, positions of its feature map)
        self.encoded: list[int] = []
        for i, spec in enumerate(signature.inputs):
            kind = self.kinds[i]
            per = _known(spec.per_sample, f"input {spec.name!r}")
            enc: ConvEncoder | TokenEncoder | VectorEncoder
            if kind == "image":
                enc = ConvEncoder("ds_cnn2d", per, width, depth, channels_last=spec.layout == "NHWC")
            elif kind == "sequence":
                enc = ConvEncoder("ds_cnn1d", per, width, depth, channels_last=spec.layout == "NLC")
            elif kind == "tokens":
                seen = int((stats.get(spec.name) or {}).get("max_id", 1 << 30)) + 1
                enc = TokenEncoder(
                    per[0], vocab[spec.name], width, depth, masked=i in self.mask_of, hashed=seen > vocab[spec.name]
                )
            elif kind == "vector":
                enc = VectorEncoder(per[0], width, depth, stats.get(spec.name))
            else:
                continue
            encoders[f"in{i}"] = enc
            dims[f"in{i}"] = (enc.channels, enc.positions)
            self.encoded.append(i)
        self.encoders = nn.ModuleDict(encoders)
        pooled = sum(c for c, _ in dims.values())
        hidden = max(width, 16)
        # the feature map the per-anchor heads read: the first encoder that has one
        self.map_key = next((k for k, (_, positions) in dims.items() if positions > 1), None)
        fmap = dims[self.map_key] if self.map_key is not None else None
        map_enc = encoders.get(self.map_key) if self.map_key is not None else None
        image_map = isinstance(map_enc, ConvEncoder) and not map_enc.is_1d
        heads: dict[str, nn.Module] = {}
        self.plans: list[HeadPlan] = []
        for j, out in enumerate(signature.outputs):
            if out.kind in UNTRAINED_KINDS:
                continue
            shape = _known(out.per_sample, f"output {out.name!r}")
            anchors = math.prod(shape[:-1]) if len(shape) >= 2 else 1
            anchor = fmap is not None and anchors > 1
            grid = self.grids.get(anchors) if anchor and image_map and len(shape) >= 2 else None
            if grid is not None:
                assert isinstance(map_enc, ConvEncoder)
                heads[f"out{j}"] = GridHead(grid, map_enc.taps, shape[-1])
            elif anchor:
                assert fmap is not None
                heads[f"out{j}"] = AnchorHead(fmap[0], fmap[1], anchors, shape[-1])
            else:
                heads[f"out{j}"] = nn.Linear(hidden, max(1, math.prod(shape)))
            self.plans.append(HeadPlan(f"out{j}", shape, anchor, grid))
        if not self.plans:
            raise InputError("the teacher has no output a student can be trained on")
        self.heads = nn.ModuleDict(heads)
        self.uses_grid = any(p.grid is not None for p in self.plans)
        # a trunk only when a head reads it (grid / anchor heads read the feature map)
        self.trunk = (
            nn.Sequential(nn.Linear(pooled, hidden), nn.ReLU()) if any(not p.anchor for p in self.plans) else None
        )

    def init_heads_from_teacher(
        self, signature: ModelSignature, teacher_outputs: Mapping[str, np.ndarray] | None
    ) -> list[str]:
        """Start each grid head's output bias at the teacher's mean per (anchor-in-cell, value) of its
        level, for sigmoid scores the logit of the mean probability (the prior-probability init of
        Lin et al. 2017, arXiv:1708.02002): an untrained head otherwise says 0.5 at hundreds of anchors
        the teacher calls empty and outputs boxes far from the teacher's scale, and the few optimiser
        steps a small transfer set gives are spent unlearning that. Returns the outputs it set."""
        done: list[str] = []
        for plan in self.plans:
            spec = signature.outputs[int(plan.name[3:])]
            arr = (teacher_outputs or {}).get(spec.name)
            if plan.grid is None or arr is None or arr.shape[0] == 0:
                continue
            head = self.heads[plan.name]
            assert isinstance(head, GridHead)
            values = np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], plan.grid.anchors, -1)
            if spec.kind == "sigmoid_logits":
                values = 1.0 / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))
            mean = values.mean(0)  # (A, d)
            for idx, conv in zip(plan.grid.cell_indices(), head.convs, strict=True):
                per = mean[idx].mean(axis=(0, 1))  # (k, d): channel k * d + v
                if spec.kind == "sigmoid_logits":
                    per = np.clip(per, 1e-4, 1 - 1e-4)
                    per = np.log(per / (1 - per))
                assert isinstance(conv, nn.Sequential)
                last = conv[-1]
                assert isinstance(last, nn.Conv2d) and last.bias is not None
                bias = last.bias
                with torch.no_grad():
                    bias.copy_(torch.as_tensor(per.reshape(-1), dtype=bias.dtype))
            done.append(spec.name)
        return done

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pooled: list[torch.Tensor] = []
        maps: dict[str, torch.Tensor] = {}
        pyramid: list[torch.Tensor] = []  # the grid heads' encoder maps, fine to coarse
        for i in self.encoded:
            key = f"in{i}"
            enc = self.encoders[key]
            if self.kinds[i] == "tokens":
                mi = self.mask_of.get(i)
                p, m = enc(inputs[i], inputs[mi] if mi is not None else None)
            elif self.uses_grid and key == self.map_key:
                assert isinstance(enc, ConvEncoder)
                p, pyramid = enc.forward_maps(inputs[i])
                m = pyramid[-1].flatten(2)
            else:
                p, m = enc(inputs[i])
            pooled.append(p)
            if m is not None:
                maps[key] = m
        z = None
        if self.trunk is not None:
            z = self.trunk(torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0])
        outs: list[torch.Tensor] = []
        for plan in self.plans:
            head = self.heads[plan.name]
            if plan.grid is not None:
                y = head(pyramid)
            elif plan.anchor and self.map_key is not None:
                y = head(maps[self.map_key])
            else:
                assert z is not None
                y = head(z)
            outs.append(y.reshape(y.shape[0], *plan.shape))
        return tuple(outs)


def anchor_grids(
    signature: ModelSignature, teacher_outputs: Mapping[str, np.ndarray] | None
) -> tuple[dict[int, AnchorGrid], dict[str, str]]:
    """The anchor grids (anchor count -> grid) inferred from the teacher's cached outputs for the
    per-anchor outputs the image encoder's map feeds, and per such output why it gets a GridHead or
    keeps the learned AnchorHead."""
    from edgedistill.workers.steps.anchor_grid import infer_grids, per_anchor_count

    mapped = next((s for s in signature.inputs if input_kind(s) in ("image", "sequence", "tokens")), None)
    if mapped is None or input_kind(mapped) != "image" or any(d is None for d in mapped.per_sample):
        return {}, {}
    per = [int(d) for d in mapped.per_sample if d is not None]
    hw = (per[0], per[1]) if mapped.layout == "NHWC" else (per[1], per[2])
    found = infer_grids(signature, teacher_outputs, hw)
    grids = {a: r.grid for a, r in found.items() if r.grid is not None}
    notes: dict[str, str] = {}
    for out in signature.outputs:
        if out.kind in UNTRAINED_KINDS or any(d is None for d in out.per_sample) or len(out.per_sample) < 2:
            continue
        r = found.get(per_anchor_count([int(d) for d in out.per_sample if d is not None]))
        if r is not None:
            head = "grid head on" if r.grid is not None else "learned anchor assignment (AnchorHead):"
            notes[out.name] = f"{head} {r.reason}"
    return grids, notes


# --------------------------------------------------------------------------------------------------
# sizing
# --------------------------------------------------------------------------------------------------


def example_inputs(signature: ModelSignature, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero float inputs / zero (valid) ids / all-ones masks of the teacher's per-sample shapes."""
    out = []
    for spec in signature.inputs:
        shape = (batch, *_known(spec.per_sample, f"input {spec.name!r}"))
        if input_kind(spec) == "mask":
            out.append(torch.ones(shape, dtype=torch.int64))
        elif spec.dtype in FLOAT_DTYPES:
            out.append(torch.zeros(shape))
        else:
            out.append(torch.zeros(shape, dtype=torch.int64))
    return tuple(out)


def measure(module: nn.Module, signature: ModelSignature) -> StudentEstimate:
    """Parameters, MACs (torch's FLOP counter on one sample / 2), int8 file and arena estimates from
    the built module: weights 1 byte, biases and embedding tables 4, per-tensor overhead as
    students.estimate fits it; the arena as the largest input + output of any layer in int8 plus
    per-tensor bookkeeping."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    biases = sum(p.numel() for n, p in module.named_parameters() if n.endswith("bias"))
    tensors = sum(1 for _ in module.parameters()) + 2 * len(signature.inputs) + len(signature.outputs)
    live = 0

    def hook(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        nonlocal live
        ins = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
        outs = out.numel() if isinstance(out, torch.Tensor) else 0
        live = max(live, ins + outs)

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = module.training
    module.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(*example_inputs(signature))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    macs = int(counter.get_total_flops() // 2)
    # litert-torch's PT2E quantizer leaves embedding tables float (EMBEDDING_LOOKUP on float32 weights)
    tables = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Embedding))
    int8_bytes = (
        (params - biases - tables) + 4 * (biases + tables) + _TFLITE_BYTES_PER_TENSOR * tensors + _TFLITE_FIXED_BYTES
    )
    arena = live + 80 * tensors + 2048
    return StudentEstimate(params=params, macs=macs, est_int8_bytes=int(int8_bytes), est_arena_bytes=int(arena))


def _vocab_sizes(signature: ModelSignature, stats: InputStats, width: int, profile: DeviceProfile) -> dict[str, int]:
    tokens = [s for s in signature.inputs if input_kind(s) == "tokens"]
    sizes: dict[str, int] = {}
    for spec in tokens:
        seen = int(stats.get(spec.name, {}).get("max_id", 255)) + 1
        cap = int(
            VOCAB_FLASH_SHARE * FLASH_HEADROOM * profile.budgets.max_model_bytes / (4 * width * max(1, len(tokens)))
        )
        sizes[spec.name] = max(MIN_VOCAB, min(seen, cap))
    return sizes


@dataclass(frozen=True)
class MultiChoice:
    module: nn.Module
    width: int
    depth: int
    vocab: dict[str, int]
    estimate: StudentEstimate
    reason: str

    def _grid_state(self, signature: ModelSignature) -> dict[str, Any]:
        grids = {
            signature.outputs[int(p.name[3:])].name: p.grid.as_state()
            for p in getattr(self.module, "plans", [])
            if p.grid is not None
        }
        return {"anchor_grids": grids} if grids else {}

    def as_state(self, signature: ModelSignature) -> dict[str, Any]:
        return {
            "family": "multi",
            "encoders": {s.name: input_kind(s) for s in signature.inputs},
            "heads": {signature.outputs[int(p.name[3:])].name: p.head_kind for p in getattr(self.module, "plans", [])},
            **self._grid_state(signature),
            "width": self.width,
            "depth": self.depth,
            "vocab": self.vocab,
            "params": self.estimate.params,
            "macs": self.estimate.macs,
            "est_int8_bytes": self.estimate.est_int8_bytes,
            "est_arena_bytes": self.estimate.est_arena_bytes,
            "chosen_because": self.reason,
        }


def replace_reason(choice: MultiChoice, reason: str) -> MultiChoice:
    return MultiChoice(choice.module, choice.width, choice.depth, choice.vocab, choice.estimate, reason)


def multi_candidates(
    signature: ModelSignature,
    profile: DeviceProfile,
    stats: InputStats,
    *,
    width: int | None = None,
    depth: int | None = None,
    most_params: int | None = None,
    grids: Mapping[int, AnchorGrid] | None = None,
) -> list[tuple[int, int, dict[str, int], StudentEstimate]]:
    """(width, depth, vocab sizes, measured estimate) of every grid size within the profile's budgets
    and at most most_params parameters; each is built once to be measured, and wider ones of a depth
    are not built once one is over most_params (parameters grow with width)."""
    out = []
    for d in (depth,) if depth else DEPTHS:
        for w in (width,) if width else WIDTHS:
            vocab = _vocab_sizes(signature, stats, w, profile)
            est = measure(MultiStudent(signature, w, d, vocab, stats, grids), signature)
            if most_params is not None and est.params > most_params:
                break
            if budget_violation(est, profile) is None:
                out.append((w, d, vocab, est))
    return out


def choose_multi(
    signature: ModelSignature,
    profile: DeviceProfile,
    stats: InputStats,
    *,
    teacher_params: int | None = None,
    width: int | None = None,
    depth: int | None = None,
    grids: Mapping[int, AnchorGrid] | None = None,
) -> MultiChoice:
    """The largest MultiStudent (by parameters) within the profile's budgets and TEACHER_PARAM_RATIO
    times smaller than the teacher, at least PREFERRED_MIN_DEPTH deep when one is; candidates are
    built and measured from the largest down, so only a few are built."""
    widths = (width,) if width else WIDTHS
    depths = (depth,) if depth else DEPTHS
    limit = teacher_params // TEACHER_PARAM_RATIO if teacher_params else None
    grid = sorted(((w, d) for w in widths for d in depths), key=lambda wd: (wd[0] * wd[1], wd[0]), reverse=True)
    smallest: tuple[int, int, StudentEstimate] | None = None
    small_fit: MultiChoice | None = None  # the largest within budget and teacher ratio
    any_fit: MultiChoice | None = None  # the smallest within budget
    for w, d in grid:
        vocab = _vocab_sizes(signature, stats, w, profile)
        module = MultiStudent(signature, w, d, vocab, stats, grids)
        est = measure(module, signature)
        smallest = (w, d, est)
        if budget_violation(est, profile) is not None:
            continue
        small = limit is None or est.params <= limit
        bounds = f"the budgets of {profile.name}"
        if small and limit is not None:
            bounds += f" and <= {limit:,} parameters (teacher / {TEACHER_PARAM_RATIO})"
        choice = MultiChoice(module, w, d, vocab, est, f"largest multi-input/-output student within {bounds}")
        if small and (d >= PREFERRED_MIN_DEPTH or depth is not None):
            return choice
        if small and small_fit is None:
            small_fit = choice
        any_fit = choice
    if small_fit is not None:
        return small_fit
    if any_fit is not None:
        return replace_reason(any_fit, f"the smallest student within the budgets of {profile.name}; "
                              f"it has more than teacher / {TEACHER_PARAM_RATIO} parameters")  # fmt: skip
    assert smallest is not None
    w, d, est = smallest
    raise BudgetError(
        f"no student fits profile {profile.name!r}: the smallest (width {w}, depth {d}) needs "
        f"{budget_violation(est, profile)}"
    )
