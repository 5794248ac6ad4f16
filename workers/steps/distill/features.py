"""Intermediate features of the teacher and the student, their pairing and the teacher-feature cache.

Teacher features come from the teacher's own graph:
- ONNX: a copy of the model with the candidate intermediate tensors added as graph outputs, run by
  onnxruntime (which returns only the outputs asked for).
- TorchScript: the module is frozen (parameters become constants), its forward graph inlined, and the
  candidate values registered as extra outputs of a new function from that graph (ScriptModules do not
  run Python forward hooks). The function is differentiable, which data-free distillation needs.
- torch.export (.pt2): the program's FX graph is run by an FX Interpreter that keeps the outputs of
  the candidate nodes (names are node names; their module path is in the report).
Candidates are the outputs of activations, pools and residual adds, in execution order.

Student features come from forward hooks on the student's activation modules.

Pairing (auto): the deepest student tap at each spatial resolution (deepest first, at most
options.features.max_pairs), each matched to the unused teacher tap of the same resolution with the
closest relative depth (index / count), else one of larger resolution (pooled down), else the closest
in depth; options.features.pairs overrides this by name.

The cache: teacher features of the training split are computed once, like the logits, and kept as
float16 at the paired (aligned) resolution. Memory is bounded by options.features.cache_mb: while the
cache would exceed it, the largest pair's spatial grid is halved (the student's feature is pooled to
the same grid during training), and if every grid is 1x1 the shallowest pair is dropped."""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import FeatureOptions
from edgedistill.workers.steps.distill.losses import PairShape

