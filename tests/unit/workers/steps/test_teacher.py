"""Teachers: every format predicts what the torch model computes, reports size and cost, and unsafe
ONNX external data is refused before onnxruntime opens anything."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from factories import DigitsTeacher, digits, digits_teacher, save_teacher
from onnx.external_data_helper import convert_model_to_external_data

from workers.formats import UnsafeModelFile
from workers.pipeline.errors import InputError
from workers.steps.teacher import load_teacher


def _reference(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return digits_teacher()(torch.from_numpy(x)).numpy()


def _expected_macs(model: DigitsTeacher) -> int:
    """Conv: out_h*out_w*cout*cin*k*k per conv; Linear: in*out. Spatial 8x8 until the max-pool."""
    total = 0
    for m in model.features:
        if isinstance(m, torch.nn.Conv2d):
            total += 8 * 8 * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    for m in model.head:
        if isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features
    return total


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_each_format_predicts_like_the_torch_model(digits_teacher_files: dict[str, Path], fmt: str) -> None:
    x, _ = digits()
    teacher = load_teacher(digits_teacher_files[fmt])
    assert teacher.format == fmt
    if teacher.signature.input_shape is None or teacher.signature.output_shape is None:
        teacher.complete_signature((1, 8, 8), x[:4])
    assert teacher.signature.input_shape == (1, 8, 8)
    assert teacher.signature.output_shape == (10,)
    out = teacher.predict(x[:300], batch_size=64)
    assert out.dtype == np.float32 and out.shape == (300, 10)
    np.testing.assert_allclose(out, _reference(x[:300]), atol=1e-4, rtol=1e-4)
    assert teacher.macs() == _expected_macs(digits_teacher())
    assert teacher.file_bytes == digits_teacher_files[fmt].stat().st_size
    assert teacher.runtime_version
    torch_params = sum(p.numel() for p in digits_teacher().parameters())
    bn_params = sum(
        p.numel() for m in digits_teacher().modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()
    )
    # ONNX export folds BatchNorm into the convolutions (its scale disappears, its shift becomes the bias).
    expected = torch_params - bn_params if fmt == "onnx" else torch_params
    assert teacher.param_count == expected


def test_uploads_load_whatever_their_file_name(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    x, _ = digits()
    for fmt in ("onnx", "torchscript", "pt2"):
        renamed = tmp_path / f"{fmt}-upload.bin"  # the service stores uploads without their suffix
        shutil.copy(digits_teacher_files[fmt], renamed)
        teacher = load_teacher(renamed)
        teacher.complete_signature((1, 8, 8), x[:4])
        np.testing.assert_allclose(teacher.predict(x[:8]), _reference(x[:8]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_static_batch_models_are_fed_in_padded_chunks(tmp_path: Path, fmt: str) -> None:
    x, _ = digits()
    path = save_teacher(digits_teacher(), torch.from_numpy(x[:3]), tmp_path / f"t.{fmt}", fmt, dynamic_batch=False)
    teacher = load_teacher(path)
    assert teacher.signature.fixed_batch == 3
    teacher.complete_signature((1, 8, 8), x[:4])
    out = teacher.predict(x[:10])  # 10 = 3 + 3 + 3 + 1 padded up to 3
    np.testing.assert_allclose(out, _reference(x[:10]), atol=1e-4, rtol=1e-4)


def test_signature_mismatch_names_both_shapes(digits_teacher_files: dict[str, Path]) -> None:
    teacher = load_teacher(digits_teacher_files["onnx"])
    with pytest.raises(InputError, match=r"per-sample shape \(3, 8, 8\) but the teacher expects \(1, 8, 8\)"):
        teacher.complete_signature((3, 8, 8), np.zeros((2, 3, 8, 8), np.float32))


def test_torchscript_failure_on_wrong_data_is_an_input_error(digits_teacher_files: dict[str, Path]) -> None:
    teacher = load_teacher(digits_teacher_files["torchscript"])
    with pytest.raises(InputError, match="teacher failed"):
        teacher.complete_signature((5,), np.zeros((4, 5), np.float32))


def _external_model(tmp_path: Path) -> tuple[Path, onnx.ModelProto]:
    x, _ = digits()
    src = save_teacher(digits_teacher(), torch.from_numpy(x[:2]), tmp_path / "inline.onnx", "onnx")
    model = onnx.load(str(src))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path))
    return path, onnx.load(str(path), load_external_data=False)


def test_onnx_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path)
    assert (tmp_path / "weights.bin").exists()
    teacher = load_teacher(path)
    x, _ = digits()
    np.testing.assert_allclose(teacher.predict(x[:20]), _reference(x[:20]), atol=1e-4, rtol=1e-4)
    assert teacher.file_bytes == path.stat().st_size + (tmp_path / "weights.bin").stat().st_size


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_onnx_external_data_escaping_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    model_dir = tmp_path / "upload"
    model_dir.mkdir()
    path, model = _external_model(model_dir)
    shutil.copy(model_dir / "weights.bin", tmp_path / "secret.bin")  # a real file the traversal would reach
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save_model(model, str(path))
    with pytest.raises(UnsafeModelFile, match="outside the model's folder"):
        load_teacher(path)


def test_onnx_external_data_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "upload"
    model_dir.mkdir()
    path, _ = _external_model(model_dir)
    (model_dir / "weights.bin").rename(tmp_path / "elsewhere.bin")
    (model_dir / "weights.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(UnsafeModelFile):
        load_teacher(path)


def test_multi_input_onnx_is_refused(tmp_path: Path) -> None:
    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Two(), (torch.zeros(1, 3), torch.zeros(1, 3)), str(path), dynamo=False)
    with pytest.raises(InputError, match="2 inputs"):
        load_teacher(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_teacher(tmp_path / "nope.onnx")
