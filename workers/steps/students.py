"""Student families, their cost estimates and the automatic choice of size for a device profile.

- image (C, H, W): MobileNet-style depthwise-separable CNN (Howard et al. 2017, arXiv:1704.04861):
  Conv-BN-ReLU stem, `depth` blocks of depthwise 3x3 + pointwise 1x1 (each BN + ReLU), global
  average pool (a MEAN op), Linear. BN folds into the convolutions at export. Two more dimensions,
  searched by method nas: `kernel` (the depthwise kernel; default 3, sequences 5) and `expansion`
  e (MobileNetV2's inverted bottleneck, Sandler et al. 2018, arXiv:1801.04381: a 1x1 conv widens to
  e x channels before the depthwise conv; e = 1, the default, is the plain block above). Blocks keep
  a ReLU after the projection so every block ends in the same Conv-BN-ReLU.
- sequence (C, T): the same blocks on (N, C, 1, T) with (1, 5) kernels, as DS-CNN does for keyword
  spotting (Zhang et al. 2017, arXiv:1711.07128); CONV_2D / DEPTHWISE_CONV_2D are what TFLM's
  optimised kernels cover, so no CONV_1D-style lowering is needed.
- vector (F,): MLP of `depth` hidden Linear+ReLU layers with an input standardisation that is folded
  into the first Linear after training (fold_input_standardization), so no extra op is exported.

Every layer is planned first (plan_layers) so parameters, MACs, int8 size and TFLM arena can be
estimated without building or running the network; the module is built from the same plan.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from edgedistill.contracts.errors import BudgetError, InputError
from edgedistill.contracts.profiles.schema import DeviceProfile

Family = Literal["ds_cnn2d", "ds_cnn1d", "mlp"]
FAMILY_BY_MODALITY: dict[str, Family] = {"image": "ds_cnn2d", "sequence": "ds_cnn1d", "vector": "mlp"}

CNN_WIDTHS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
CNN_DEPTHS = (1, 2, 3, 4, 5, 6)
MLP_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
MLP_DEPTHS = (1, 2, 3)
MAX_CHANNEL_MULTIPLIER = 8  # channels double at each downsampling, up to 8x the stem width
TEACHER_PARAM_RATIO = 8  # aim for at least 8x fewer parameters than the teacher
# ...and, when a deep enough student allows it, an int8 artifact at least 25x smaller than the teacher's
# file: per-tensor overhead (int32 biases, per-channel scales) makes 8x parameters only ~23x bytes.
TEACHER_BYTES_RATIO = 25
PREFERRED_MIN_DEPTH: dict[str, int] = {"ds_cnn2d": 3, "ds_cnn1d": 3, "mlp": 2}
# Leave headroom under the hard budgets: the estimates are within ~10-20% of measured figures.
FLASH_HEADROOM = 0.9
ARENA_HEADROOM = 0.85

# TFLite flatbuffer and TFLM bookkeeping, fitted (least squares) to litert-torch full-int8 exports of
# these students with debug tensor names stripped, as export_tflite writes them, and to arenas measured
# by the tflite-micro interpreter: within ~2% on flash and ~5% on arena for 10 students of every family.
_TFLITE_FIXED_BYTES = 1200
_TFLITE_BYTES_PER_TENSOR = 96
_TFLITE_BYTES_PER_CHANNEL = 22  # weight and bias scales (float) + zero points (int64), per channel
_ARENA_FIXED_BYTES = 1024
_ARENA_BYTES_PER_TENSOR = 80
_ARENA_BYTES_PER_CHANNEL = 8  # per-channel requantisation multiplier + shift (int32 each)
_ARENA_VERSION_MARGIN = 1024


DEFAULT_KERNEL: dict[str, int] = {"ds_cnn2d": 3, "ds_cnn1d": 5, "mlp": 1}


@dataclass(frozen=True)
class StudentArch:
    family: Family
    input_shape: tuple[int, ...]
    num_outputs: int
    width: int
    depth: int
    kernel: int | None = None  # depthwise kernel; None: DEFAULT_KERNEL of the family (set on creation)
    expansion: int = 1  # inverted-bottleneck expansion of each block (CNN); 1: none

    def __post_init__(self) -> None:
        # one spelling per architecture: CNNs carry their kernel, MLPs neither kernel nor expansion
        if self.family == "mlp":
            object.__setattr__(self, "kernel", None)
            object.__setattr__(self, "expansion", 1)
        elif self.kernel is None:
            object.__setattr__(self, "kernel", DEFAULT_KERNEL[self.family])

    @property
    def dw_kernel(self) -> int:
        return self.kernel if self.kernel is not None else DEFAULT_KERNEL[self.family]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["kernel"] = self.dw_kernel if self.family != "mlp" else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudentArch:
        kernel = d.get("kernel")
        return cls(
            family=d["family"],
            input_shape=tuple(int(v) for v in d["input_shape"]),
            num_outputs=int(d["num_outputs"]),
            width=int(d["width"]),
            depth=int(d["depth"]),
            kernel=None if kernel is None or d["family"] == "mlp" else int(kernel),
            expansion=int(d.get("expansion") or 1),
        )

    def label(self) -> str:
        if self.family == "mlp":
            return f"mlp w{self.width} d{self.depth}"
        return f"{self.family} w{self.width} d{self.depth} k{self.dw_kernel} e{self.expansion}"


@dataclass(frozen=True)
class Layer:
    kind: Literal["conv", "linear", "pool"]
    cin: int
    cout: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    groups: int = 1
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)

    @property
    def weights(self) -> int:
        if self.kind == "pool":
            return 0
        return self.cout * (self.cin // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def biases(self) -> int:
        return 0 if self.kind == "pool" else self.cout

    @property
    def macs(self) -> int:
        return self.weights * self.out_hw[0] * self.out_hw[1]

    @property
    def in_elems(self) -> int:
        return self.cin * self.in_hw[0] * self.in_hw[1]

    @property
    def out_elems(self) -> int:
        return self.cout * self.out_hw[0] * self.out_hw[1]


@dataclass(frozen=True)
class StudentEstimate:
    params: int  # deployed parameters (BatchNorm folded into the convolutions)
    macs: int  # per inference
    est_int8_bytes: int
    est_arena_bytes: int  # tensor arena to reserve: TFLM's own use + CMSIS-NN scratch + margin


def _out(n: int, k: int, s: int) -> int:
    return (n + 2 * (k // 2) - k) // s + 1


def plan_layers(arch: StudentArch) -> list[Layer]:
    """The deployed layers (after BN folding) of a student, with their activation sizes."""
    if arch.family == "mlp":
        (features,) = arch.input_shape
        layers, cin = [], features
        for _ in range(arch.depth):
            layers.append(Layer("linear", cin, arch.width))
            cin = arch.width
        layers.append(Layer("linear", cin, arch.num_outputs))
        return layers

    if arch.family == "ds_cnn2d":
        c, h, w = arch.input_shape
        k = (3, 3)
        dk = (arch.dw_kernel, arch.dw_kernel)
        stem_stride = (2, 2) if min(h, w) >= 32 else (1, 1)
    else:
        c, t = arch.input_shape
        h, w = 1, t
        k = (1, 5)
        dk = (1, arch.dw_kernel)
        stem_stride = (1, 2) if t >= 64 else (1, 1)

    def conv(cin: int, cout: int, kern: tuple[int, int], stride: tuple[int, int], groups: int) -> Layer:
        nonlocal h, w
        oh, ow = _out(h, kern[0], stride[0]), _out(w, kern[1], stride[1])
        layer = Layer("conv", cin, cout, kern, stride, groups, (h, w), (oh, ow))
        h, w = oh, ow
        return layer

    layers = [conv(c, arch.width, k, stem_stride, 1)]
    ch, max_ch = arch.width, arch.width * MAX_CHANNEL_MULTIPLIER
    for i in range(arch.depth):
        spatial = w if arch.family == "ds_cnn1d" else min(h, w)
        down = i % 2 == 0 and spatial >= 4
        stride = ((1, 2) if arch.family == "ds_cnn1d" else (2, 2)) if down else (1, 1)
        cout = min(ch * 2, max_ch) if down else ch
        mid = ch * arch.expansion
        if arch.expansion > 1:
            layers.append(conv(ch, mid, (1, 1), (1, 1), 1))  # expand
        layers.append(conv(mid, mid, dk, stride, mid))  # depthwise
        layers.append(conv(mid, cout, (1, 1), (1, 1), 1))  # pointwise (project)
        ch = cout
    layers.append(Layer("pool", ch, ch, in_hw=(h, w), out_hw=(1, 1)))
    layers.append(Layer("linear", ch, arch.num_outputs))
    return layers


def _padded_elems(layer: Layer) -> int:
    """litert-torch exports a strided conv with an explicit PAD op in front (stride-1 convs pad
    implicitly); 0 when the layer has none."""
    if layer.kind != "conv" or layer.stride == (1, 1):
        return 0
    ph, pw = layer.kernel[0] // 2, layer.kernel[1] // 2
    if ph == pw == 0:
        return 0
    return layer.cin * (layer.in_hw[0] + 2 * ph) * (layer.in_hw[1] + 2 * pw)


def estimate(arch: StudentArch) -> StudentEstimate:
    layers = plan_layers(arch)
    params = sum(layer.weights + layer.biases for layer in layers)
    macs = sum(layer.macs for layer in layers)
    weighted = [layer for layer in layers if layer.kind != "pool"]
    channels = sum(layer.cout for layer in weighted)
    pads = [_padded_elems(layer) for layer in layers]
    # input + (weights, bias, output) per weighted layer + one output per PAD and per pool
    n_tensors = 1 + 3 * len(weighted) + sum(1 for p in pads if p) + (len(layers) - len(weighted))
    int8_bytes = (
        sum(layer.weights for layer in weighted)
        + 4 * sum(layer.biases for layer in weighted)
        + _TFLITE_BYTES_PER_CHANNEL * channels
        + _TFLITE_BYTES_PER_TENSOR * n_tensors
        + _TFLITE_FIXED_BYTES
    )
    # TFLM plans int8 activations so that only an op's input and output are live at once; a PAD
    # op sits between a strided conv and its input.
    live = 0
    for layer, padded in zip(layers, pads, strict=True):
        if padded:
            live = max(live, layer.in_elems + padded, padded + layer.out_elems)
        else:
            live = max(live, layer.in_elems + layer.out_elems)
    persistent = _ARENA_FIXED_BYTES + _ARENA_BYTES_PER_TENSOR * n_tensors + _ARENA_BYTES_PER_CHANNEL * channels
    # What firmware reserves on top of what TFLM's reference kernels use: the largest CMSIS-NN scratch
    # buffer (4 * kernel area * input channels for a conv, 4 * outputs for a fully connected layer)
    # and a margin for other TFLM versions, as the MCU export step computes it from the real model.
    # A single-channel stem is exported as a DEPTHWISE_CONV_2D with a channel multiplier, whose
    # filter has the output channels where a conv has the input ones.
    scratch = max(
        (
            4 * lay.kernel[0] * lay.kernel[1] * (lay.cout if lay.cin == 1 else lay.cin)
            if lay.kind == "conv"
            else 4 * lay.cout
            for lay in weighted
        ),
        default=0,
    )
    arena = live + persistent + scratch + _ARENA_VERSION_MARGIN
    return StudentEstimate(params=params, macs=macs, est_int8_bytes=int(int8_bytes), est_arena_bytes=int(arena))


# --------------------------------------------------------------------------------------------------
# torch modules
# --------------------------------------------------------------------------------------------------


class GlobalAvgPool(nn.Module):
    """Mean over the spatial axes; exported as a single MEAN op (TFLM-supported). keepdim + flatten:
    a plain mean(dim=(2, 3)) makes litert-torch add a TRANSPOSE back to NCHW before the MEAN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True).flatten(1)