FEATURE_BATCH = 256
PROBE = 2
STUDENT_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Hardtanh,
)  # fmt: skip
ONNX_TAP_OPS = frozenset(
    {"Relu", "Clip", "LeakyRelu", "HardSwish", "Elu", "Selu", "Gelu", "MaxPool", "AveragePool", "GlobalAveragePool"}
)
TS_TAP_KINDS = frozenset(
    {
        "aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_", "aten::relu6", "aten::leaky_relu",
        "aten::hardswish", "aten::gelu", "aten::silu", "aten::elu", "aten::max_pool2d", "aten::max_pool1d",
        "aten::avg_pool2d", "aten::avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool1d",
    }
)  # fmt: skip
FX_TAP_OPS = frozenset(
    {
        "relu", "relu_", "hardtanh", "hardtanh_", "relu6", "leaky_relu", "hardswish", "gelu", "silu", "elu",
        "max_pool2d", "max_pool1d", "avg_pool2d", "avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool1d",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Tap:
    """One candidate feature: its name, per-sample shape (as produced) and position in the network."""

    name: str
    shape: tuple[int, ...]
    index: int
    count: int
    module: str | None = None  # module path (torch.export teachers)

    @property
    def depth(self) -> float:
        return (self.index + 1) / self.count

    @property
    def norm_shape(self) -> tuple[int, ...]:
        return normalize_shape(self.shape)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "depth": round(self.depth, 3)}
        if self.module:
            d["module"] = self.module
        return d


def normalize_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C,) and (C, H, W) stay; a sequence feature (C, T) becomes (C, 1, T)."""
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    return shape


def as_feature(x: torch.Tensor) -> torch.Tensor:
    """A batch of features in the normalised layout: (B, C), (B, C, H, W); (B, C, T) -> (B, C, 1, T)."""
    return x.unsqueeze(2) if x.dim() == 3 else x


def _usable(shape: tuple[int, ...]) -> bool:
    return len(shape) in (1, 2, 3) and all(d > 0 for d in shape)


# --------------------------------------------------------------------------------------------------
# teacher taps
# --------------------------------------------------------------------------------------------------


class TeacherTaps(ABC):
    """Candidate intermediate features of a teacher and a way to compute them."""

    kind: str
    candidates: list[Tap]
    differentiable: bool = False

    def find(self, name: str) -> Tap | None:
        return next((t for t in self.candidates if t.name == name or t.module == name), None)

    @abstractmethod
    def _run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """One batch -> the named features, float32 with a batch axis."""

    def run(self, x: np.ndarray, names: Sequence[str], batch_size: int = FEATURE_BATCH) -> Iterator[list[np.ndarray]]:
        """The named features of x, batch by batch."""
        for i in range(0, x.shape[0], batch_size):
            yield self._run(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32), names)


class OnnxTaps(TeacherTaps):
    kind = "onnx graph outputs"

    def __init__(self, path: Path, input_name: str, probe: np.ndarray, fixed_batch: int | None = None) -> None:
        import onnx

        model = onnx.load(str(path), load_external_data=True)
        graph_outputs = {o.name for o in model.graph.output}
        initializers = {i.name for i in model.graph.initializer}
        names: list[str] = []
        for node in model.graph.node:
            if node.op_type in ONNX_TAP_OPS or (
                node.op_type == "Add" and len(node.input) == 2 and not (set(node.input) & initializers)
            ):
                names.extend(o for o in node.output[:1] if o and o not in graph_outputs)
        self._session = _onnx_session_with_outputs(model, names)
        self._input = input_name
        self._fixed = fixed_batch
        outs = self._session.run(names, {input_name: self._pad(probe[:PROBE].astype(np.float32))})
        shapes = [tuple(int(d) for d in np.asarray(o).shape[1:]) for o in outs]
        usable = [(n, s) for n, s in zip(names, shapes, strict=True) if _usable(s)]
        self.candidates = [Tap(n, s, i, len(usable)) for i, (n, s) in enumerate(usable)]

    def _pad(self, x: np.ndarray) -> np.ndarray:
        if self._fixed and x.shape[0] < self._fixed:
            return np.concatenate([x, np.repeat(x[-1:], self._fixed - x.shape[0], axis=0)])
        return x

    def run(self, x: np.ndarray, names: Sequence[str], batch_size: int = FEATURE_BATCH) -> Iterator[list[np.ndarray]]:
        return super().run(x, names, self._fixed or batch_size)

    def _run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        n = x.shape[0]
        outs = self._session.run(list(names), {self._input: self._pad(x)})
        return [np.asarray(o, dtype=np.float32)[:n] for o in outs]


def _onnx_session_with_outputs(model: Any, names: Sequence[str]) -> Any:
    """An onnxruntime session of `model` with the named intermediate tensors added as graph outputs."""
    import onnx
    import onnxruntime as ort

    # value_info from shape inference where it is known; the shapes are read from a probe run anyway
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model)
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"onnxruntime cannot run the teacher with its intermediate outputs: {exc}") from exc


class TorchTaps(TeacherTaps):
    """Torch teachers: forward(x, names) returns (outputs, [features]) with autograd."""

    differentiable = True
    bn_layers: list[tuple[str, torch.Tensor, torch.Tensor]]  # (tap name of the BN input, running mean, var)

    @abstractmethod
    def forward(self, x: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def _run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        with torch.inference_mode():
            _, feats = self.forward(torch.from_numpy(x), names)
        return [f.float().cpu().numpy() for f in feats]

    def _probe_shapes(self, names: list[str], probe: np.ndarray) -> list[tuple[int, ...]]:
        with torch.inference_mode():
            _, feats = self.forward(torch.from_numpy(np.ascontiguousarray(probe[:PROBE], dtype=np.float32)), names)
        return [tuple(int(d) for d in f.shape[1:]) for f in feats]


def _first(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out and isinstance(next(iter(out.values())), torch.Tensor):
        return next(iter(out.values()))
    raise InputError(f"the teacher returned {type(out).__name__}; a tensor of outputs is needed")


class TorchScriptTaps(TorchTaps):
    kind = "torchscript graph outputs"

    def __init__(self, module: Any, probe: np.ndarray) -> None:
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()
        frozen = torch._C._freeze_module(module._c)
        graph = frozen._get_method("forward").graph.copy()
        torch._C._jit_pass_inline(graph)
        counters: dict[str, int] = {}
        values: dict[str, Any] = {}
        order: list[str] = []
        self.bn_layers = []
        bn_values: list[tuple[str, Any, torch.Tensor, torch.Tensor]] = []
        for node in graph.nodes():
            kind = node.kind()
            if kind in TS_TAP_KINDS or (kind == "aten::add" and _ts_two_tensors(node)):
                short = kind.split("::")[1].rstrip("_")
                k = counters.get(short, 0)
                counters[short] = k + 1
                name = f"{short}#{k}"
                values[name] = node.output()
                order.append(name)
            elif kind == "aten::batch_norm":
                mean, var = node.inputsAt(3), node.inputsAt(4)
                if mean.node().kind() == "prim::Constant" and var.node().kind() == "prim::Constant":
                    k = counters.get("bn_input", 0)
                    counters["bn_input"] = k + 1
                    name = f"bn_input#{k}"
                    values[name] = node.inputsAt(0)
                    stats: tuple[Any, Any] = (mean.toIValue(), var.toIValue())
                    bn_values.append((name, node.inputsAt(0), stats[0], stats[1]))
        self._names = list(values)
        for name in self._names:
            graph.registerOutput(values[name])
        graph.makeMultiOutputIntoTuple()
        self._fn = torch._C._create_function_from_graph("edgedistill_taps", graph)
        self._self = frozen
        self._index = {n: i + 1 for i, n in enumerate(self._names)}
        self.bn_layers = [(n, m.detach().float(), v.detach().float()) for n, _, m, v in bn_values]
        shapes = self._probe_shapes(order, probe)
        usable = [(n, s) for n, s in zip(order, shapes, strict=True) if _usable(s)]
        self.candidates = [Tap(n, s, i, len(usable)) for i, (n, s) in enumerate(usable)]

    def forward(self, x: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        res = self._fn(self._self, x)
        return _first(res[0]), [res[self._index[n]] for n in names]


def _ts_two_tensors(node: Any) -> bool:
    ins = list(node.inputs())
    return (
        len(ins) >= 2
        and all(str(i.type()).startswith("Tensor") for i in ins[:2])
        and all(i.node().kind() != "prim::Constant" for i in ins[:2])
    )


class _Capture(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.got: dict[str, torch.Tensor] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names:
            self.got[n.name] = out
        return out


class FxTaps(TorchTaps):
    kind = "torch.export graph nodes"

    def __init__(self, gm: torch.fx.GraphModule, probe: np.ndarray) -> None:
        for p in gm.parameters():
            p.requires_grad_(False)
        self._gm = gm
        order: list[str] = []
        modules: dict[str, str | None] = {}
        self.bn_layers = []
        for node in gm.graph.nodes:
            if node.op != "call_function":
                continue
            op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
            stack = node.meta.get("nn_module_stack") or {}
            path = list(stack.values())[-1][0] if stack else None
            if op in FX_TAP_OPS or (
                op == "add"
                and len(node.args) >= 2
                and all(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in node.args[:2])
            ):
                order.append(node.name)
                modules[node.name] = path
            elif op in ("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"):
                src, mean, var = node.args[0], node.args[3], node.args[4]
                if isinstance(src, torch.fx.Node) and all(
                    isinstance(a, torch.fx.Node) and a.op == "get_attr" for a in (mean, var)
                ):
                    self.bn_layers.append(
                        (src.name, _fx_attr(gm, str(mean.target)).float(), _fx_attr(gm, str(var.target)).float())
                    )
        shapes = self._probe_shapes(order, probe)
        usable = [(n, s) for n, s in zip(order, shapes, strict=True) if _usable(s)]
        self.candidates = [Tap(n, s, i, len(usable), modules.get(n)) for i, (n, s) in enumerate(usable)]

    def forward(self, x: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        cap = _Capture(self._gm, set(names))
        out = cap.run(x)
        return _first(out), [cap.got[n] for n in names]


def _fx_attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return torch.as_tensor(obj).detach()


def teacher_taps(teacher: Any, probe: np.ndarray) -> TeacherTaps:
    """The tap extractor for a loaded teacher (workers.steps.teacher)."""
    from edgedistill.workers.steps.teacher import ExportedProgramTeacher, OnnxTeacher, TorchScriptTeacher

    if isinstance(teacher, OnnxTeacher):
        sig = teacher.signature
        return OnnxTaps(teacher.path, sig.input_name, probe, sig.fixed_batch)
    if isinstance(teacher, TorchScriptTeacher):
        return TorchScriptTaps(teacher._module, probe)
    if isinstance(teacher, ExportedProgramTeacher):
        return FxTaps(teacher._module, probe)
    raise InputError(f"intermediate features cannot be read from a {type(teacher).__name__} teacher")


# --------------------------------------------------------------------------------------------------
# student taps
# --------------------------------------------------------------------------------------------------


def student_taps(student: nn.Module, probe: np.ndarray) -> list[Tap]:
    """Outputs of the student's activation modules (module paths), shapes from a probe forward."""
    names = [n for n, m in student.named_modules() if isinstance(m, STUDENT_ACTIVATIONS) and n]
    shapes: dict[str, tuple[int, ...]] = {}
    with StudentHooks(student, names) as hooks, torch.no_grad():
        was = student.training
        student.eval()
        x = torch.from_numpy(np.ascontiguousarray(probe[:PROBE], dtype=np.float32))
        student(x.to(next(student.parameters()).device))
        student.train(was)
        for n, f in zip(names, hooks.collect(), strict=True):
            shapes[n] = tuple(int(d) for d in f.shape[1:])
    usable = [n for n in names if _usable(shapes[n])]
    return [Tap(n, shapes[n], i, len(usable)) for i, n in enumerate(usable)]


