"""Intermediate features from ONNX, TorchScript and torch.export teachers (checked against forward
hooks on the original torch module), automatic and named pairing, and the bounded feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from factories import digits, digits_teacher

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import FeatureOptions, FeaturePair
from edgedistill.workers.steps.distill.features import (
    Pair,
    StudentHooks,
    Tap,
    TorchTaps,
    auto_pairs,
    fit_cache,
    plan_features,
    student_taps,
    teacher_taps,
)
from edgedistill.workers.steps.students import StudentArch, build_module
from edgedistill.workers.steps.teacher import load_teacher

# DigitsTeacher: ReLU(16x8x8), ReLU(32x8x8), MaxPool(32x4x4), head ReLU(40)
EXPECTED_SHAPES = [(16, 8, 8), (32, 8, 8), (32, 4, 4), (40,)]


def _reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same tensors from forward hooks on the torch module the files were saved from."""
    model = digits_teacher()
    got: dict[str, np.ndarray] = {}
    mods = {"relu0": model.features[2], "relu1": model.features[5], "pool": model.features[6], "head": model.head[2]}
    mods |= {"bn0_in": model.features[1], "bn1_in": model.features[4]}
    handles = []
    for name, m in mods.items():

        def hook(_m: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name) -> None:
            got[name] = (inp[0] if name.endswith("_in") else out).detach().numpy().copy()

        handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return got


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_teacher_features_from_the_graph_match_the_module(fmt: str, digits_teacher_files: dict[str, Path]) -> None:
    x, _ = digits()
    teacher = load_teacher(digits_teacher_files[fmt])
    taps = teacher_taps(teacher, x[:4])
    assert [t.shape for t in taps.candidates] == EXPECTED_SHAPES
    assert [t.index for t in taps.candidates] == [0, 1, 2, 3]
    ref = _reference(x[:37])
    names = [t.name for t in taps.candidates]
    batches = list(taps.run(x[:37], names, batch_size=16))  # several batches, a short last one
    feats = [np.concatenate([b[i] for b in batches]) for i in range(len(names))]
    for got, key in zip(feats, ("relu0", "relu1", "pool", "head"), strict=True):
        np.testing.assert_allclose(got, ref[key], rtol=1e-4, atol=1e-4)
    if fmt == "pt2":
        assert taps.find("features.6") is taps.candidates[2]  # module paths also name the taps
    if fmt != "onnx":  # torch teachers: BatchNorm inputs and running statistics for DeepInversion
        assert isinstance(taps, TorchTaps) and taps.differentiable
        model = digits_teacher()
        assert len(taps.bn_layers) == 2
        for (name, mean, var), bn, key in zip(
            taps.bn_layers, (model.features[1], model.features[4]), ("bn0_in", "bn1_in"), strict=True
        ):
            torch.testing.assert_close(mean, bn.running_mean)
            torch.testing.assert_close(var, bn.running_var)
            _, (bn_in,) = taps.forward(torch.from_numpy(x[:37]), [name])
            np.testing.assert_allclose(bn_in.detach().numpy(), ref[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torch_teacher_taps_are_differentiable(fmt: str, digits_teacher_files: dict[str, Path]) -> None:
    x, _ = digits()
    taps = teacher_taps(load_teacher(digits_teacher_files[fmt]), x[:4])
    assert isinstance(taps, TorchTaps)
    inp = torch.from_numpy(x[:3].copy()).requires_grad_()
    out, (feat,) = taps.forward(inp, [taps.candidates[1].name])
    (out.sum() + feat.sum()).backward()
    assert inp.grad is not None and inp.grad.abs().sum() > 0


def _tap(name: str, shape: tuple[int, ...], index: int, count: int) -> Tap:
    return Tap(name, shape, index, count)


def test_auto_pairing_by_resolution_then_depth() -> None:
    students = [
        _tap("s_stem", (8, 16, 16), 0, 4),
        _tap("s_b1", (16, 8, 8), 1, 4),
        _tap("s_b2", (16, 8, 8), 2, 4),
        _tap("s_b3", (32, 4, 4), 3, 4),
    ]
    teachers = [
        _tap("t1", (64, 16, 16), 0, 6),
        _tap("t2", (64, 16, 16), 1, 6),
        _tap("t3", (128, 8, 8), 2, 6),
        _tap("t4", (128, 8, 8), 3, 6),
        _tap("t5", (256, 4, 4), 4, 6),
        _tap("t6", (512,), 5, 6),
    ]
    pairs = auto_pairs(students, teachers, max_pairs=2)
    # the deepest student tap of the two deepest resolutions, each with the same-resolution teacher tap
    # closest in relative depth (s_b2 depth 0.75: t4 0.67 beats t3 0.5)
    assert [(p.student.name, p.teacher.name) for p in pairs] == [("s_b2", "t4"), ("s_b3", "t5")]
    assert all(p.how == "same resolution, closest depth" for p in pairs)
    three = auto_pairs(students, teachers, max_pairs=3)
    assert [(p.student.name, p.teacher.name) for p in three] == [("s_stem", "t2"), ("s_b2", "t4"), ("s_b3", "t5")]


def test_auto_pairing_pools_larger_teacher_maps_and_falls_back_to_vectors() -> None:
    students = [_tap("s_a", (8, 4, 4), 0, 2), _tap("s_b", (16, 2, 2), 1, 2)]
    teachers = [_tap("t_a", (32, 8, 8), 0, 2), _tap("t_b", (40,), 1, 2)]
    pairs = auto_pairs(students, teachers, max_pairs=2)
    assert [(p.student.name, p.teacher.name) for p in pairs] == [("s_a", "t_a"), ("s_b", "t_b")]
    assert pairs[0].grid == (4, 4) and pairs[0].teacher_shape == (32, 4, 4)  # teacher pooled to 4x4
    assert pairs[1].grid == () and pairs[1].student_shape == (16,)  # student pooled to a vector
    seq = auto_pairs([_tap("s", (8, 1, 10), 0, 1)], [_tap("t", (12, 10), 0, 1)], max_pairs=1)
    assert seq[0].teacher.norm_shape == (12, 1, 10) and seq[0].grid == (1, 10)  # (C, T) is (C, 1, T)


def test_the_cache_pools_then_drops_pairs_to_fit_its_budget() -> None:
    s, t = _tap("s", (8, 8, 8), 0, 2), _tap("t", (16, 8, 8), 0, 2)
    s2, t2 = _tap("s2", (8, 4, 4), 1, 2), _tap("t2", (16, 4, 4), 1, 2)
    pairs = [Pair(s, t, (8, 8), "x"), Pair(s2, t2, (4, 4), "x")]
    n = 100
    full = n * 2 * (16 * 64 + 16 * 16)  # float16
    same, notes = fit_cache(pairs, n, full)
    assert same == pairs and notes == []
    smaller, notes = fit_cache(pairs, n, full - 1)
    assert smaller[0].grid == (4, 4) and smaller[1].grid == (4, 4) and "cached at 4x4" in notes[0]
    tiny, notes = fit_cache(pairs, n, n * 2 * 16)  # one 1x1 map of 16 channels
    assert len(tiny) == 1 and tiny[0].student.name == "s2" and tiny[0].grid == (1, 1)
    assert any("dropped pair s <- t" in m for m in notes)
    with pytest.raises(InputError, match=r"features\.cache_mb"):
        fit_cache(pairs, n, 10)


def test_plan_features_caches_float16_teacher_features_and_hooks_the_student(
    digits_teacher_files: dict[str, Path],
) -> None:
    x, _ = digits()
    teacher = load_teacher(digits_teacher_files["onnx"])
    torch.manual_seed(0)
    student = build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2))
    plan = plan_features(teacher, student, x[:50], FeatureOptions(max_pairs=2))
    names = [(p.student.name, p.teacher.name) for p in plan.pairs]
    # the stem (8x8) with the teacher's first ReLU, the deepest 4x4 block with its max-pool
    assert names[0][1].endswith("features.2/Relu_output_0") and names[1][1].endswith("MaxPool_output_0")
    ref = _reference(x[:50])
    assert plan.cache[1].dtype == np.float16 and plan.cache[1].shape == (50, 32, 4, 4)
    np.testing.assert_allclose(plan.cache[0].astype(np.float32), ref["relu0"], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(plan.cache[1].astype(np.float32), ref["pool"], rtol=2e-3, atol=2e-3)
    assert plan.cache_bytes() == sum(c.nbytes for c in plan.cache)
    with plan.hooks(student) as hooks:
        student(torch.from_numpy(x[:5]))
        feats = hooks.collect()
    assert [tuple(f.shape[1:]) for f in feats] == [p.student_shape for p in plan.pairs]
    assert not any(m._forward_hooks for m in student.modules())  # removed after training
    described = plan.describe()
    assert described["cache"]["samples"] == 50 and described["teacher_candidates"]


def test_named_pairs_override_and_unknown_names_list_the_candidates(digits_teacher_files: dict[str, Path]) -> None:
    x, _ = digits()
    teacher = load_teacher(digits_teacher_files["torchscript"])
    student = build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2))
    s_names = [t.name for t in student_taps(student, x[:4])]
    opts = FeatureOptions(pairs=[FeaturePair(student=s_names[0], teacher="relu#0")])
    plan = plan_features(teacher, student, x[:20], opts)
    assert [(p.student.name, p.teacher.name, p.how) for p in plan.pairs] == [
        (s_names[0], "relu#0", "named in options.features.pairs")
    ]
    with pytest.raises(InputError, match=r"no feature 'nope'; candidates: relu#0, relu#1, max_pool2d#0"):
        plan_features(teacher, student, x[:20], FeatureOptions(pairs=[FeaturePair(student=s_names[0], teacher="nope")]))


def test_student_hooks_refuse_unknown_layers() -> None:
    student = build_module(StudentArch("mlp", (6,), 3, 8, 2))
    with pytest.raises(InputError, match=r"no layer 'body\.9'"), StudentHooks(student, ["body.9"]):
        pass
