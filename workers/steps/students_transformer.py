"""Transformer students for token-sequence teachers (token ids + optional attention mask; issue 14).

Shape: ids >= V hashed into V buckets in the graph (remainder, as students_multi.TokenEncoder does, so the
exported model takes the teacher's raw ids) -> Embedding(V, d) + learned positions -> `depth` pre-LN
blocks (multi-head self-attention with the mask as an additive -1e4 bias on the keys, GELU MLP of
FF_MULT * d) -> mean pooling over the positions the mask marks -> one Linear head per trained output
(raw values, signature order, class_index outputs excluded: the engine contract of students_multi).

Fewer layers, a narrower width and fewer heads than the teacher: by default half its layers (DistilBERT,
Sanh et al. 2019, arXiv:1910.01108, keeps every other layer), half its width, and its head count when the
narrower width still gives heads of >= MIN_HEAD_DIM (so MiniLM's per-head attention transfer applies),
then shrunk until the profile's budgets hold. Attention probabilities are computed by an nn.Softmax
module per block (`blocks.<i>.attn_softmax`, (B, H, L, L)) and hidden states are each block's output
(`blocks.<i>`, (B, L, d)), so features.StudentHooks reads both without touching the forward.

Initialisation from the teacher (init_from_teacher): when the teacher's width equals the student's,
the token table (and positions) are copied, and for torch teachers each student block i takes the
weights of teacher block 2i + 1 (every other layer, counting from the second) when that block's
parameter shapes, in order, equal the student block's; otherwise the student starts from scratch and
the arch says why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.contracts.errors import BudgetError, InputError
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.contracts.signature import UNTRAINED_KINDS, ModelSignature
from edgedistill.workers.steps.students import FLASH_HEADROOM, budget_violation
from edgedistill.workers.steps.students_multi import (
    MIN_VOCAB,
    VOCAB_FLASH_SHARE,
    InputStats,
    _known,
    input_kind,
    measure,
)

FF_MULT = 2
MIN_HEAD_DIM = 8
WIDTHS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
MASK_BIAS = -1e4  # additive bias on masked keys: exp underflows to 0 in float32, finite for int8 export


@dataclass(frozen=True)
class TeacherShape:
    """What the teacher's graph says about its transformer (features.SequenceTaps)."""

    layers: int
    heads: int
    seq: int
    width: int | None  # hidden size of the residual stream, when a (L, d) residual Add was found


def token_inputs(signature: ModelSignature) -> tuple[int, int | None]:
    """(index of the token-id input, index of its mask or None); refuses other signatures."""
    kinds = [input_kind(s) for s in signature.inputs]
    tokens = [i for i, k in enumerate(kinds) if k == "tokens"]
    masks = [i for i, k in enumerate(kinds) if k == "mask"]
    others = [signature.inputs[i].name for i, k in enumerate(kinds) if k not in ("tokens", "mask")]
    if len(tokens) != 1 or len(masks) > 1 or others:
        raise InputError(
            "the transformer student takes one token-id input and at most one mask; this teacher has "
            f"inputs {', '.join(f'{s.name} ({k})' for s, k in zip(signature.inputs, kinds, strict=True))}"
        )
    if masks and signature.inputs[masks[0]].shape[1] != signature.inputs[tokens[0]].shape[1]:
        raise InputError("the mask input and the token input have different lengths")
    return tokens[0], (masks[0] if masks else None)


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.width, self.heads = width, heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_softmax = nn.Softmax(dim=-1)
        self.value_tap = nn.Identity()  # where StudentHooks reads the values (MiniLM value relation)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, FF_MULT * width)
        self.act = nn.GELU()
        self.ff2 = nn.Linear(FF_MULT * width, width)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        q, k, v = self.qkv(self.ln1(h)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])) + bias
        o = (self.attn_softmax(scores) @ self.value_tap(v)).transpose(1, 2).reshape(b, t, self.width)
        h = h + self.proj(o)
        return h + self.ff2(self.act(self.ff1(self.ln2(h))))


