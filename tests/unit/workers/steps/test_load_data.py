"""Transfer data: splits, task/modality decisions, validation against the teacher, cached teacher outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from factories import (
    NaNTeacher,
    ProbTeacher,
    digits,
    digits_teacher,
    make_ctx,
    save_teacher,
    vector_regression,
    write_npz,
)

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import DataFileError
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.data import decide_task, infer_modality, make_splits, prepare_labels, primary_targets
from edgedistill.workers.steps.load_data import LoadData
from edgedistill.workers.steps.load_teacher import LoadTeacher


def _run(tmp_path: Path, teacher: Path, data: Path, **options: object) -> tuple[RunState, list]:
    ctx, events = make_ctx(tmp_path, teacher=teacher, data=data, **options)
    state = RunState()
    LoadTeacher().run(ctx, state)
    LoadData().run(ctx, state)
    return state, events


# --------------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------------


def test_splits_are_seeded_disjoint_complete_and_stratified() -> None:
    _, y = digits()
    a, stratified = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.15, seed=3)
    b, _ = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.15, seed=3)
    c, _ = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.15, seed=4)
    assert stratified
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["test"], c["test"])
    allidx = np.concatenate(list(a.values()))
    assert sorted(allidx.tolist()) == list(range(len(y)))
    assert abs(len(a["test"]) - 0.15 * len(y)) <= 1
    overall = np.bincount(y, minlength=10) / len(y)
    for name in ("val", "test"):
        share = np.bincount(y[a[name]], minlength=10) / len(a[name])
        assert np.abs(share - overall).max() < 0.02  # stratified: same class mix as the whole set


def test_rare_classes_fall_back_to_random_splits() -> None:
    y = np.array([0] * 30 + [1] * 2)
    splits, stratified = make_splits(len(y), y, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert not stratified
    assert sum(len(v) for v in splits.values()) == len(y)


def test_too_few_samples() -> None:
    with pytest.raises(InputError, match="at least 10"):
        make_splits(5, None, val_fraction=0.15, test_fraction=0.15, seed=0)


@pytest.mark.parametrize(("shape", "modality"), [((12,), "vector"), ((3, 40), "sequence"), ((1, 8, 8), "image")])
def test_modality_from_sample_shape(shape: tuple[int, ...], modality: str) -> None:
    assert infer_modality(shape) == modality


def test_task_decision() -> None:
    ints, floats = np.array([0, 2, 1]), np.array([0.5, 1.2, 3.0])
    assert decide_task(ints, 3, "auto") == "classification"
    assert decide_task(ints.astype(np.float32), 3, "auto") == "classification"  # integral floats
    assert decide_task(floats, 1, "auto") == "regression"
    assert decide_task(None, 10, "auto") == "classification"
    assert decide_task(None, 1, "auto") == "regression"
    assert decide_task(None, 4, "regression") == "regression"


def test_labels_outside_the_teachers_classes() -> None:
    with pytest.raises(InputError, match=r"range over \[0, 12\] but the teacher has 10 outputs"):
        prepare_labels(np.array([0, 12, 3]), "classification", 10)


# --------------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_load_data_caches_teacher_outputs_per_split(
    digits_teacher_files: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    state, events = _run(tmp_path, digits_teacher_files[fmt], digits_teacher_files["npz"])
    data = state.data
    assert (data.modality, data.task, data.num_outputs, data.sample_shape) == ("image", "classification", 10, (1, 8, 8))
    x, y = digits()
    with torch.inference_mode():
        ref = digits_teacher()(torch.from_numpy(x)).numpy()
    (name,) = state.signature.output_names
    assert state.signature.output(name).kind == "logits" and data.primary_output == name
    for split, idx in data.splits.items():
        np.testing.assert_allclose(state.teacher_outputs[split][name], ref[idx], atol=1e-4, rtol=1e-4)
        np.testing.assert_array_equal(data.y_of(split), y[idx])
    expected_acc = float((ref[data.splits["test"]].argmax(1) == y[data.splits["test"]]).mean())
    assert state.metrics["teacher"]["test_accuracy"] == pytest.approx(expected_acc)
    assert events[-1].progress == 5.0


def test_data_shape_mismatch_is_reported_clearly(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    bad = write_npz(tmp_path / "bad.npz", x=np.zeros((20, 1, 4, 16), np.float32))
    with pytest.raises(
        InputError, match=r"data x has per-sample shape \(1, 4, 16\) but the teacher expects \(1, 8, 8\)"
    ):
        _run(tmp_path, digits_teacher_files["onnx"], bad)


def test_nan_in_x_is_refused(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    x, _ = digits()
    x = x[:50].copy()
    x[7, 0, 3, 3] = np.nan
    bad = write_npz(tmp_path / "bad.npz", x=x)
    with pytest.raises(DataFileError, match="NaN or Inf values in 1 of 50"):
        _run(tmp_path, digits_teacher_files["onnx"], bad)


def test_teacher_producing_nan_is_refused(tmp_path: Path) -> None:
    x, _ = digits()
    teacher = save_teacher(NaNTeacher(), torch.from_numpy(x[:2]), tmp_path / "nan.pt", "torchscript")
    data = write_npz(tmp_path / "d.npz", x=x[:100])
    with pytest.raises(InputError, match="teacher outputs NaN or Inf for 100 of 100"):
        _run(tmp_path, teacher, data)


def test_probability_outputs_become_log_probabilities(tmp_path: Path) -> None:
    x, y = digits()
    teacher = save_teacher(ProbTeacher(digits_teacher()), torch.from_numpy(x[:2]), tmp_path / "p.pt", "torchscript")
    data = write_npz(tmp_path / "d.npz", x=x[:200], y=y[:200])
    state, _ = _run(tmp_path, teacher, data)
    assert any("probabilities" in w for w in state.warnings)
    with torch.inference_mode():
        probs = torch.softmax(digits_teacher()(torch.from_numpy(x[:200])), 1).numpy()
    assert state.signature.outputs[0].kind == "probabilities"
    assert "sum to 1" in state.output_kinds[0]["how"]
    idx = state.data.splits["train"]
    np.testing.assert_allclose(state.teacher_outputs["train"]["output"], probs[idx], atol=1e-5)  # cached as given
    cached = primary_targets(state.data, state.teacher_outputs["train"])
    # softmax of the single-output training view (log-probabilities) gives back the teacher's probabilities
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(cached), 1).numpy(), probs[idx], atol=1e-4)


def test_without_labels_metrics_are_agreement_only(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    x, _ = digits()
    data = write_npz(tmp_path / "d.npz", x=x[:300])
    state, _ = _run(tmp_path, digits_teacher_files["torchscript"], data)
    assert state.data.y is None and state.data.task == "classification"
    assert state.metrics["teacher"] == {"test_accuracy": None}


def test_regression_teacher_with_float_targets(tmp_path: Path) -> None:
    x, y = vector_regression(n=120, features=6, targets=2)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).eval()
    teacher = save_teacher(net, torch.from_numpy(x[:2]), tmp_path / "r.onnx", "onnx")
    data = write_npz(tmp_path / "d.npz", x=x, y=y)
    state, _ = _run(tmp_path, teacher, data)
    assert (state.data.modality, state.data.task, state.data.num_outputs) == ("vector", "regression", 2)
    assert state.data.y.dtype == np.float32 and state.data.y.shape == (120, 2)
    assert "test_rmse" in state.metrics["teacher"]


def test_class_names_from_the_npz(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    x, y = digits()
    names = np.array([f"digit {i}" for i in range(10)])
    data = write_npz(tmp_path / "d.npz", x=x[:200], y=y[:200], class_names=names)
    state, _ = _run(tmp_path, digits_teacher_files["onnx"], data)
    assert state.data.class_labels == names.tolist()


def test_data_is_required(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, teacher=digits_teacher_files["onnx"], data=None)
    state = RunState()
    LoadTeacher().run(ctx, state)
    with pytest.raises(InputError, match="transfer data is required"):
        LoadData().run(ctx, state)


def test_teacher_output_cache_budget_is_computed_and_enforced() -> None:
    from edgedistill.workers.steps.load_data import check_outputs_budget

    assert check_outputs_budget(60_000, [(10,)], 1024) == 60_000 * 10 * 4
    with pytest.raises(InputError, match=r"needs 229 MiB, over options\.teacher_outputs_mb=100"):
        check_outputs_budget(60_000, [(600,), (400,)], 100)


def test_load_data_refuses_an_output_cache_over_budget(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    # 1,797 digits x 10 logits x 4 B = 70 KiB: refused under 0.05 MiB, cached under the default
    with pytest.raises(InputError, match=r"options\.teacher_outputs_mb=0\.05"):
        _run(tmp_path, digits_teacher_files["onnx"], digits_teacher_files["npz"], teacher_outputs_mb=0.05)
    state, _ = _run(tmp_path, digits_teacher_files["onnx"], digits_teacher_files["npz"])
    assert sum(a.nbytes for split in state.teacher_outputs.values() for a in split.values()) == 1797 * 10 * 4