class DSCNN(nn.Module):
    def __init__(self, arch: StudentArch) -> None:
        super().__init__()
        self.arch = arch
        self.is_1d = arch.family == "ds_cnn1d"
        layers = plan_layers(arch)
        body: list[nn.Module] = []
        for layer in layers:
            if layer.kind == "conv":
                pad = (layer.kernel[0] // 2, layer.kernel[1] // 2)
                body += [
                    nn.Conv2d(layer.cin, layer.cout, layer.kernel, layer.stride, pad, groups=layer.groups, bias=False),
                    nn.BatchNorm2d(layer.cout),
                    nn.ReLU(),
                ]
        self.features = nn.Sequential(*body)
        self.pool = GlobalAvgPool()
        head = layers[-1]
        self.classifier = nn.Linear(head.cin, head.cout)

    @property
    def export_input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape to export with. Sequence students export on (C, 1, T): with
        litert_torch.to_channel_last_io the TFLite input becomes (1, T, C), byte-for-byte the
        channel-last sequence, and no TRANSPOSE/RESHAPE ops are added (3-D inputs get both)."""
        if self.is_1d:
            c, t = self.arch.input_shape
            return (c, 1, t)
        return self.arch.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(2)  # (N, C, T) -> (N, C, 1, T): 2-D kernels, which TFLM optimises
        return self.classifier(self.pool(self.features(x)))


class Standardize(nn.Module):
    """x * scale + shift with per-feature constants taken from the training data."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("shift", torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class MLP(nn.Module):
    def __init__(self, arch: StudentArch) -> None:
        super().__init__()
        self.arch = arch
        layers = plan_layers(arch)
        self.standardize: nn.Module = Standardize(arch.input_shape[0])
        body: list[nn.Module] = []
        for layer in layers[:-1]:
            body += [nn.Linear(layer.cin, layer.cout), nn.ReLU()]
        body.append(nn.Linear(layers[-1].cin, layers[-1].cout))
        self.body = nn.Sequential(*body)

    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        assert isinstance(self.standardize, Standardize)
        self.standardize.scale.copy_(1.0 / std)
        self.standardize.shift.copy_(-mean / std)
        # Kept outside the state dict: deployment may need them after the op is folded away.
        self.input_mean, self.input_std = mean.detach().cpu().clone(), std.detach().cpu().clone()

    @torch.no_grad()
    def fold_input_standardization(self) -> None:
        """W' = W * scale (per input column), b' = b + W @ shift; then drop the standardisation op."""
        if not isinstance(self.standardize, Standardize):
            return
        first = self.body[0]
        assert isinstance(first, nn.Linear)
        scale, shift = self.standardize.scale, self.standardize.shift
        assert first.bias is not None
        first.bias.add_(first.weight @ shift)
        first.weight.mul_(scale)
        self.standardize = nn.Identity()

    @torch.no_grad()
    def standardized_input_module(self) -> tuple[torch.Tensor, torch.Tensor, nn.Module] | None:
        """(mean, std, module) with module((x - mean) / std) == self(x); None without statistics.

        An int8 input tensor has one scale for all features, so raw features of very different
        magnitudes lose the small ones; deployments that can standardise first should export this
        module and apply (x - mean) / std before quantising the input."""
        mean, std = getattr(self, "input_mean", None), getattr(self, "input_std", None)
        if mean is None or std is None:
            return None
        body = copy.deepcopy(self.body).cpu().eval()
        if not isinstance(self.standardize, Standardize):  # folded: undo it on the copy
            first = body[0]
            assert isinstance(first, nn.Linear) and first.bias is not None
            first.bias.add_(first.weight @ mean)
            first.weight.mul_(std)
        return mean.clone(), std.clone(), body

    @property
    def export_input_shape(self) -> tuple[int, ...]:
        return self.arch.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x))


