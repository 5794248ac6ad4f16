"""The anchor grid of a detector teacher, inferred from its own outputs.

SSD-style detectors (BlazeFace, SSD-MobileNet) emit A anchors = sum over a few feature levels of
k_s * (H / s) * (W / s), levels ordered fine to coarse, and within a level either position-major
(the k anchors of one cell consecutive: BlazeFace's 16x16x2 + 8x8x6 = 896) or anchor-major (all cells
of anchor 0, then anchor 1, ...). Several factorisations fit most A, so each candidate is scored on
the teacher's cached outputs: anchors the layout puts at the same cell or at horizontally / vertically
neighbouring cells see nearly the same image region and their outputs correlate strongly across
samples; a wrong layout pairs anchors far apart. The best candidate must beat the best score the same
search reaches on anchors shuffled at random (chance), else there is no grid (the caller keeps a
learned assignment).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

STRIDES = (2, 4, 8, 16, 32, 64)
MAX_LEVELS = 3
MAX_PER_CELL = 9
# the best layout's score must exceed chance (best score over shuffled anchors) by this much (a
# correlation difference); BlazeFace's true layout scores ~0.5 above its shuffled best
MIN_MARGIN = 0.1
CHANCE_SHUFFLES = 3
MAX_SAMPLES = 256  # enough to separate the layouts; bounds the (A, N * d) correlation product

Order = Literal["position", "anchor"]


@dataclass(frozen=True)
class Level:
    stride: int
    rows: int
    cols: int
    per_cell: int  # k anchors per cell

    @property
    def anchors(self) -> int:
        return self.rows * self.cols * self.per_cell


@dataclass(frozen=True)
class AnchorGrid:
    levels: tuple[Level, ...]
    order: Order  # "position": the k anchors of a cell consecutive; "anchor": k blocks of all cells

    @property
    def anchors(self) -> int:
        return sum(lv.anchors for lv in self.levels)

    def label(self) -> str:
        cells = " + ".join(f"{lv.rows}x{lv.cols}x{lv.per_cell}" for lv in self.levels)
        return f"{cells} ({self.order}-major)"

    def as_state(self) -> dict[str, Any]:
        return {
            "levels": [
                {"stride": lv.stride, "rows": lv.rows, "cols": lv.cols, "per_cell": lv.per_cell} for lv in self.levels
            ],
            "order": self.order,
            "anchors": self.anchors,
        }

    def cell_indices(self) -> list[np.ndarray]:
        """Per level, (rows, cols, k) int: the output index of every anchor."""
        out, start = [], 0
        for lv in self.levels:
            idx = np.arange(start, start + lv.anchors)
            if self.order == "position":
                out.append(idx.reshape(lv.rows, lv.cols, lv.per_cell))
            else:  # k outermost
                out.append(idx.reshape(lv.per_cell, lv.rows, lv.cols).transpose(1, 2, 0))
            start += lv.anchors
        return out


@dataclass(frozen=True)
class GridInference:
    grid: AnchorGrid | None
    score: float  # mean neighbour correlation of the best layout
    chance: float  # the best score over shuffled anchors
    candidates: int
    reason: str


def candidate_grids(anchors: int, height: int, width: int) -> list[AnchorGrid]:
    """Every layout of at most MAX_LEVELS strides (fine to coarse) dividing the input with 1..9 anchors
    per cell whose anchors add up to `anchors`, in both orders."""
    strides = [s for s in STRIDES if height % s == 0 and width % s == 0 and height // s >= 1]
    out: list[AnchorGrid] = []
    for n in range(1, MAX_LEVELS + 1):
        for combo in itertools.combinations(strides, n):
            cells = [(height // s) * (width // s) for s in combo]
            for ks in itertools.product(range(1, MAX_PER_CELL + 1), repeat=n):
                if sum(c * k for c, k in zip(cells, ks, strict=True)) != anchors:
                    continue
                levels = tuple(Level(s, height // s, width // s, k) for s, k in zip(combo, ks, strict=True))
                out.append(AnchorGrid(levels, "position"))
                if any(k > 1 for k in ks):
                    out.append(AnchorGrid(levels, "anchor"))
    return out


def _features(outputs: Sequence[np.ndarray], anchors: int) -> np.ndarray:
    """(A, F): each anchor's values over samples (every output's channels), standardised per anchor
    and channel, so that a dot product / F is a correlation."""
    cols = []
    for out in outputs:
        x = np.asarray(out[:MAX_SAMPLES], dtype=np.float64)
        x = x.reshape(x.shape[0], anchors, -1)
        x = x - x.mean(0, keepdims=True)
        sd = x.std(0, keepdims=True)
        x = np.where(sd > 1e-9, x / np.where(sd > 1e-9, sd, 1.0), 0.0)
        cols.append(x.transpose(1, 0, 2).reshape(anchors, -1))  # (A, N * d)
    f = np.concatenate(cols, axis=1)
    return f / np.sqrt(max(1, f.shape[1]))


def _pairs(grid: AnchorGrid) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (a, b) the layout calls neighbours, per kind: same cell, next column, next row."""
    kinds: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []), ([], []), ([], [])]
    for idx in grid.cell_indices():
        for kind, (a, b) in zip(
            kinds, ((idx[:, :, :-1], idx[:, :, 1:]), (idx[:, :-1], idx[:, 1:]), (idx[:-1], idx[1:])), strict=True
        ):
            kind[0].append(a.ravel())
            kind[1].append(b.ravel())
    pairs = [(np.concatenate(a), np.concatenate(b)) for a, b in kinds]
    return [(a, b) for a, b in pairs if a.size]