class StudentHooks:
    """Forward hooks that keep the outputs of named student modules during one forward pass."""

    def __init__(
        self, student: nn.Module, names: Sequence[str], targets: Sequence[tuple[int, ...]] = (), raw: bool = False
    ) -> None:
        self.student, self.names = student, list(names)
        self.targets = list(targets)  # per name: the aligned per-sample shape, () = as produced
        self.raw = raw  # sequence features (attention maps, hidden states): as produced, no layout change
        self._out: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> StudentHooks:
        modules = dict(self.student.named_modules())
        for name in self.names:
            if name not in modules:
                raise InputError(f"the student has no layer {name!r}")
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            self._out[name] = out

        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._out.clear()

    def collect(self) -> list[torch.Tensor]:
        """The features of the last forward, aligned to the targets."""
        if self.raw:
            return [self._out[n] for n in self.names]
        feats = [as_feature(self._out[n]) for n in self.names]
        if not self.targets:
            return feats
        return [align(f, t) for f, t in zip(feats, self.targets, strict=True)]


def align(f: torch.Tensor, target: tuple[int, ...]) -> torch.Tensor:
    """Pool a (B, C, H, W) feature to target (C', h, w) spatially, or to a vector when target is (C',)."""
    if len(target) == 1:
        return f.mean(dim=(2, 3)) if f.dim() == 4 else f
    if f.dim() == 4 and tuple(f.shape[2:]) != tuple(target[1:]):
        return F.adaptive_avg_pool2d(f, (target[1], target[2]))
    return f


