"""Student families: the planned estimates match the built modules, every family exports with
torch.export, and the automatic size respects the profile's budgets and the teacher's size."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import custom_profile, digits, make_ctx
from torch.utils.flop_counter import FlopCounterMode

from edgedistill.contracts.errors import BudgetError
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.build_student import BuildStudent, BuildStudentConfig
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.students import (
    CNN_WIDTHS,
    MLP,
    PREFERRED_MIN_DEPTH,
    TEACHER_BYTES_RATIO,
    TEACHER_PARAM_RATIO,
    StudentArch,
    budget_violation,
    build_module,
    choose_arch,
    estimate,
    shrink,
)

ARCHES = [
    StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3),
    StudentArch("ds_cnn2d", (3, 32, 32), 4, 12, 4),
    StudentArch("ds_cnn1d", (3, 40), 5, 8, 2),
    StudentArch("ds_cnn1d", (2, 128), 3, 6, 5),
    StudentArch("mlp", (20,), 3, 16, 2),
]


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: f"{a.family}-{a.width}x{a.depth}")
def test_estimates_match_the_built_module(arch: StudentArch) -> None:
    module = build_module(arch).eval()
    est = estimate(arch)
    total = sum(p.numel() for p in module.parameters())
    bn_bias = sum(m.bias.numel() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # Folding BN into a bias-free conv leaves one bias per channel: BN's scale parameters disappear.
    assert est.params == total - bn_bias
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = module(torch.zeros(1, *arch.input_shape))
    assert est.macs == counter.get_total_flops() // 2
    assert out.shape == (1, arch.num_outputs)
    assert est.est_int8_bytes > est.params  # int8 weights plus int32 biases plus flatbuffer overhead
    assert est.est_arena_bytes > int(np.prod(arch.input_shape))  # at least the int8 input is live


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: f"{a.family}-{a.width}x{a.depth}")
def test_every_family_exports_with_torch_export(arch: StudentArch) -> None:
    module = build_module(arch).eval()
    example = torch.randn(2, *module.export_input_shape)
    program = torch.export.export(module, (example,))
    np.testing.assert_allclose(program.module()(example).detach().numpy(), module(example).detach().numpy(), atol=1e-5)


def test_sequence_students_take_3d_or_4d_input_alike() -> None:
    module = build_module(StudentArch("ds_cnn1d", (3, 40), 5, 8, 2)).eval()
    x = torch.randn(4, 3, 40)
    assert module.export_input_shape == (3, 1, 40)
    torch.testing.assert_close(module(x), module(x.unsqueeze(2)))


def test_mlp_standardization_folds_into_the_first_layer() -> None:
    module = build_module(StudentArch("mlp", (5,), 3, 16, 2))
    assert isinstance(module, MLP)
    x = torch.randn(64, 5) * torch.tensor([0.01, 1.0, 10.0, 100.0, 1000.0]) + 50
    module.set_input_statistics(x.mean(0), x.std(0))
    module.eval()
    before = module(x)
    split = module.standardized_input_module()
    module.fold_input_standardization()
    assert isinstance(module.standardize, torch.nn.Identity)
    torch.testing.assert_close(module(x), before, rtol=1e-4, atol=1e-3)
    # the same network on inputs standardised outside the model, before and after folding
    for mean, std, body in (split, module.standardized_input_module()):
        torch.testing.assert_close(mean, x.mean(0))
        torch.testing.assert_close(body((x - mean) / std), before, rtol=1e-4, atol=1e-3)


def test_auto_size_fits_the_budgets_and_is_much_smaller_than_the_teacher() -> None:
    profile = builtin_profiles()["mcu-cortex-m4"]
    choice = choose_arch(
        modality="image", input_shape=(3, 64, 64), num_outputs=10, profile=profile, teacher_params=2_000_000
    )
    assert budget_violation(choice.estimate, profile) is None
    assert choice.estimate.params <= 2_000_000 // TEACHER_PARAM_RATIO
    # the largest such student: one width step up breaks a budget or the teacher ratio
    wider = [w for w in CNN_WIDTHS if w > choice.arch.width]
    assert wider
    est = estimate(replace(choice.arch, width=wider[0]))
    assert budget_violation(est, profile) is not None or est.params > 2_000_000 // TEACHER_PARAM_RATIO
    assert choice.as_state()["chosen_because"]


def test_teacher_file_size_steers_to_a_compact_student_when_one_exists() -> None:
    profile = builtin_profiles()["cpu-x86"]
    kw = {"modality": "image", "input_shape": (1, 8, 8), "num_outputs": 10, "profile": profile}
    by_params = choose_arch(teacher_params=640_000, **kw)
    teacher_bytes = 2_560_000
    compact = choose_arch(teacher_params=640_000, teacher_bytes=teacher_bytes, **kw)
    assert compact.estimate.est_int8_bytes <= teacher_bytes // TEACHER_BYTES_RATIO
    assert compact.estimate.params <= by_params.estimate.params
    assert "teacher file" in compact.reason
    # A teacher file so small that no deep student reaches the ratio: the parameter rule alone decides.
    fallback = choose_arch(teacher_params=640_000, teacher_bytes=1_000, **kw)
    assert fallback.arch == by_params.arch


def test_a_tighter_budget_gives_a_smaller_student() -> None:
    loose = builtin_profiles()["mcu-cortex-m7"]
    tight = custom_profile("mcu-cortex-m4", max_ram_bytes=48 * 1024, max_macs=2_000_000)
    kw = {"modality": "image", "input_shape": (3, 64, 64), "num_outputs": 10, "teacher_params": None}
    big, small = choose_arch(profile=loose, **kw), choose_arch(profile=tight, **kw)
    assert small.estimate.params < big.estimate.params
    assert small.estimate.est_arena_bytes <= 0.85 * 48 * 1024
    assert small.estimate.macs <= 2_000_000


def test_pinned_width_and_depth() -> None:
    profile = builtin_profiles()["cpu-x86"]
    choice = choose_arch(
        modality="vector", input_shape=(12,), num_outputs=3, profile=profile, teacher_params=None, width=64, depth=2
    )
    assert (choice.arch.family, choice.arch.width, choice.arch.depth) == ("mlp", 64, 2)
    assert "set in the options" in choice.reason


def test_no_student_fits_names_the_budget() -> None:
    profile = custom_profile("mcu-cortex-m4", max_macs=1000)
    with pytest.raises(BudgetError, match=r"no ds_cnn2d student fits profile 'mcu-cortex-m4-custom'.*max_macs=1,000"):
        choose_arch(modality="image", input_shape=(3, 96, 96), num_outputs=2, profile=profile, teacher_params=None)
    with pytest.raises(BudgetError, match="with width 256 and depth 6"):
        choose_arch(
            modality="image", input_shape=(3, 96, 96), num_outputs=2, profile=builtin_profiles()["mcu-cortex-m4"],
            teacher_params=None, width=256, depth=6,
        )  # fmt: skip


def test_tiny_teacher_warns_instead_of_failing() -> None:
    choice = choose_arch(
        modality="vector", input_shape=(8,), num_outputs=2, profile=builtin_profiles()["cpu-x86"], teacher_params=50
    )
    assert choice.warnings and "not 8x fewer" in choice.warnings[0]


def test_shrink_walks_down_to_the_smallest() -> None:
    arch: StudentArch | None = StudentArch("ds_cnn2d", (1, 8, 8), 10, 32, 3)
    sizes = []
    while arch is not None:
        sizes.append(estimate(arch).params)
        arch = shrink(arch)
    assert all(a > b for a, b in itertools.pairwise(sizes))
    assert len(sizes) > 3


def test_build_student_step_writes_module_and_arch(tmp_path: Path) -> None:
    x, y = digits()
    splits, _ = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.15, seed=0)
    state = RunState()
    state.data = TransferData(x=x, y=y, splits=splits, modality="image", task="classification", num_outputs=10)

    class _Teacher:
        param_count = 40_000

    state.teacher = _Teacher()
    ctx, events = make_ctx(tmp_path, seed=1)
    BuildStudent().run(ctx, state)
    arch = state.student_arch
    assert {"family", "width", "depth", "params", "macs", "est_int8_bytes", "est_arena_bytes", "chosen_because"} <= set(
        arch
    )
    assert arch["params"] <= 40_000 // TEACHER_PARAM_RATIO
    assert "input_standardization" not in arch  # only vector students standardise their inputs
    assert state.student(torch.from_numpy(x[:3])).shape == (3, 10)
    assert "student ds_cnn2d" in events[-1].data["message"]

    BuildStudent(BuildStudentConfig(width=4, depth=1)).run(ctx, state)  # the runner's shrink retry
    assert (state.student_arch["width"], state.student_arch["depth"]) == (4, 1)


def test_auto_size_prefers_depth_over_one_wide_block() -> None:
    profile = builtin_profiles()["mcu-cortex-m4"]
    for modality, shape in (("sequence", (3, 64)), ("vector", (10,))):
        choice = choose_arch(
            modality=modality, input_shape=shape, num_outputs=4, profile=profile, teacher_params=60_000
        )
        assert choice.arch.depth >= PREFERRED_MIN_DEPTH[choice.arch.family]
        shallow = choose_arch(
            modality=modality, input_shape=shape, num_outputs=4, profile=profile, teacher_params=60_000, depth=1
        )
        assert shallow.arch.depth == 1  # a pinned depth is kept


def test_vector_students_record_their_input_standardization(tmp_path: Path) -> None:
    from factories import vector_regression

    x, y = vector_regression(n=100, features=6, targets=2)
    splits, _ = make_splits(len(x), None, val_fraction=0.15, test_fraction=0.15, seed=0)
    state = RunState()
    state.data = TransferData(x=x, y=y, splits=splits, modality="vector", task="regression", num_outputs=2)
    ctx, _ = make_ctx(tmp_path, profile="cpu-x86")
    BuildStudent().run(ctx, state)
    stats = state.student_arch["input_standardization"]
    np.testing.assert_allclose(stats["mean"], x[splits["train"]].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["std"], x[splits["train"]].std(0, ddof=1), rtol=1e-4)