class TransformerStudent(nn.Module):
    """student(*inputs) -> tuple of raw outputs (module docstring)."""

    def __init__(self, signature: ModelSignature, width: int, depth: int, heads: int, vocab: int) -> None:
        super().__init__()
        self.token_index, self.mask_index = token_inputs(signature)
        seq = _known(signature.inputs[self.token_index].per_sample, "the token input")[0]
        self.vocab, self.width, self.depth, self.heads = int(vocab), int(width), int(depth), int(heads)
        self.embedding = nn.Embedding(self.vocab, width)
        self.pos = nn.Parameter(torch.zeros(1, seq, width))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(depth)])
        self.shapes: list[tuple[int, ...]] = []
        heads_out: list[nn.Module] = []
        for out in signature.outputs:
            if out.kind in UNTRAINED_KINDS:
                continue
            shape = _known(out.per_sample, f"output {out.name!r}")
            self.shapes.append(shape)
            heads_out.append(nn.Linear(width, max(1, math.prod(shape))))
        if not heads_out:
            raise InputError("the teacher has no output a student can be trained on")
        self.heads_out = nn.ModuleList(heads_out)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ids = inputs[self.token_index]
        h = self.embedding(torch.remainder(ids.long(), self.vocab)) + self.pos
        if self.mask_index is None:
            m = torch.ones(ids.shape, dtype=h.dtype, device=h.device)
        else:
            m = inputs[self.mask_index].to(h.dtype)
        bias = ((1.0 - m) * MASK_BIAS)[:, None, None, :]
        for blk in self.blocks:
            h = blk(h, bias)
        pooled = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return tuple(
            head(pooled).reshape(pooled.shape[0], *shape)
            for head, shape in zip(self.heads_out, self.shapes, strict=True)
        )

    # names features.StudentHooks reads (distill/transformer.py pairs them with the teacher's)
    def attention_modules(self) -> list[str]:
        return [f"blocks.{i}.attn_softmax" for i in range(self.depth)]

    def value_modules(self) -> list[str]:
        return [f"blocks.{i}.value_tap" for i in range(self.depth)]

    def hidden_modules(self) -> list[str]:
        return [f"blocks.{i}" for i in range(self.depth)]


# --------------------------------------------------------------------------------------------------
# sizing
# --------------------------------------------------------------------------------------------------


def _vocab(signature: ModelSignature, stats: InputStats, width: int, profile: DeviceProfile) -> int:
    spec = signature.inputs[token_inputs(signature)[0]]
    seen = int(stats.get(spec.name, {}).get("max_id", 255)) + 1
    cap = int(VOCAB_FLASH_SHARE * FLASH_HEADROOM * profile.budgets.max_model_bytes / (4 * width))
    return max(MIN_VOCAB, min(seen, cap))