# --------------------------------------------------------------------------------------------------
# pairing and the cache
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    student: Tap
    teacher: Tap
    grid: tuple[int, ...]  # aligned spatial size (h, w), () for vector pairs
    how: str

    @property
    def student_shape(self) -> tuple[int, ...]:
        return (self.student.norm_shape[0], *self.grid)

    @property
    def teacher_shape(self) -> tuple[int, ...]:
        return (self.teacher.norm_shape[0], *self.grid)

    @property
    def shape(self) -> PairShape:
        return PairShape(self.student_shape, self.teacher_shape)

    def describe(self) -> dict[str, Any]:
        return {
            "student": self.student.name,
            "student_shape": list(self.student.shape),
            "teacher": self.teacher.name,
            "teacher_module": self.teacher.module,
            "teacher_shape": list(self.teacher.shape),
            "aligned_grid": list(self.grid),
            "how": self.how,
        }


def _grid(s: Tap, t: Tap) -> tuple[int, ...]:
    ss, ts = s.norm_shape, t.norm_shape
    if len(ss) == 3 and len(ts) == 3:
        return (min(ss[1], ts[1]), min(ss[2], ts[2]))
    return ()


def _res(t: Tap) -> tuple[int, ...]:
    return t.norm_shape[1:]


def auto_pairs(students: Sequence[Tap], teachers: Sequence[Tap], max_pairs: int) -> list[Pair]:
    """Pair by spatial resolution, then by relative depth (module docstring)."""
    if not students or not teachers:
        return []
    deepest: dict[tuple[int, ...], Tap] = {}
    for s in students:
        deepest[_res(s)] = s  # later taps overwrite: the deepest at each resolution
    chosen = sorted(deepest.values(), key=lambda t: t.index, reverse=True)[:max_pairs]
    chosen.sort(key=lambda t: t.index)
    pairs: list[Pair] = []
    used: set[str] = set()
    last_index = -1
    for s in chosen:
        free = [t for t in teachers if t.name not in used and t.index > last_index] or [
            t for t in teachers if t.name not in used
        ]
        if not free:
            break
        same = [t for t in free if _res(t) == _res(s)]
        larger = [
            t
            for t in free
            if len(_res(t)) == 2 and len(_res(s)) == 2 and _res(t)[0] >= _res(s)[0] and _res(t)[1] >= _res(s)[1]
        ]
        if same:
            pool, how = same, "same resolution, closest depth"
        elif larger:
            pool, how = larger, "teacher pooled to the student's resolution, closest depth"
        else:
            pool, how = free, "closest depth (features pooled to match)"
        t = min(pool, key=lambda c: (abs(c.depth - s.depth), -c.index))
        used.add(t.name)
        last_index = t.index
        pairs.append(Pair(s, t, _grid(s, t), how))
    return pairs


