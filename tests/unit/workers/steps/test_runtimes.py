from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedistill.contracts.errors import PipelineError
from edgedistill.runtimes.common import Quantization, dequantize, quantize, to_model_layout
from edgedistill.runtimes.litert import TfliteModel, run_tflite
from edgedistill.runtimes.onnx import OnnxModel, run_onnx
from edgedistill.runtimes.tflm import capture_fds, parse_arena_total, run_tflm
from edgedistill.workers.steps.model_info import tflite_ops


@settings(max_examples=50, deadline=None)
@given(
    scale=st.floats(min_value=1e-4, max_value=1.0),
    zero_point=st.integers(min_value=-128, max_value=127),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_quantize_round_trip_within_half_a_step(scale: float, zero_point: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
    x = rng.uniform(lo, hi, size=64).astype(np.float32)
    params = Quantization(scale, zero_point, "int8")
    q = quantize(x, params)
    assert q.dtype == np.int8
    assert np.all(np.abs(dequantize(q, params) - x) <= scale / 2 + 1e-6)


def test_quantize_saturates_and_rounds_half_away_from_zero() -> None:
    q = quantize(np.array([1e6, -1e6, 0.5, -0.5, 1.5], dtype=np.float32), Quantization(1.0, 0, "int8"))
    assert q.tolist() == [127, -128, 1, -1, 2]


def test_to_model_layout() -> None:
    img = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = to_model_layout(img, "NHWC")
    assert nhwc.shape == (2, 4, 5, 3)
    assert nhwc[1, 2, 3, 0] == img[1, 0, 2, 3]
    seq = np.arange(2 * 3 * 7, dtype=np.float32).reshape(2, 3, 7)
    s = to_model_layout(seq, "NHWC")
    assert s.shape == (2, 1, 7, 3)
    assert s[1, 0, 6, 2] == seq[1, 2, 6]
    assert to_model_layout(img, None) is img
    with pytest.raises(PipelineError):
        to_model_layout(np.zeros((2, 5), np.float32), "NHWC")


def test_capture_fds_sees_writes_to_the_descriptor_itself() -> None:
    with capture_fds() as log:
        os.write(1, b"from C on stdout\n")
        os.write(2, b"from C on stderr\n")
    assert "from C on stdout" in log[0] and "from C on stderr" in log[0]


def test_parse_arena_total() -> None:
    text = "[RecordingMicroAllocator] Arena allocation total 38976 bytes\n[...] head 592 bytes"
    assert parse_arena_total(text) == 38976
    with pytest.raises(PipelineError):
        parse_arena_total("nothing here")


def test_onnx_runtime_matches_torch(exported: Any) -> None:
    from edgedistill.workers.steps.export_onnx import torch_predict

    _, state = exported("mcu-cortex-m4", "digits")
    x = state.data.x_of("test")[:40]
    got = run_onnx(state.artifacts["onnx_fp32"].path, x)
    np.testing.assert_allclose(got, torch_predict(state.student, x), atol=1e-4)
    assert OnnxModel(state.artifacts["onnx_fp32"].path).fixed_batch is None  # dynamic batch axis


def test_tflite_int8_io_is_quantized_with_the_models_parameters(exported: Any) -> None:
    from ai_edge_litert.interpreter import Interpreter

    _, state = exported("mcu-cortex-m4", "digits")
    path = state.artifacts["tflite_int8_full"].path
    x = state.data.x_of("test")[:5]
    got = run_tflite(path, x)  # layout from the sidecar

    # The same computation by hand with the interpreter: NHWC, int8 in, int8 out.
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    expected = []
    for sample in x:
        q = np.clip(np.round(sample.transpose(1, 2, 0) / s_in) + z_in, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q[None])
        it.invoke()
        expected.append((it.get_tensor(out["index"]).astype(np.float32) - z_out) * s_out)
    np.testing.assert_allclose(got, np.concatenate(expected), atol=s_out * 1.01)


def test_tflite_model_rejects_wrong_shapes(exported: Any) -> None:
    _, state = exported("mobile-arm64", "vector")
    model = TfliteModel(state.artifacts["tflite_int8"].path)
    with pytest.raises(PipelineError, match="expects per-sample shape"):
        model.predict(np.zeros((2, 5), np.float32))


def test_tflm_matches_litert_and_reports_its_arena(exported: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    path = state.artifacts["tflite_int8_full"].path
    x = state.data.x_of("test")[:20]
    out, arena = run_tflm(path, x)
    lite = run_tflite(path, x)
    scale = state.artifacts["tflite_int8_full"].metadata["io_quantization"]["output"]["scale"]
    # TFLM's reference kernels and XNNPACK round intermediate int8 results differently: a few output
    # steps apart at most, identical on most outputs.
    diff = np.abs(out - lite)
    assert np.max(diff) <= 3 * scale * 1.01
    assert np.mean(diff) <= 0.5 * scale
    assert np.mean(out.argmax(1) == lite.argmax(1)) >= 0.9
    assert 1000 < arena < 64 * 1024


def test_tflm_fails_clearly_in_a_too_small_arena(exported: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    with pytest.raises(PipelineError, match="cannot allocate"):
        run_tflm(state.artifacts["tflite_int8_full"].path, state.data.x_of("test")[:1], arena_size=512)


def test_tflite_ops_lists_the_builtin_ops(exported: Any) -> None:
    _, state = exported("mobile-arm64", "digits")
    ops = tflite_ops(state.artifacts["tflite_int8"].path)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "QUANTIZE", "DEQUANTIZE"} <= set(ops)
    assert ops == sorted(ops)
