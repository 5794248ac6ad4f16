"""The teacher's own graph made smaller: the student module of the derived family and how it is cut.

1. Raw outputs (the engine contract, heads.py): a trailing Softmax / Sigmoid / LogSoftmax that makes a
   probabilities / sigmoid / log_probabilities output is cut off the graph, so the student returns the
   values before it (the export wrapper puts the activation back); where none is found the output is
   mapped to logits by log (probabilities) or logit (sigmoid). Class-index outputs are dropped.
2. Layer dropping: residual blocks (an Add whose one input is an ancestor of the other, through a branch
   with weights, input and output of the same shape) along the main stream are grouped into layers by
   the shortest period of their branch signatures (a transformer's attention + MLP pair is one layer, a
   ResNet's basic block another). With >= 2 layers, every other layer can be dropped (the skip passes
   through), keeping the layers with odd index, as DistilBERT initialises student layer i from teacher
   layer 2i + 1. It is done only when channel pruning alone would keep fewer than WIDE_LIMIT of the
   channels: past that, depth is the cheaper thing to give up.
3. Channel pruning: torch-pruning's DepGraph (Fang et al., CVPR 2023) groups every parameter coupled to a
   channel (a residual Add's two inputs, a Concat's parts, BatchNorm after a convolution, the next
   layer's input) and removes whole groups ranked by their L2 magnitude
   (GroupMagnitudeImportance), the same share per layer. Layers that produce a teacher output are
   never pruned (their output width is the teacher's). The share is found by bisection: the smallest
   that meets the target cost (MACs on CPU/mobile profiles, estimated int8 bytes on MCUs, measured on
   the pruned module with students_multi.measure) and every budget of the profile."""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from edgedistill.workers.steps.derived.convert import as_tuple
from edgedistill.workers.steps.derived.errors import ConversionError

WIDE_LIMIT = 0.5  # prune channels alone down to keeping half of them; below that, drop every other layer too
MAX_RATIO = 0.9  # never remove more than 90 % of a layer's channels
BISECTIONS = 9
SIGMOID_KINDS = frozenset({"sigmoid", "multilabel"})
UNTRAINED = frozenset({"class_index"})


class DerivedUnavailable(ConversionError):
    """No derived student for this teacher and profile; the message says why."""


class DerivedStudent(nn.Module):
    """student(*inputs) -> raw trained outputs, in teacher order (the engine contract; one output bare).
    `net` is the (pruned) converted teacher graph; inputs are cast to the teacher's dtypes first (the
    trainer feeds float32 or int64), and `raw` maps each trained output to its net output and the
    transform to raw values ("" none, "log", "logit")."""

    def __init__(self, net: fx.GraphModule, input_dtypes: Sequence[str], raw: Sequence[tuple[int, str]]) -> None:
        super().__init__()
        self.net = net
        self.input_dtypes = list(input_dtypes)
        self.raw = [(int(i), str(how)) for i, how in raw]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        args = [x.to(getattr(torch, d)) for x, d in zip(inputs, self.input_dtypes, strict=True)]
        outs = as_tuple(self.net(*args))
        res = []
        for idx, how in self.raw:
            o = outs[idx]
            if how == "log":
                o = torch.log(o.clamp_min(1e-12))
            elif how == "logit":
                p = o.clamp(1e-6, 1 - 1e-6)
                o = torch.log(p) - torch.log1p(-p)
            res.append(o)
        # one output: a bare tensor, as the single-input steps expect of a student (the multi-output
        # steps and heads.export_module take a tensor as a 1-tuple)
        return res[0] if len(res) == 1 else tuple(res)

    def layer_names(self) -> list[str]:
        """Module paths of the graph's layers, as features.StudentHooks reads them."""
        return [f"net.{n.target}" for n in self.net.graph.nodes if n.op == "call_module"]


# --------------------------------------------------------------------------------------------------
# 1. raw outputs
# --------------------------------------------------------------------------------------------------


def _output_nodes(gm: fx.GraphModule) -> tuple[fx.Node, list[Any]]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    arg = out.args[0]
    return out, list(arg) if isinstance(arg, (tuple, list)) else [arg]


def _module_kind(gm: fx.GraphModule, node: Any) -> str:
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return ""
    name = type(gm.get_submodule(str(node.target))).__name__
    if "LogSoftmax" in name:
        return "log_softmax"
    if "Softmax" in name:
        return "softmax"
    if "Sigmoid" in name and "Hard" not in name:
        return "sigmoid"
    return ""