class FloatStandardized(nn.Module):
    """body((x - mean) / std) with the standardisation kept as float ops at export. SUB and DIV are ops
    litert-torch's PT2EQuantizer does not annotate, so they stay float in front of the QUANTIZE op (a
    MUL would be quantised; its module-type/-name exclusions do not match torch.export's module stacks,
    which hold strings), and the int8 layers see standardised values (see export_tflite)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, body: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def standardized_export(student: nn.Module, float_io: bool) -> tuple[nn.Module, dict[str, list[float]] | None, bool]:
    """(module to convert, input standardisation the int8 input carries or None, whether the module has
    float pre-processing) for an MLP with input statistics; (student, None, False) for other students."""
    get = getattr(student, "standardized_input_module", None)
    found = get() if callable(get) else None
    if found is None:
        return student, None, False
    mean, std, body = found
    if float_io:
        return FloatStandardized(mean, std, body).eval(), None, True
    return body.eval(), {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}, False


def build_module(arch: StudentArch) -> nn.Module:
    return MLP(arch) if arch.family == "mlp" else DSCNN(arch)


def seeded_module(arch: StudentArch, x_train: Any, seed: int) -> nn.Module:
    """build_module after torch.manual_seed(seed); an MLP also takes the training inputs' statistics
    (data-free runs have no inputs yet: then none)."""
    torch.manual_seed(seed)
    module = build_module(arch)
    if isinstance(module, MLP) and x_train.shape[0] > 1:
        x = torch.as_tensor(x_train)
        module.set_input_statistics(x.mean(0), x.std(0))
    return module


# --------------------------------------------------------------------------------------------------
# choosing a size
# --------------------------------------------------------------------------------------------------


def _grid(family: Family) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (MLP_WIDTHS, MLP_DEPTHS) if family == "mlp" else (CNN_WIDTHS, CNN_DEPTHS)


def budget_violation(est: StudentEstimate, profile: DeviceProfile) -> str | None:
    """The first profile budget the estimate breaks, as a readable sentence, or None."""
    b = profile.budgets
    if est.est_int8_bytes > FLASH_HEADROOM * b.max_model_bytes:
        return f"~{est.est_int8_bytes:,} int8 bytes, over {FLASH_HEADROOM:.0%} of max_model_bytes={b.max_model_bytes:,}"
    if b.max_ram_bytes is not None and est.est_arena_bytes > ARENA_HEADROOM * b.max_ram_bytes:
        return (
            f"~{est.est_arena_bytes:,} bytes of tensor arena, over {ARENA_HEADROOM:.0%} of "
            f"max_ram_bytes={b.max_ram_bytes:,}"
        )
    if b.max_macs is not None and est.macs > b.max_macs:
        return f"{est.macs:,} MACs per inference, over max_macs={b.max_macs:,}"
    return None


@dataclass(frozen=True)
class Choice:
    arch: StudentArch
    estimate: StudentEstimate
    reason: str
    warnings: tuple[str, ...] = ()

    def as_state(self) -> dict[str, Any]:
        return {
            **self.arch.to_dict(),
            "params": self.estimate.params,
            "macs": self.estimate.macs,
            "est_int8_bytes": self.estimate.est_int8_bytes,
            "est_arena_bytes": self.estimate.est_arena_bytes,
            "chosen_because": self.reason,
        }


def grid_candidates(
    family: Family,
    input_shape: tuple[int, ...],
    num_outputs: int,
    *,
    width: int | None = None,
    depth: int | None = None,
    kernel: int | None = None,
    expansion: int | None = None,
) -> list[tuple[StudentArch, StudentEstimate]]:
    """Every (width, depth) of the family's grid, pinned dimensions fixed, with its estimate; by parameters."""
    widths, depths = _grid(family)
    if width is not None:
        widths = (width,)
    if depth is not None:
        depths = (depth,)
    candidates = []
    for w in widths:
        for d in depths:
            arch = StudentArch(
                family,
                tuple(input_shape),
                num_outputs,
                w,
                d,
                kernel=None if family == "mlp" else kernel,
                expansion=1 if family == "mlp" else (expansion or 1),
            )
            candidates.append((arch, estimate(arch)))
    candidates.sort(key=lambda c: (c[1].params, -c[1].macs))
    return candidates