def named_pairs(
    requested: Sequence[Any], students: Sequence[Tap], teachers: TeacherTaps, student_names: Sequence[str]
) -> list[Pair]:
    by_name = {s.name: s for s in students}
    pairs = []
    for p in requested:
        s = by_name.get(p.student)
        if s is None:
            raise InputError(
                f"options.features.pairs: the student has no feature {p.student!r}; candidates: "
                f"{', '.join(student_names[:40])}"
            )
        t = teachers.find(p.teacher)
        if t is None:
            names = [c.name for c in teachers.candidates]
            raise InputError(
                f"options.features.pairs: the teacher has no feature {p.teacher!r}; candidates: "
                f"{', '.join(names[:40])}{' ...' if len(names) > 40 else ''}"
            )
        pairs.append(Pair(s, t, _grid(s, t), "named in options.features.pairs"))
    return pairs


def fit_cache(pairs: list[Pair], n: int, budget_bytes: float) -> tuple[list[Pair], list[str]]:
    """Shrink grids (then drop shallow pairs) until n samples of float16 teacher features fit."""
    notes: list[str] = []

    def size(ps: Sequence[Pair]) -> int:
        return n * 2 * sum(math.prod(p.teacher_shape) for p in ps)

    pairs = list(pairs)
    while pairs and size(pairs) > budget_bytes:
        poolable = [i for i, p in enumerate(pairs) if p.grid and math.prod(p.grid) > 1]
        if poolable:
            i = max(poolable, key=lambda j: math.prod(pairs[j].teacher_shape))
            p = pairs[i]
            grid = tuple(max(1, math.ceil(g / 2)) for g in p.grid)
            pairs[i] = replace(p, grid=grid)
            notes.append(f"{p.teacher.name}: cached at {grid[0]}x{grid[1]} to stay within the feature cache budget")
        elif len(pairs) > 1:
            notes.append(f"dropped pair {pairs[0].student.name} <- {pairs[0].teacher.name}: feature cache budget")
            pairs.pop(0)
        else:
            raise InputError(
                f"the teacher features of {n:,} samples need {size(pairs) / 2**20:.0f} MiB even pooled to 1x1; "
                "raise options.features.cache_mb"
            )
    return pairs, notes