def _last_axis(gm: fx.GraphModule, node: fx.Node, rank: int) -> bool:
    mod = gm.get_submodule(str(node.target))
    axis = getattr(mod, "dim", getattr(mod, "axis", -1))
    axis = -1 if axis is None else int(axis)
    return rank == 2 or axis in (-1, rank - 1)  # (B, K): ONNX's old flattening axis 1 is the last axis too


def raw_outputs(
    gm: fx.GraphModule, kinds: Sequence[str | None], ranks: Sequence[int]
) -> tuple[list[tuple[int, str]], list[str]]:
    """Cut trailing activations (module docstring, 1) in place; (raw map for DerivedStudent, notes)."""
    out, nodes = _output_nodes(gm)
    raw: list[tuple[int, str]] = []
    notes: list[str] = []
    want = {
        "probabilities": "softmax",
        "log_probabilities": "log_softmax",
        "sigmoid": "sigmoid",
        "multilabel": "sigmoid",
    }
    for i, (node, kind) in enumerate(zip(nodes, kinds, strict=True)):
        if kind in UNTRAINED:
            continue
        target = want.get(kind or "")
        if target is None:
            raw.append((i, ""))
            continue
        if _module_kind(gm, node) == target and (target == "sigmoid" or _last_axis(gm, node, ranks[i])):
            nodes[i] = node.args[0]
            raw.append((i, ""))
            notes.append(f"output {i}: the trailing {target} is cut off; the student returns the values before it")
        else:
            how = "" if kind == "log_probabilities" else ("logit" if kind in SIGMOID_KINDS else "log")
            raw.append((i, how))
            if how:
                notes.append(f"output {i}: no trailing {target} to cut; trained as its {how}")
    out.args = (tuple(nodes) if len(nodes) > 1 else nodes[0],)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return raw, notes


# --------------------------------------------------------------------------------------------------
# 2. residual layers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    add: str  # the Add node's name
    skip: str  # the input that bypasses the branch
    branch: tuple[str, ...]  # call_module nodes between skip and add (exclusive)
    signature: tuple[str, ...]  # module class names of the branch, in order
    after: str = ""  # the node the skip comes from through weightless one-input nodes (a ReLU after an Add)