def layout_score(grid: AnchorGrid, corr: np.ndarray) -> float:
    """Mean over the kinds of neighbour (same cell, right, below) of the mean correlation (corr: the
    (A, A) anchor correlation matrix) of the anchor pairs the layout calls neighbours."""
    kinds = _pairs(grid)
    if not kinds:
        return float("-inf")
    return float(np.mean([corr[a, b].mean() for a, b in kinds]))


def infer_grid(outputs: Sequence[np.ndarray], anchors: int, height: int, width: int, seed: int = 0) -> GridInference:
    """The anchor grid of per-anchor teacher outputs, each (N, A, ...) over the same A anchors, for an
    input of height x width (see the module docstring)."""
    cands = candidate_grids(anchors, height, width)
    if not cands:
        return GridInference(
            None,
            0.0,
            0.0,
            0,
            f"no grid of <= {MAX_LEVELS} levels of strides {STRIDES} "
            f"with <= {MAX_PER_CELL} anchors per cell gives {anchors} anchors for {height}x{width}",
        )
    n = min(int(o.shape[0]) for o in outputs) if outputs else 0
    if n < 8:
        return GridInference(None, 0.0, 0.0, len(cands), f"{n} teacher samples: too few to tell the layouts apart")
    feats = _features([o[:n] for o in outputs], anchors)
    corr = (feats.astype(np.float32) @ feats.astype(np.float32).T).astype(np.float64)
    scores = [layout_score(g, corr) for g in cands]
    best = int(np.argmax(scores))
    rng = np.random.default_rng(seed)
    chance = float("-inf")
    for _ in range(CHANCE_SHUFFLES):
        perm = rng.permutation(anchors)
        shuffled = corr[perm][:, perm]
        chance = max(chance, max(layout_score(g, shuffled) for g in cands))
    ranked = sorted(scores, reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else float("-inf")
    grid = cands[best]
    score = scores[best]
    if score - chance < MIN_MARGIN:
        return GridInference(
            None,
            score,
            chance,
            len(cands),
            f"no layout of the {len(cands)} that fit {anchors} "
            f"anchors beats chance: best {grid.label()} scores {score:.3f}, shuffled anchors "
            f"{chance:.3f} (needs +{MIN_MARGIN})",
        )
    return GridInference(
        grid,
        score,
        chance,
        len(cands),
        f"{grid.label()} of {len(cands)} layouts that fit "
        f"{anchors} anchors: neighbour correlation {score:.3f} (next best {runner_up:.3f}, "
        f"shuffled anchors {chance:.3f}) over {n} teacher samples",
    )


def per_anchor_count(per_sample: Sequence[int]) -> int:
    return int(np.prod(per_sample[:-1])) if len(per_sample) >= 2 else 1


def infer_grids(
    signature: Any, teacher_outputs: Mapping[str, np.ndarray] | None, image_hw: tuple[int, int] | None
) -> dict[int, GridInference]:
    """One inference per anchor count shared by the signature's trained per-anchor outputs (outputs of
    the same A are scored together: a detector's boxes and scores share the grid), keyed by A."""
    from edgedistill.contracts.signature import UNTRAINED_KINDS

    if image_hw is None:
        return {}
    groups: dict[int, list[np.ndarray]] = {}
    for out in signature.outputs:
        if out.kind in UNTRAINED_KINDS or any(d is None for d in out.per_sample):
            continue
        a = per_anchor_count([int(d) for d in out.per_sample])
        if a <= 1:
            continue
        arr = (teacher_outputs or {}).get(out.name)
        groups.setdefault(a, [])
        if arr is not None and arr.ndim >= 2 and arr.shape[0] > 0:
            groups[a].append(np.asarray(arr).reshape(arr.shape[0], a, -1))
    return {a: infer_grid(outs, a, *image_hw) for a, outs in groups.items()}
