"""The shared signature contract: what counts as a mismatch between a teacher and its data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.pipeline.signature import ModelSignature, OutputOptions, OutputSpec, TensorSpec, check_data
from workers.pipeline.spec import JobOptions


def _text_sig() -> ModelSignature:
    return ModelSignature(
        inputs=(
            TensorSpec(name="input_ids", dtype="int64", shape=(None, 64), layout="tokens"),
            TensorSpec(name="attention_mask", dtype="int64", shape=(None, 64), layout="tokens"),
        ),
        outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 2)),),
    )


def test_matching_two_input_data_has_no_problems() -> None:
    arrays = {"input_ids": ((10, 64), "int32"), "attention_mask": ((10, 64), "int64"), "y": ((10,), "int64")}
    assert check_data(_text_sig(), arrays) == []


def test_missing_key_wrong_dtype_shape_and_rows_are_each_named() -> None:
    arrays = {"input_ids": ((10, 32), "float32"), "attention_mask2": ((9, 64), "int64")}
    problems = check_data(_text_sig(), arrays)
    text = " | ".join(problems)
    assert "'attention_mask'" in text and "no array" in text
    assert "takes int64 but data 'input_ids' is float32" in text
    assert "axis 1 is 64" in text


def test_single_input_accepts_x_and_checks_fixed_dims() -> None:
    sig = ModelSignature(
        inputs=(TensorSpec(name="image", dtype="float32", shape=(1, 3, 32, 32), layout="NCHW"),),
        outputs=(OutputSpec(name="prob", dtype="float32", shape=(1, 10)),),
    )
    assert sig.inputs[0].fixed_batch == 1
    assert check_data(sig, {"x": ((5, 3, 32, 32), "float32")}) == []
    assert check_data(sig, {"x": ((5, 3, 28, 28), "float32")}) != []
    assert check_data(sig, {"x": ((5, 3, 32), "float32")}) != []


def test_output_options_must_name_real_outputs() -> None:
    sig = _text_sig()
    arrays = {"input_ids": ((4, 64), "int64"), "attention_mask": ((4, 64), "int64")}
    problems = check_data(sig, arrays, output_options={"scores": OutputOptions(kind="sigmoid")})
    assert problems and "'scores'" in problems[0]


def test_job_options_accept_output_kinds_and_refuse_unknown_ones() -> None:
    opts = JobOptions.model_validate({"outputs": {"scores": {"kind": "sigmoid_logits", "weight": 2}}})
    assert opts.outputs is not None and opts.outputs["scores"].kind == "sigmoid_logits"
    with pytest.raises(ValidationError):
        JobOptions.model_validate({"outputs": {"scores": {"kind": "softmaxish"}}})