@dataclass
class FeaturePlan:
    pairs: list[Pair]
    teacher_kind: str
    cache: list[np.ndarray] = field(default_factory=list)  # float16 (N_train, *teacher_shape) per pair
    notes: list[str] = field(default_factory=list)
    student_candidates: list[Tap] = field(default_factory=list)
    teacher_candidates: list[Tap] = field(default_factory=list)

    @property
    def shapes(self) -> list[PairShape]:
        return [p.shape for p in self.pairs]

    def hooks(self, student: nn.Module) -> StudentHooks:
        return StudentHooks(student, [p.student.name for p in self.pairs], [p.student_shape for p in self.pairs])

    def cache_bytes(self) -> int:
        return int(sum(c.nbytes for c in self.cache))

    def describe(self) -> dict[str, Any]:
        return {
            "teacher_features_from": self.teacher_kind,
            "pairs": [p.describe() for p in self.pairs],
            "cache": {
                "dtype": "float16",
                "bytes": self.cache_bytes(),
                "samples": int(self.cache[0].shape[0]) if self.cache else 0,
            },
            "notes": list(self.notes),
            "student_candidates": [t.describe() for t in self.student_candidates],
            "teacher_candidates": [t.describe() for t in self.teacher_candidates[:200]],
        }


def plan_features(
    teacher: Any, student: nn.Module, x_train: np.ndarray, opts: FeatureOptions, *, taps: TeacherTaps | None = None
) -> FeaturePlan:
    """Choose the pairs and compute the teacher-feature cache over x_train."""
    taps = taps or teacher_taps(teacher, x_train)
    students = student_taps(student, x_train)
    if opts.pairs:
        pairs = named_pairs(opts.pairs, students, taps, [s.name for s in students])
    else:
        pairs = auto_pairs(students, taps.candidates, opts.max_pairs)
    if not pairs:
        raise InputError(
            f"no intermediate features to pair: the student has {len(students)} candidate layers, the teacher "
            f"{len(taps.candidates)}"
        )
    pairs, notes = fit_cache(pairs, x_train.shape[0], opts.cache_mb * 2**20)
    cache = [np.empty((x_train.shape[0], *p.teacher_shape), dtype=np.float16) for p in pairs]
    names = [p.teacher.name for p in pairs]
    start = 0
    for batch in taps.run(x_train, names):
        n = batch[0].shape[0]
        for c, f, p in zip(cache, batch, pairs, strict=True):
            aligned = align(as_feature(torch.from_numpy(f)), p.teacher_shape)
            c[start : start + n] = aligned.numpy().astype(np.float16)
        start += n
    return FeaturePlan(
        pairs=pairs,
        teacher_kind=taps.kind,
        cache=cache,
        notes=notes,
        student_candidates=students,
        teacher_candidates=list(taps.candidates),
    )


# --------------------------------------------------------------------------------------------------
# sequence (transformer) taps: attention probabilities, values and hidden states per layer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerLayer:
    """One teacher layer in graph order: its attention probabilities (H, L, L) (a Softmax output),
    the values they weigh (H, L, dh) (the other input of the MatMul that reads them) and its output
    hidden state (L, d) (the last residual Add before the next layer's Softmax)."""

    attention: Tap
    values: Tap | None
    hidden: Tap | None


