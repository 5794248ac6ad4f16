"""Lifelong distillation: an earlier student's weights come back from its ONNX file (BN folded there)
into a torch student of the same architecture, computing the same function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.contracts.errors import InputError
from edgedistill.workers.steps.distill.lifelong import import_onnx_weights, read_previous_arch
from edgedistill.workers.steps.export_onnx import export_student_onnx, torch_predict
from edgedistill.workers.steps.students import MLP, StudentArch, build_module


def _perturbed(arch: StudentArch, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_module(arch)
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    return m.eval()


@pytest.mark.parametrize(
    "arch",
    [
        StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3),
        StudentArch("ds_cnn2d", (3, 12, 12), 4, 6, 2, kernel=5, expansion=2),
        StudentArch("ds_cnn1d", (3, 40), 5, 8, 2),
    ],
)
def test_cnn_weights_round_trip_through_the_onnx_file(arch: StudentArch, tmp_path: Path) -> None:
    earlier = _perturbed(arch, 0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(64, *arch.input_shape)).astype(np.float32)
    path = tmp_path / "student_fp32.onnx"
    export_student_onnx(earlier, x[:1], path)
    fresh = build_module(arch)
    import_onnx_weights(fresh, path, x)
    np.testing.assert_allclose(torch_predict(fresh, x), torch_predict(earlier, x), rtol=1e-4, atol=1e-4)
    # BatchNorm now carries the new data's statistics: in train mode (batch statistics) on that data
    # the imported student still computes nearly the earlier function
    fresh.train()
    with torch.no_grad():
        train_out = fresh(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(train_out, torch_predict(earlier, x), rtol=1e-3, atol=1e-3)


def test_mlp_round_trip_keeps_an_input_standardisation_for_the_new_data(tmp_path: Path) -> None:
    arch = StudentArch("mlp", (6,), 3, 16, 2)
    rng = np.random.default_rng(1)
    old_x = (rng.normal(size=(200, 6)) * np.logspace(-1, 2, 6)).astype(np.float32)
    torch.manual_seed(0)
    earlier = build_module(arch)
    assert isinstance(earlier, MLP)
    earlier.set_input_statistics(torch.from_numpy(old_x).mean(0), torch.from_numpy(old_x).std(0))
    earlier.fold_input_standardization()
    path = tmp_path / "m.onnx"
    export_student_onnx(earlier, old_x[:1], path)
    new_x = (rng.normal(size=(150, 6)) * 3 + 1).astype(np.float32)
    fresh = build_module(arch)
    assert isinstance(fresh, MLP)
    import_onnx_weights(fresh, path, new_x)
    np.testing.assert_allclose(fresh.input_mean.numpy(), new_x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(torch_predict(fresh, old_x), torch_predict(earlier, old_x), rtol=1e-4, atol=1e-3)


def test_an_onnx_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    x = np.zeros((2, 1, 8, 8), np.float32)
    path = tmp_path / "m.onnx"
    export_student_onnx(_perturbed(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3), 0), x[:1], path)
    with pytest.raises(InputError, match=r"do not match|does not fit"):
        import_onnx_weights(build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 2)), path, x)
    with pytest.raises(InputError, match="does not fit"):
        import_onnx_weights(build_module(StudentArch("ds_cnn2d", (1, 8, 8), 10, 12, 3)), path, x)


def test_the_architecture_comes_from_the_earlier_report(tmp_path: Path) -> None:
    arch = StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3, kernel=5, expansion=2)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"student": {**arch.to_dict(), "params": 1}}))
    assert read_previous_arch(report) == arch
    old = {"family": "ds_cnn2d", "input_shape": [1, 8, 8], "num_outputs": 10, "width": 8, "depth": 3}
    report.write_text(json.dumps({"student": old}))  # reports written before kernel/expansion existed
    assert read_previous_arch(report) == StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3)
    with pytest.raises(InputError, match=r"report\.json"):
        read_previous_arch(tmp_path / "missing.json")
    report.write_text("{}")
    with pytest.raises(InputError, match="no usable student section"):
        read_previous_arch(report)