def choose_arch(
    *,
    modality: str,
    input_shape: tuple[int, ...],
    num_outputs: int,
    profile: DeviceProfile,
    teacher_params: int | None,
    width: int | None = None,
    depth: int | None = None,
    teacher_bytes: int | None = None,
    kernel: int | None = None,
    expansion: int | None = None,
) -> Choice:
    """The largest student (by parameters) that fits the profile's budgets and is at least
    TEACHER_PARAM_RATIO times smaller than the teacher, at least PREFERRED_MIN_DEPTH deep when such
    a student exists (a wide single block has the parameters but not the depth distillation needs);
    among those, one whose int8 file is TEACHER_BYTES_RATIO times smaller than teacher_bytes when one
    exists; width/depth (and kernel/expansion, default the family's plain block) pin those dimensions."""
    family = FAMILY_BY_MODALITY.get(modality)
    if family is None:
        raise InputError(f"no student family for {modality!r} data")
    candidates = grid_candidates(
        family, input_shape, num_outputs, width=width, depth=depth, kernel=kernel, expansion=expansion
    )
    fitting = [c for c in candidates if budget_violation(c[1], profile) is None]
    if not fitting:
        arch, est = candidates[0]
        pinned = f" with width {width}" if width else ""
        pinned += f"{' and' if width else ' with'} depth {depth}" if depth else ""
        raise BudgetError(
            f"no {family} student{pinned} fits profile {profile.name!r}: the smallest "
            f"(width {arch.width}, depth {arch.depth}) needs {budget_violation(est, profile)}"
        )
    limit = teacher_params // TEACHER_PARAM_RATIO if teacher_params else None
    small_enough = [c for c in fitting if limit is None or c[1].params <= limit]
    warnings: list[str] = []
    deep_enough = [c for c in small_enough if c[0].depth >= PREFERRED_MIN_DEPTH[family]]
    byte_limit = teacher_bytes // TEACHER_BYTES_RATIO if teacher_bytes else None
    compact = [c for c in deep_enough if byte_limit is None or c[1].est_int8_bytes <= byte_limit]
    if compact:
        deep_enough = compact
    else:
        byte_limit = None
    if deep_enough and depth is None:
        arch, est = deep_enough[-1]
    elif small_enough:
        arch, est = small_enough[-1]
    else:
        arch, est = fitting[0]
        warnings.append(
            f"the smallest student that fits has {est.params:,} parameters, not {TEACHER_PARAM_RATIO}x fewer "
            f"than the teacher's {teacher_params:,}"
        )
    if width is not None and depth is not None:
        reason = f"width {width} and depth {depth} set in the options"
    else:
        bounds = [f"the budgets of {profile.name}"]
        if limit is not None:
            bounds.append(f"<= {limit:,} parameters (teacher / {TEACHER_PARAM_RATIO})")
        if byte_limit is not None and arch.depth >= PREFERRED_MIN_DEPTH[family]:
            bounds.append(f"<= {byte_limit:,} int8 bytes (teacher file / {TEACHER_BYTES_RATIO})")
        reason = f"largest {family} within " + " and ".join(bounds)
        if depth is None and arch.depth >= PREFERRED_MIN_DEPTH[family]:
            reason += f", at least {PREFERRED_MIN_DEPTH[family]} deep"
    return Choice(arch, est, reason, tuple(warnings))


def shrink(arch: StudentArch) -> StudentArch | None:
    """The next smaller student: one width step down, else one block fewer; None at the smallest."""
    widths, depths = _grid(arch.family)
    smaller_w = [w for w in widths if w < arch.width]
    if smaller_w:
        return replace(arch, width=smaller_w[-1])
    smaller_d = [d for d in depths if d < arch.depth]
    if smaller_d:
        return replace(arch, depth=smaller_d[-1])
    return None


def fits_after_correction(arch: StudentArch, profile: DeviceProfile, corrections: dict[str, float]) -> bool:
    """Whether arch fits when its estimates are scaled by measured/estimated ratios
    (keys est_int8_bytes / est_arena_bytes), as learned from an artifact that was over budget."""
    est = estimate(arch)
    scaled = StudentEstimate(
        params=est.params,
        macs=est.macs,
        est_int8_bytes=math.ceil(est.est_int8_bytes * corrections.get("est_int8_bytes", 1.0)),
        est_arena_bytes=math.ceil(est.est_arena_bytes * corrections.get("est_arena_bytes", 1.0)),
    )
    return budget_violation(scaled, profile) is None
