from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.steps.model_info import describe_onnx, describe_tflite, tflite_op_sequence


def test_onnx_io_quantization_is_read_from_the_qdq_nodes(exported: Any) -> None:
    _, state = exported("cpu-x86", "digits")
    path = state.artifacts["onnx_int8"].path
    info = describe_onnx(path)
    model = onnx.load(str(path))
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert info["io_quantization"]["input"]["scale"] == pytest.approx(float(inits[first_q.input[1]]))
    assert info["io_quantization"]["input"]["zero_point"] == int(inits[first_q.input[2]])
    assert info["opset"] >= 17 and "QuantizeLinear" in info["ops"]


def test_tflite_sequence_is_in_execution_order(exported: Any) -> None:
    _, state = exported("mobile-arm64", "digits")
    seq = tflite_op_sequence(state.artifacts["tflite_int8"].path)
    assert seq[0] == "QUANTIZE" and seq[-1] == "DEQUANTIZE"
    assert describe_tflite(state.artifacts["tflite_int8"].path)["op_count"] == len(seq)


def test_unreadable_files_are_pipeline_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(PipelineError):
        describe_tflite(bad)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\xff\xff\xff")
    with pytest.raises(PipelineError):
        describe_onnx(bad_onnx)