class OnnxSequenceTaps(TeacherTaps):
    """ONNX teachers with several inputs (token ids + mask): every input fed by name."""

    kind = "onnx graph outputs (Softmax attention, values, residual adds)"

    def __init__(self, path: Path, probe: Mapping[str, np.ndarray], fixed_batch: int | None = None) -> None:
        import onnx

        model = onnx.load(str(path), load_external_data=True)
        self._inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        initializers = {i.name for i in model.graph.initializer}
        nodes = list(model.graph.node)
        softmax: list[tuple[int, str]] = []
        adds: list[tuple[int, str]] = []
        value_of: dict[str, str] = {}
        for pos, node in enumerate(nodes):
            if node.op_type == "Softmax" and node.output:
                softmax.append((pos, node.output[0]))
            elif node.op_type == "Add" and len(node.input) == 2 and not (set(node.input) & initializers):
                adds.append((pos, node.output[0]))
        probs = {name for _, name in softmax}
        for node in nodes:
            if node.op_type == "MatMul" and node.input[0] in probs:
                value_of[node.input[0]] = node.input[1]
        names = list(dict.fromkeys([*(n for _, n in softmax), *(n for _, n in adds), *value_of.values()]))
        self._session = _onnx_session_with_outputs(model, names) if names else None
        self._fixed = fixed_batch
        self.layers: list[TransformerLayer] = []
        self.candidates = []
        if self._session is None:
            return
        feed = {k: self._pad(np.asarray(probe[k])[:PROBE]) for k in self._inputs}
        shapes = {
            n: tuple(int(d) for d in np.asarray(o).shape[1:])
            for n, o in zip(names, self._session.run(names, feed), strict=True)
        }
        att = [(p, n) for p, n in softmax if len(shapes[n]) == 3 and shapes[n][1] == shapes[n][2]]
        if not att:
            return
        seq = shapes[att[0][1]][1]
        hidden = [(p, n) for p, n in adds if len(shapes[n]) == 2 and shapes[n][0] == seq]
        count = len(att)
        for i, (p, n) in enumerate(att):
            end = att[i + 1][0] if i + 1 < count else len(nodes)
            h = [name for q, name in hidden if p < q < end]
            v = value_of.get(n)
            self.layers.append(
                TransformerLayer(
                    attention=Tap(n, shapes[n], i, count),
                    values=Tap(v, shapes[v], i, count) if v is not None and len(shapes[v]) == 3 else None,
                    hidden=Tap(h[-1], shapes[h[-1]], i, count) if h else None,
                )
            )
        self.candidates = [t for layer in self.layers for t in (layer.attention, layer.values, layer.hidden) if t]

    def _pad(self, x: np.ndarray) -> np.ndarray:
        if self._fixed and x.shape[0] < self._fixed:
            return np.concatenate([x, np.repeat(x[-1:], self._fixed - x.shape[0], axis=0)])
        return x

    def _run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        raise InputError("this teacher takes several inputs: its features are read with run_inputs")

    def run_inputs(
        self, inputs: Mapping[str, np.ndarray], names: Sequence[str], batch_size: int = FEATURE_BATCH
    ) -> Iterator[list[np.ndarray]]:
        """The named features, batch by batch, for inputs by name (fed in the graph's dtypes)."""
        assert self._session is not None
        types = {i.name: i.type for i in self._session.get_inputs()}
        n = int(np.asarray(inputs[self._inputs[0]]).shape[0])
        step = self._fixed or batch_size
        for i in range(0, n, step):
            feed = {}
            for k in self._inputs:
                arr = np.asarray(inputs[k])[i : i + step]
                dtype = np.int64 if "int64" in types[k] else np.int32 if "int32" in types[k] else np.float32
                feed[k] = self._pad(np.ascontiguousarray(arr, dtype=dtype))
            m = min(step, n - i)
            outs = self._session.run(list(names), feed)
            yield [np.asarray(o, dtype=np.float32)[:m] for o in outs]


