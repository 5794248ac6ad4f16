"""NAS student search: the grid with kernel/expansion, latency estimates, the Pareto front and a whole
search on a tiny grid under a tight time budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import digits, digits_teacher, make_ctx

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.distill.methods import plan_for
from edgedistill.workers.steps.distill.nas import grid, mcu_latency_ms, pareto_front, search_and_train
from edgedistill.workers.steps.students import StudentArch, estimate, plan_layers


def test_kernel_and_expansion_are_student_dimensions() -> None:
    base = StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2)
    assert base.kernel == 3 and base.expansion == 1  # the defaults are the plain block
    wide = StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2, kernel=5, expansion=2)
    convs = [layer for layer in plan_layers(wide) if layer.kind == "conv"]
    dws = [layer for layer in convs if layer.groups > 1]
    assert all(layer.kernel == (5, 5) and layer.cin == 16 for layer in dws[:1])  # 2 x 8 channels, 5x5
    assert len(convs) == 1 + 3 * 2  # stem + (expand, depthwise, project) per block
    assert estimate(wide).params > estimate(base).params
    seq = StudentArch("ds_cnn1d", (3, 40), 5, 8, 2, kernel=7)
    assert {layer.kernel for layer in plan_layers(seq) if layer.kind == "conv" and layer.groups > 1} == {(1, 7)}


def test_grid_covers_the_dimensions_and_honours_pins() -> None:
    g = grid("ds_cnn2d", (1, 8, 8), 10, {})
    assert len(g) == 13 * 6 * 2 * 3
    assert {a.kernel for a in g} == {3, 5} and {a.expansion for a in g} == {1, 2, 4}
    pinned = grid("ds_cnn2d", (1, 8, 8), 10, {"width": 8, "kernel": 3})
    assert {a.width for a in pinned} == {8} and {a.kernel for a in pinned} == {3}
    assert len(grid("mlp", (6,), 3, {"expansion": 4})) == 8 * 3  # no kernel/expansion for MLPs


def test_mcu_latency_is_macs_times_cycles_over_clock() -> None:
    m4 = builtin_profiles()["mcu-cortex-m4"]
    assert mcu_latency_ms(1_000_000, m4) == pytest.approx(1_000_000 * 2.0 / 80e6 * 1e3)
    assert mcu_latency_ms(1_000, builtin_profiles()["cpu-x86"]) is None


def test_pareto_front() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.4), (4.0, 0.9)]
    assert pareto_front(points) == [True, True, False, False, True, True]


def test_search_on_a_tiny_grid_within_a_tight_budget(tmp_path: Path) -> None:
    x, y = digits()
    x, y = x[:300], y[:300]
    splits, _ = make_splits(len(y), y, val_fraction=0.2, test_fraction=0.1, seed=0)
    with torch.inference_mode():
        t = digits_teacher()(torch.from_numpy(x)).numpy()
    state = RunState()
    state.data = TransferData(x=x, y=y, splits=splits, modality="image", task="classification", num_outputs=10)
    state.teacher_outputs = {k: t[v] for k, v in splits.items()}
    ctx, _ = make_ctx(
        tmp_path, profile="mcu-cortex-m4", method="nas", epochs=2, batch_size=64, device="cpu",
        nas_time_budget_s=3, nas_max_candidates=4, nas_proxy_epochs=1, nas_finalists=2,
        student={"depth": 2, "expansion": 1},
    )  # fmt: skip
    plan = plan_for(ctx.spec.options, task="classification", has_labels=True, modality="image", train_samples=210,
                    num_outputs=10, has_data=True, has_init=False)  # fmt: skip
    started = time.monotonic()
    student, fitted = search_and_train(ctx, state, plan, 5.0, 70.0)
    assert time.monotonic() - started < 30  # 3 s budget + at least one epoch per finalist
    nas = state.distillation["nas"]
    cands = nas["candidates"]
    assert nas["search_space"]["size"] == 13 * 2 and nas["search_space"]["dimensions"][-2:] == ["kernel", "expansion"]
    tried = [c for c in cands if c["proxy_val_fidelity"] is not None]
    assert 1 <= len(tried) <= 4
    assert all(c["latency_source"] == "estimated" and c["latency_ms"] > 0 for c in tried)
    chosen = [c for c in cands if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["status"] == "finalist" and chosen[0]["final_val_fidelity"] is not None
    assert nas["chosen"] == chosen[0]["label"]
    # the finalists are the front first, topped up by proxy score when the front is smaller than 2
    # (which one wins the full training varies by host, so only the selection rule is asserted)
    finalists = [c for c in cands if c["status"] == "finalist"]
    front = [c for c in tried if c["pareto"]]
    assert len(finalists) == min(2, len(tried))
    assert sum(c["pareto"] for c in finalists) == min(len(front), 2)  # so a front of <= 2 is all in
    assert "on the Pareto front" in state.student_arch["chosen_because"]
    assert state.student is student and state.student_arch["width"] == chosen[0]["width"]
    assert state.student_arch["depth"] == 2 and "NAS" in state.student_arch["chosen_because"]
    assert all("why_not" in c for c in cands if c["status"] == "infeasible")
    assert np.isfinite(fitted.result.best_val_fidelity)