def _heads(width: int, teacher_heads: int | None) -> int:
    """The teacher's head count when heads of >= MIN_HEAD_DIM fit (per-head attention transfer), else
    the most heads (<= 4) that divide the width with that head size."""
    if teacher_heads and width % teacher_heads == 0 and width // teacher_heads >= MIN_HEAD_DIM:
        return teacher_heads
    return next(h for h in (4, 2, 1) if (width % h == 0 and width // h >= MIN_HEAD_DIM) or h == 1)


@dataclass
class TransformerChoice:
    module: TransformerStudent
    width: int
    depth: int
    heads: int
    vocab: int
    estimate: Any
    reason: str
    teacher: TeacherShape | None
    init: dict[str, Any] = field(default_factory=dict)

    def as_state(self) -> dict[str, Any]:
        return {
            "family": "transformer",
            "width": self.width,
            "depth": self.depth,
            "heads": self.heads,
            "ff": FF_MULT * self.width,
            "vocab": self.vocab,
            "params": self.estimate.params,
            "macs": self.estimate.macs,
            "est_int8_bytes": self.estimate.est_int8_bytes,
            "est_arena_bytes": self.estimate.est_arena_bytes,
            "chosen_because": self.reason,
            "teacher_transformer": None
            if self.teacher is None
            else {"layers": self.teacher.layers, "heads": self.teacher.heads, "width": self.teacher.width},
            "init_from_teacher": self.init,
        }


def choose_transformer(
    signature: ModelSignature,
    profile: DeviceProfile,
    stats: InputStats,
    *,
    teacher: TeacherShape | None = None,
    width: int | None = None,
    depth: int | None = None,
) -> TransformerChoice:
    """Half the teacher's layers and width (module docstring), or the pins; the width shrinks (then the
    depth) until the profile's budgets hold."""
    t_width = teacher.width if teacher is not None else None
    want_depth = depth or (max(1, teacher.layers // 2) if teacher is not None else 2)
    want_width = width or (max(WIDTHS[0], t_width // 2) if t_width else 64)
    widths = [width] if width else [w for w in sorted(WIDTHS, reverse=True) if w <= want_width] or [WIDTHS[0]]
    depths = [want_depth] if depth else list(range(want_depth, 0, -1))
    last: tuple[int, int, Any] | None = None
    for d in depths:
        for w in widths:
            heads = _heads(w, teacher.heads if teacher is not None else None)
            vocab = _vocab(signature, stats, w, profile)
            module = TransformerStudent(signature, w, d, heads, vocab)
            est = measure(module, signature)
            last = (w, d, est)
            if budget_violation(est, profile) is None:
                why = (
                    f"transformer student: {d} of the teacher's {teacher.layers} layers' depth, width {w}"
                    f"{f' of {t_width}' if t_width else ''}, {heads} heads, within the budgets of {profile.name}"
                    if teacher is not None
                    else f"transformer student (options.student.family) width {w} depth {d}, within {profile.name}"
                )
                return TransformerChoice(module, w, d, heads, vocab, est, why, teacher)
    assert last is not None
    w, d, est = last
    raise BudgetError(
        f"no transformer student fits profile {profile.name!r}: the smallest (width {w}, depth {d}) needs "
        f"{budget_violation(est, profile)}"
    )


# --------------------------------------------------------------------------------------------------
# initialisation from the teacher
# --------------------------------------------------------------------------------------------------


def _onnx_token_table(path: Any, token_name: str) -> np.ndarray | None:
    """The initializer a Gather reads with the token ids (the teacher's embedding table), if any."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=True)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == token_name and node.input[0] in inits:
            table = numpy_helper.to_array(inits[node.input[0]])
            if table.ndim == 2:
                return np.asarray(table, dtype=np.float32)
    return None


def _torch_params(teacher: Any) -> list[tuple[str, torch.Tensor]]:
    module = getattr(teacher, "_module", None)
    if module is None:
        return []
    return [(n, p.detach().float().cpu()) for n, p in module.named_parameters()]


def _blocks_of(params: list[tuple[str, torch.Tensor]]) -> dict[int, list[tuple[str, torch.Tensor]]]:
    """Teacher parameters grouped by the first integer path component (blocks.3.qkv.weight -> 3)."""
    out: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for name, p in params:
        parts = name.split(".")
        idx = next((int(x) for x in parts if x.isdigit()), None)
        if idx is not None:
            out.setdefault(idx, []).append((name, p))
    return out


@torch.no_grad()
def init_from_teacher(student: TransformerStudent, teacher: Any, signature: ModelSignature) -> dict[str, Any]:
    """Copy what fits (module docstring); returns what was copied and why the rest was not."""
    from edgedistill.workers.steps.teacher import OnnxTeacher

    copied: list[str] = []
    skipped: list[str] = []
    token_name = signature.inputs[student.token_index].name
    table: np.ndarray | None = None
    params = [] if isinstance(teacher, OnnxTeacher) else _torch_params(teacher)
    if isinstance(teacher, OnnxTeacher):
        table = _onnx_token_table(teacher.path, token_name)
    else:
        # a 2-D parameter of the student's width with a row per id; named like an embedding first
        tables = [
            (n, p) for n, p in params if p.ndim == 2 and p.shape[1] == student.width and p.shape[0] >= student.vocab
        ]
        tables.sort(key=lambda np_: not any(w in np_[0].lower() for w in ("emb", "tok", "word")))
        table = tables[0][1].numpy() if tables else None
    if table is None:
        skipped.append("no token-embedding table found in the teacher")
    elif table.shape[1] != student.width:
        skipped.append(f"embedding: the teacher's width {table.shape[1]} differs from the student's {student.width}")
    else:
        rows = min(student.vocab, table.shape[0])
        student.embedding.weight[:rows] = torch.from_numpy(np.array(table[:rows]))
        copied.append(f"token embedding ({rows} rows of the teacher's {table.shape[0]})")
    if params:
        blocks = _blocks_of(params)
        order = sorted(blocks)
        for i, blk in enumerate(student.blocks):
            src_pos = 2 * i + 1
            if src_pos >= len(order):
                skipped.append(f"block {i}: the teacher has no block {src_pos}")
                continue
            src = blocks[order[src_pos]]
            dst = list(blk.parameters())
            if [tuple(p.shape) for _, p in src] != [tuple(p.shape) for p in dst]:
                skipped.append(f"block {i}: teacher block {order[src_pos]}'s parameter shapes differ")
                continue
            for (_, s), d in zip(src, dst, strict=True):
                d.copy_(s)
            copied.append(f"block {i} <- teacher block {order[src_pos]}")
    else:
        skipped.append(
            "blocks: ONNX teachers' layer weights are not mapped (initializer names and layouts vary by exporter)"
        )
    return {"copied": copied, "not_copied": skipped}


def build_transformer_student(
    signature: ModelSignature, profile: DeviceProfile, student: Any, stats: Mapping[str, Any], *,
    teacher: Any = None, teacher_shape: TeacherShape | None = None, seed: int = 0,
) -> tuple[TransformerStudent, dict[str, Any]]:  # fmt: skip
    """(untrained, seeded module, arch dict) for build_student."""
    choice = choose_transformer(
        signature, profile, dict(stats), teacher=teacher_shape, width=student.width, depth=student.depth
    )
    torch.manual_seed(seed)
    module = TransformerStudent(signature, choice.width, choice.depth, choice.heads, choice.vocab)
    if teacher is not None:
        choice.init = init_from_teacher(module, teacher, signature)
    return module, choice.as_state()


# --------------------------------------------------------------------------------------------------
# the build_student step's branch
# --------------------------------------------------------------------------------------------------


def wants_transformer(options: Any, signature: ModelSignature | None) -> bool:
    """options.student.family transformer, or method transformer with the family left on auto."""
    if signature is None:
        return False
    return options.student.family == "transformer" or (
        options.student.family in ("auto", "best") and options.method == "transformer"
    )


def teacher_shape_of(teacher: Any, inputs: Mapping[str, np.ndarray]) -> TeacherShape | None:
    """Layers, heads and width of a transformer teacher from its graph (features.sequence_taps)."""
    from edgedistill.workers.steps.distill.features import sequence_taps

    taps = sequence_taps(teacher, inputs) if teacher is not None else None
    if taps is None or not taps.layers:
        return None
    att = taps.layers[-1].attention
    hidden = next((layer.hidden for layer in taps.layers if layer.hidden is not None), None)
    return TeacherShape(len(taps.layers), att.shape[0], att.shape[1], hidden.shape[1] if hidden is not None else None)


def auto_transformer(ctx: Any, state: Any) -> TeacherShape | None:
    """The teacher's shape when family auto should build a transformer student: token inputs, a
    transformer graph, and not an MCU profile (TFLite Micro's coverage of the transformer student's
    int8 ops is not proven here). On the review task the conv token student stayed at the majority
    class while the transformer student kept the teacher's accuracy (docs/benchmarks.md). Detection
    failures mean no: the run goes on with the other families."""
    import contextlib

    if ctx.spec.options.student.family != "auto" or ctx.spec.profile.device_class == "mcu":
        return None
    with contextlib.suppress(Exception):
        token_inputs(state.signature)
        return teacher_shape_of(state.teacher, state.data.inputs_of("train"))
    return None


def build_for_run(ctx: Any, state: Any, config: Any, *, auto: TeacherShape | None = None) -> None:
    """BuildStudent for the transformer family: state.student, state.student_arch (the runner's
    over-budget retry pins width/depth through config, as for the other families); auto: the
    teacher's shape when family auto chose this family (auto_transformer), said in chosen_because."""
    from edgedistill.workers.steps.students_multi import input_stats

    opts = ctx.spec.options
    sig = state.signature
    token_inputs(sig)  # refuses other signatures with a readable reason
    train = state.data.inputs_of("train")
    shape = teacher_shape_of(state.teacher, train)
    pins = opts.student.model_copy(
        update={k: v for k, v in (("width", config.width), ("depth", config.depth)) if v is not None}
    )
    module, arch = build_transformer_student(
        sig, ctx.spec.profile, pins, input_stats(sig, train), teacher=state.teacher, teacher_shape=shape,
        seed=opts.seed,
    )  # fmt: skip
    if config.width is not None:
        arch["pinned_by_retry"] = True
    if auto is not None:
        arch["chosen_because"] = (
            f"family auto: the teacher is a transformer ({auto.layers} layers, {auto.heads} heads), so the "
            f"student is one; {arch['chosen_because']}"
        )
    state.student, state.student_arch = module, arch
    ctx.emit(
        "progress",
        {"message": f"student transformer w{arch['width']} d{arch['depth']} h{arch['heads']}: {arch['params']:,} "
         f"params, {arch['macs']:,} MACs ({arch['chosen_because']}); from the teacher: "
         f"{', '.join(arch['init_from_teacher'].get('copied') or ['nothing'])}"},
    )  # fmt: skip


def offer_transformer(ctx: Any, state: Any) -> None:
    """When another family was built for a token teacher whose graph is a transformer, say that
    method transformer exists (a progress event; nothing else changes). Detection failures are
    ignored: this is advice, and the run must not fail on it."""
    import contextlib

    sig = state.signature
    with contextlib.suppress(Exception):
        token_inputs(sig)
        shape = teacher_shape_of(state.teacher, state.data.inputs_of("train"))
        if shape is not None:
            ctx.emit(
                "progress",
                {"message": f"the teacher is a transformer ({shape.layers} layers, {shape.heads} heads): "
                 "options.method transformer distils it into a transformer student with attention transfer"},
            )  # fmt: skip