def sequence_taps(teacher: Any, probe: Mapping[str, np.ndarray]) -> OnnxSequenceTaps | None:
    """The transformer layers of a teacher's graph (empty `layers` when it has no attention Softmax);
    None for formats whose attention is not read (TorchScript, .pt2, TFLite: not implemented)."""
    from edgedistill.workers.steps.teacher import OnnxTeacher

    if isinstance(teacher, OnnxTeacher):
        return OnnxSequenceTaps(teacher.path, probe, teacher.fixed_batch)
    return None


def depth_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) by depth, TinyBERT's g(m) = m * T / S (1-based): every other
    teacher layer for a half-depth student, the last with the last."""
    return [(i, max(0, round((i + 1) * teacher_layers / student_layers) - 1)) for i in range(student_layers)]


class SequencePair(Pair):
    """A pair of sequence features (attention maps, values, hidden states), kept at their own shapes."""

    @property
    def shape(self) -> PairShape:
        return PairShape(self.student.shape, self.teacher.shape)


@dataclass
class SequencePlan(FeaturePlan):
    roles: list[str] = field(default_factory=list)  # per pair: "attention", "values" or "hidden"

    def hooks(self, student: nn.Module) -> StudentHooks:
        return StudentHooks(student, [p.student.name for p in self.pairs], raw=True)

    def indices(self, role: str) -> list[int]:
        return [i for i, r in enumerate(self.roles) if r == role]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        for p, role in zip(d["pairs"], self.roles, strict=True):
            p["role"] = role
        return d


def student_sequence_taps(student: nn.Module, names: Sequence[str], probe: Mapping[str, np.ndarray],
                          input_names: Sequence[str]) -> list[Tap]:  # fmt: skip
    """Shapes of the named student modules' outputs from a probe forward."""
    device = next(student.parameters()).device
    args = [torch.as_tensor(np.ascontiguousarray(probe[n][:PROBE])).to(device) for n in input_names]
    with StudentHooks(student, names, raw=True) as hooks, torch.no_grad():
        was = student.training
        student.eval()
        student(*args)
        student.train(was)
        feats = hooks.collect()
    return [
        Tap(n, tuple(int(d) for d in f.shape[1:]), i, len(names))
        for i, (n, f) in enumerate(zip(names, feats, strict=True))
    ]


def plan_sequence_features(
    taps: OnnxSequenceTaps, wanted: Sequence[tuple[str, str, Tap, str]], inputs: Mapping[str, np.ndarray],
    student_taps: Mapping[str, Tap], cache_mb: float,
) -> SequencePlan:  # fmt: skip
    """wanted: (role, student module, teacher tap, how) in priority order (most important first). Pairs
    are dropped from the end while n samples of float16 teacher features exceed cache_mb."""
    n = int(np.asarray(next(iter(inputs.values()))).shape[0])
    budget = cache_mb * 2**20
    notes: list[str] = []
    keep = list(wanted)
    while keep and n * 2 * sum(math.prod(t.shape) for _, _, t, _ in keep) > budget:
        role, s, t, _ = keep.pop()
        notes.append(f"dropped {role} pair {s} <- {t.name}: feature cache budget (options.features.cache_mb)")
    if not keep:
        raise InputError(
            f"the teacher's attention maps of {n:,} samples do not fit options.features.cache_mb={cache_mb:g}; raise it"
        )
    pairs = [SequencePair(student_taps[s], t, (), how) for _, s, t, how in keep]
    cache = [np.empty((n, *p.teacher.shape), dtype=np.float16) for p in pairs]
    start = 0
    for batch in taps.run_inputs(inputs, [p.teacher.name for p in pairs]):
        m = batch[0].shape[0]
        for c, f in zip(cache, batch, strict=True):
            c[start : start + m] = f.astype(np.float16)
        start += m
    return SequencePlan(
        pairs=list(pairs), teacher_kind=taps.kind, cache=cache, notes=notes,
        student_candidates=list(student_taps.values()), teacher_candidates=list(taps.candidates),
        roles=[r for r, _, _, _ in keep],
    )  # fmt: skip
