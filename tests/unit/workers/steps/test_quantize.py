from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgedistill.contracts.errors import PipelineError
from edgedistill.runtimes.onnx import run_onnx
from edgedistill.workers.steps.export_onnx import ExportOnnx
from edgedistill.workers.steps.quantize import QuantizeOnnx, calibration_samples, even_batch_size


def test_calibration_samples_are_a_seeded_subset() -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    a = calibration_samples(x, 10, seed=3)
    assert a.shape == (10, 1)
    assert len(set(a[:, 0].tolist())) == 10  # no repeats
    assert set(a[:, 0].tolist()) <= set(x[:, 0].tolist())
    np.testing.assert_array_equal(a, calibration_samples(x, 10, seed=3))
    assert not np.array_equal(a, calibration_samples(x, 10, seed=4))
    assert calibration_samples(x, 1000, seed=0).shape == (100, 1)  # all of them when asked for more
    with pytest.raises(PipelineError):
        calibration_samples(x[:0], 10, seed=0)


def test_even_batch_size_divides_the_sample_count() -> None:
    assert even_batch_size(256, 32) == 32
    assert even_batch_size(48, 32) == 24
    assert even_batch_size(37, 32) == 1
    assert even_batch_size(5, 32) == 5


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_int8_per_channel(run_factory: Any, digits_case: Any, method: str) -> None:
    # 50 samples: not a multiple of the preferred batch, as users' counts often are not.
    run = run_factory("cpu-x86", calibration=method, calibration_samples=50)
    state = digits_case.state()
    ExportOnnx().run(run.ctx, state)
    QuantizeOnnx().run(run.ctx, state)

    rec = state.artifacts["onnx_int8"]
    model = onnx.load(str(rec.path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # Weights stored as int8, per channel: each conv weight's scale has one entry per output channel.
    weight_dq = [
        n for n in model.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4
    ]  # fmt: skip
    assert len(weight_dq) == 3  # stem, depthwise, pointwise
    for node in weight_dq:
        w, scale = inits[node.input[0]], inits[node.input[1]]
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],)

    meta = rec.metadata
    assert meta["quantization"]["calibration"] == method
    assert meta["quantization"]["calibration_samples"] == 50
    assert meta["io_quantization"]["input"]["dtype"] == "int8"
    assert meta["signature"]["inputs"][0]["dtype"] == "float32"  # QDQ keeps float I/O

    x = digits_case.data.x_of("test")
    fp32 = run_onnx(state.artifacts["onnx_fp32"].path, x)
    int8 = run_onnx(rec.path, x)
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.9
    # Nothing but the two models and their sidecars is left in the work folder.
    assert sorted(p.name for p in run.ctx.work_dir.iterdir()) == [
        "student_fp32.onnx", "student_fp32.onnx.json", "student_int8.onnx", "student_int8.onnx.json",
    ]  # fmt: skip


def test_needs_the_fp32_model(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("cpu-x86")
    with pytest.raises(PipelineError, match="fp32 ONNX"):
        QuantizeOnnx().run(run.ctx, digits_case.state())


def test_skipped_without_the_target(run_factory: Any, make_profile: Any, digits_case: Any) -> None:
    run = run_factory(make_profile("cpu-x86", targets=["onnx_fp32"]))
    state = digits_case.state()
    QuantizeOnnx().run(run.ctx, state)
    assert "onnx_int8" not in state.artifacts
