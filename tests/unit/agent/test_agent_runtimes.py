"""The runtime wrappers the agent runs artifacts with (edgedistill.runtimes, shared with the host) on real
artifacts: outputs equal the host's in the probe, int8 input quantization is read from the model,
layouts are converted, standardisation comes from the artifact's metadata."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgedistill.agent.probe import load_probe
from edgedistill.contracts.errors import ArtifactRunError
from edgedistill.runtimes import open_model
from edgedistill.runtimes.common import (
    CHANNEL_LAST,
    Quantization,
    apply_standardization,
    dequantize,
    quantize,
    resolve_layout,
    standardization_of,
    tensor_quantization,
)
from edgedistill.runtimes.common import to_model_layout as to_layout
from edgedistill.runtimes.litert import TfliteModel


def test_quantize_rounds_half_away_from_zero_and_saturates() -> None:
    q = Quantization(scale=0.5, zero_point=-10, dtype="int8")
    x = np.array([0.25, -0.25, 0.75, 1000.0, -1000.0], np.float32)
    assert quantize(x, q).tolist() == [-9, -11, -8, 127, -128]
    assert dequantize(np.array([-10, -8], np.int8), q).tolist() == [0.0, 1.0]


def test_tflite_quantization_from_details() -> None:
    d = {
        "name": "in",
        "dtype": np.int8,
        "quantization_parameters": {"scales": np.array([0.02]), "zero_points": np.array([3])},
    }
    assert tensor_quantization(d) == Quantization(0.02, 3, "int8")
    legacy = {"name": "in", "dtype": np.uint8, "quantization_parameters": {}, "quantization": (0.1, 128)}
    assert tensor_quantization(legacy) == Quantization(0.1, 128, "uint8")
    assert tensor_quantization({"dtype": np.float32}) is None
    with pytest.raises(ArtifactRunError, match="no per-tensor scale"):
        tensor_quantization({"name": "in", "dtype": np.int8, "quantization_parameters": {}, "quantization": (0.0, 0)})


def test_layouts() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert to_layout(x, CHANNEL_LAST).shape == (2, 4, 5, 3) and to_layout(x, None) is x
    assert to_layout(np.zeros((2, 3, 7)), CHANNEL_LAST).shape == (2, 1, 7, 3)
    assert resolve_layout(None, x, (1, 3, 4, 5)) is None
    assert resolve_layout(None, x, (1, 4, 5, 3)) == CHANNEL_LAST
    with pytest.raises(ArtifactRunError, match="per-sample shape"):
        resolve_layout(None, x, (1, 9, 9, 3))


@pytest.mark.slow  # reads a real engine run (the session's mcu_run pipeline, ~14 s CPU)
@pytest.mark.parametrize("kind", ["onnx_fp32", "onnx_int8", "tflite_int8_full"])
def test_outputs_match_the_hosts(mcu_run: Any, kind: str) -> None:
    art = mcu_run.artifacts[kind]
    probe = load_probe(mcu_run.artifacts["probe"].path)
    _, reference = probe.reference_for(kind)
    model = open_model(art.path, kind, threads=1, metadata=art.metadata)
    out = model.predict(probe.x)
    if kind == "onnx_fp32":
        np.testing.assert_allclose(out, reference, atol=1e-4)  # vs the float torch student
    else:
        np.testing.assert_array_equal(out, reference)  # same file, same runtime as the host: bit-exact
    fn = model.timed_call(probe.x[:1])
    fn()


@pytest.mark.slow  # reads the session's mcu_run pipeline
def test_int8_input_quantization_is_read_from_the_model(mcu_run: Any) -> None:
    art = mcu_run.artifacts["tflite_int8_full"]
    model = TfliteModel(art.path, 1, metadata=art.metadata)
    recorded = art.metadata["io_quantization"]["input"]  # what the exporter wrote beside the file
    q = model.input_quantization
    assert q is not None and q.dtype == "int8"
    assert q.scale == pytest.approx(recorded["scale"]) and q.zero_point == recorded["zero_point"]
    probe = load_probe(mcu_run.artifacts["probe"].path)
    xe = model.encode(probe.x[:2])
    assert xe.dtype == np.int8 and xe.shape == (2, 8, 8, 1)  # NHWC, as the signature says


def test_wrong_kind_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ArtifactRunError, match="not a model"):
        open_model(tmp_path / "x", "c_source", threads=1)
    with pytest.raises(ArtifactRunError, match="not a model"):
        open_model(tmp_path / "x", "no_such_kind", threads=1)


def test_standardization_comes_from_the_artifacts_metadata() -> None:
    x = np.array([[1.0, 100.0], [3.0, 300.0]], dtype=np.float32)
    meta = {"input_standardization": {"mean": [2.0, 200.0], "std": [1.0, 100.0]}}
    np.testing.assert_allclose(apply_standardization(x, standardization_of(meta)), [[-1.0, -1.0], [1.0, 1.0]])
    assert standardization_of({}) is None and apply_standardization(x, None) is x
    with pytest.raises(ArtifactRunError, match="features"):
        apply_standardization(x, standardization_of({"input_standardization": {"mean": [0.0], "std": [1.0]}}))
