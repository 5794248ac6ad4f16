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

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import UnsafeModelFile
from edgedistill.workers.steps.teacher import load_teacher


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


class TwoInTwoOut(torch.nn.Module):
    """Token ids + attention mask -> class logits and a sigmoid score (a text model's shape)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(30, 8)
        self.cls = torch.nn.Linear(8, 3)
        self.score = torch.nn.Linear(8, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = attention_mask.unsqueeze(-1).float()
        h = (self.emb(input_ids) * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.cls(h), torch.sigmoid(self.score(h))


def _tokens(n: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, size=(n, 12)).astype(np.int64)
    mask = (rng.random((n, 12)) > 0.2).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


def _save_two(tmp_path: Path, fmt: str) -> Path:
    model = TwoInTwoOut().eval()
    feeds = _tokens(2)
    args = (torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    path = tmp_path / f"two.{fmt}"
    if fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, args, str(path), dynamo=False, input_names=["input_ids", "attention_mask"],
                output_names=["logits", "score"],
                dynamic_axes={k: {0: "batch"} for k in ("input_ids", "attention_mask", "logits", "score")},
            )  # fmt: skip
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, args), str(path))
    else:
        batch = torch.export.Dim("batch", min=1)
        ep = torch.export.export(model, args, dynamic_shapes=({0: batch}, {0: batch}))
        torch.export.save(ep, str(path))
    return path


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_two_input_two_output_teachers_declare_every_tensor_and_predict_all(tmp_path: Path, fmt: str) -> None:
    teacher = load_teacher(_save_two(tmp_path, fmt))
    feeds = _tokens(9)
    teacher.complete_io({k: v[:4] for k, v in feeds.items()})
    io = teacher.io
    assert io.input_names == ("input_ids", "attention_mask")
    assert [t.dtype for t in io.inputs] == ["int64", "int64"]
    assert [t.per_sample for t in io.inputs] == [(12,), (12,)]
    assert io.inputs[0].layout == "tokens"
    assert len(io.outputs) == 2 and [o.per_sample for o in io.outputs] == [(3,), (1,)]
    if fmt == "onnx":
        assert io.output_names == ("logits", "score") and io.inputs[0].shape[0] is None
    out = teacher.predict_all(feeds, batch_size=4)
    with torch.inference_mode():
        ref = TwoInTwoOut().eval()(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    got = [out[name] for name in io.output_names]
    assert all(g.dtype == np.float32 and g.shape[0] == 9 for g in got)
    np.testing.assert_allclose(got[0], ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], ref[1].numpy(), atol=1e-5)
    with pytest.raises(InputError, match="'attention_mask' was not given"):
        teacher.predict_all({"input_ids": feeds["input_ids"]})


def test_a_batch_one_teacher_runs_one_sample_at_a_time(tmp_path: Path) -> None:
    model = TwoInTwoOut().eval()
    feeds = _tokens(1)
    path = tmp_path / "b1.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])), str(path),
            dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["logits", "score"],
        )  # fmt: skip
    teacher = load_teacher(path)
    assert teacher.fixed_batch == 1
    feeds = _tokens(5)
    out = teacher.predict_all(feeds)
    with torch.inference_mode():
        ref = model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    np.testing.assert_allclose(out["logits"], ref[0].numpy(), atol=1e-5)


def test_skl2onnx_label_and_zipmap_probabilities(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    clf = LogisticRegression(max_iter=200).fit(x, y)
    path = tmp_path / "clf.onnx"
    path.write_bytes(to_onnx(clf, x[:1]).SerializeToString())  # with ZipMap: a list of dicts per sample
    teacher = load_teacher(path)
    assert teacher.io.output_names == ("output_label", "output_probability")
    out = teacher.predict_all({teacher.io.input_names[0]: x})
    assert out["output_label"].dtype == np.int64
    np.testing.assert_array_equal(out["output_label"], clf.predict(x))
    np.testing.assert_allclose(out["output_probability"], clf.predict_proba(x), atol=1e-5)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_teacher(tmp_path / "nope.onnx")