def _is_add(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        return getattr(mod, "math_op_function", None) is torch.add
    return node.op == "call_function" and node.target in (torch.add, operator.add)


def _branch(out: fx.Node, skip: fx.Node) -> set[fx.Node]:
    """The nodes between `skip` and `out`: ancestors of out (out included) that depend on skip. Side
    inputs that do not depend on it (a transformer's mask bias) are not part of the branch."""
    up: set[fx.Node] = set()
    todo = [out]
    while todo:
        n = todo.pop()
        if n is skip or n in up:
            continue
        up.add(n)
        todo.extend(n.all_input_nodes)
    down: set[fx.Node] = set()
    todo = list(skip.users)
    while todo:
        n = todo.pop()
        if n in down or n not in up:
            continue
        down.add(n)
        todo.extend(n.users)
    return down


def residual_blocks(gm: fx.GraphModule, shapes: dict[str, tuple[int, ...]]) -> list[Block]:
    blocks: list[Block] = []
    for node in gm.graph.nodes:
        if not _is_add(gm, node) or len(node.all_input_nodes) != 2:
            continue
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            continue
        for skip, out in ((a, b), (b, a)):
            inner = _branch(out, skip)
            if out not in inner or shapes.get(skip.name) != shapes.get(node.name):
                continue
            mods = [n for n in gm.graph.nodes if n in inner and n.op == "call_module"]
            if not any(sum(p.numel() for p in gm.get_submodule(str(n.target)).parameters()) for n in mods):
                continue
            sig = tuple(type(gm.get_submodule(str(n.target))).__name__ for n in mods)
            blocks.append(Block(node.name, skip.name, tuple(n.name for n in mods), sig, _source(gm, skip)))
            break
    return blocks


def _source(gm: fx.GraphModule, node: fx.Node) -> str:
    while (
        node.op == "call_module"
        and len(node.all_input_nodes) == 1
        and not any(True for _ in gm.get_submodule(str(node.target)).parameters())
    ):
        node = node.all_input_nodes[0]
    return node.name


def layers_of(blocks: Sequence[Block]) -> list[list[Block]]:
    """Consecutive blocks of the main stream (each block's skip is the previous one's add, maybe through
    an activation) grouped by
    the shortest period of their signatures; [] when there is no repeated structure."""
    chain: list[Block] = []
    for blk in blocks:
        if not chain or chain[-1].add in (blk.skip, blk.after):
            chain.append(blk)
        elif len(chain) < 2:
            chain = [blk]
    sigs = [b.signature for b in chain]
    for period in range(1, len(sigs) // 2 + 1):
        if len(sigs) % period == 0 and all(sigs[i] == sigs[i % period] for i in range(len(sigs))):
            return [chain[i : i + period] for i in range(0, len(chain), period)]
    return []


def drop_layers(gm: fx.GraphModule, layers: Sequence[Sequence[Block]]) -> list[int]:
    """Drop the layers with even index (keep 1, 3, ...) in place; returns the dropped indices."""
    nodes = {n.name: n for n in gm.graph.nodes}
    dropped = [i for i in range(len(layers)) if i % 2 == 0]
    for i in dropped:
        for blk in layers[i]:
            add = nodes[blk.add]
            add.replace_all_uses_with(nodes[blk.skip])
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return dropped


# --------------------------------------------------------------------------------------------------
# 3. channel pruning
# --------------------------------------------------------------------------------------------------


def output_layers(gm: fx.GraphModule) -> list[nn.Module]:
    """Modules with weights whose output reaches a graph output without another weighted layer."""
    _, outs = _output_nodes(gm)
    found: list[nn.Module] = []
    seen: set[fx.Node] = set()
    todo = [n for n in outs if isinstance(n, fx.Node)]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            if any(True for _ in mod.parameters()):
                found.append(mod)
                continue
        todo.extend(a for a in n.all_input_nodes if a.op != "get_attr")
    return found


def prune_channels(student: DerivedStudent, example: tuple[torch.Tensor, ...], ratio: float) -> DerivedStudent:
    """A pruned copy (module docstring, 3); the original is untouched."""
    import torch_pruning as tp

    pruned = copy.deepcopy(student)
    if ratio <= 0:
        return pruned
    net = pruned.net
    keep = output_layers(net)
    # recurrent layers are left whole: torch-pruning has no GRU rule, and its LSTM rule indexes past the
    # hidden-state weights of a converted ONNX LSTM (IndexError), so a derived student keeps their width
    keep += [m for m in net.modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN))]
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    args = tuple(x.to(getattr(torch, d)) for x, d in zip(example, pruned.input_dtypes, strict=True))
    pruner = tp.pruner.BasePruner(
        net, args, importance=importance, pruning_ratio=float(ratio), ignored_layers=keep, global_pruning=False
    )
    pruner.step()
    return pruned


def search_ratio(
    base: DerivedStudent,
    example: tuple[torch.Tensor, ...],
    cost: Any,
    ok: Any,
    *,
    max_ratio: float = MAX_RATIO,
) -> tuple[float, DerivedStudent, Any, list[dict[str, Any]]] | None:
    """The smallest pruning share in (0, max_ratio] for which ok(estimate) holds, by bisection, with the
    pruned module and its estimate; None when even max_ratio does not do. cost(module) -> estimate."""
    trail: list[dict[str, Any]] = []

    def attempt(r: float) -> tuple[DerivedStudent, Any] | None:
        try:
            m = prune_channels(base, example, r)
            est = cost(m)
        except Exception as exc:  # a graph torch-pruning leaves inconsistent (a reshape with fixed sizes)
            trail.append(
                {"ratio": round(r, 4), "error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}
            )
            return None
        trail.append(
            {"ratio": round(r, 4), "params": est.params, "macs": est.macs, "est_int8_bytes": est.est_int8_bytes}
        )
        return m, est

    top = attempt(max_ratio)
    if top is None or not ok(top[1]):
        return None
    lo, hi, best = 0.0, max_ratio, (max_ratio, *top)
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        got = attempt(mid)
        if got is not None and ok(got[1]):
            hi, best = mid, (mid, *got)
        else:
            lo = mid
    return best[0], best[1], best[2], trail


def shapes_of(gm: fx.GraphModule, example: tuple[torch.Tensor, ...]) -> dict[str, tuple[int, ...]]:
    """Per node name, the per-sample shape of its tensor output (from one forward)."""
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(*example)
    out: dict[str, tuple[int, ...]] = {}
    for n in gm.graph.nodes:
        meta = n.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is not None:
            out[n.name] = tuple(int(d) for d in shape[1:])
    return out


def reduction_words(teacher_cost: float, cost: float) -> str:
    return f"{teacher_cost / cost:.1f}x" if cost > 0 and math.isfinite(teacher_cost / cost) else "?"
