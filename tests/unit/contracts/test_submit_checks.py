"""Submit-time checks: data vs the teacher's inputs, per-output options, data-free shapes, methods."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.contracts.spec import JobOptions
from edgedistill.contracts.submit_checks import SubmitProblem, one_line, submit_problems

TOKENS = ModelSignature(
    inputs=(
        TensorSpec(name="input_ids", dtype="int64", shape=(None, 16)),
        TensorSpec(name="attention_mask", dtype="int64", shape=(None, 16)),
    ),
    outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 3)),),
)
SKL = ModelSignature(
    inputs=(TensorSpec(name="X", dtype="float32", shape=(None, 30)),),
    outputs=(
        OutputSpec(name="label", dtype="int64", shape=(None,)),
        OutputSpec(name="probabilities", dtype="float32", shape=(None, 2)),
    ),
)
WAKE = ModelSignature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(1, 16, 96)),),
    outputs=(OutputSpec(name="score", dtype="float32", shape=(1, 1)),),
)
IMAGE_DYNAMIC = ModelSignature(
    inputs=(TensorSpec(name="img", dtype="float32", shape=(None, 3, None, None)),),
    outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 10)),),
)


def _check(
    sig: ModelSignature | None, data: dict[str, Any] | None, fmt: str = "onnx", **opts: Any
) -> list[SubmitProblem]:
    return submit_problems(sig, model_format=fmt, data=data, options=JobOptions.model_validate(opts))


def test_matching_two_input_data_passes() -> None:
    data = {"input_ids": ((100, 16), "int64"), "attention_mask": ((100, 16), "int32")}
    assert _check(TOKENS, data) == []


def test_each_data_mismatch_is_named_at_dataset_id() -> None:
    data = {"input_ids": ((100, 12), "float32"), "mask": ((100, 16), "int64")}
    problems = _check(TOKENS, data)
    assert {p.loc for p in problems} == {("dataset_id",)}
    text = one_line(problems)
    assert "input 'input_ids' takes int64 but data 'input_ids' is float32" in text
    assert "input 'input_ids' axis 1 is 16 but data 'input_ids' has 12" in text
    assert "input 'attention_mask'" in text and "expected key 'attention_mask' (found: input_ids, mask)" in text


def test_single_input_teacher_takes_x() -> None:
    assert _check(WAKE, {"x": ((8, 16, 96), "float32")}) == []
    (problem,) = _check(WAKE, {"x": ((8, 96, 16), "float32")})
    assert problem.loc == ("dataset_id",) and "axis 1 is 16" in problem.message


def test_unknown_signature_checks_only_what_it_can() -> None:
    assert _check(None, {"whatever": ((3, 2), "float32")}, fmt="pt2") == []
    (problem,) = _check(None, None, fmt="torchscript", method="data_free")
    assert problem.loc == ("options", "data_free", "input_shape") and "TorchScript" in problem.message
    assert _check(None, None, fmt="torchscript", method="data_free", data_free={"input_shape": [1, 8, 8]}) == []
    assert _check(None, None, fmt="pt2", method="data_free") == []  # .pt2 records shapes: the worker reads them


def test_data_free_needs_input_shapes_the_teacher_lacks() -> None:
    (problem,) = _check(IMAGE_DYNAMIC, None, method="data_free")
    assert problem.loc == ("options", "data_free", "input_shape") and "(3, ?, ?)" in problem.message
    assert _check(IMAGE_DYNAMIC, None, method="data_free", data_free={"input_shape": [3, 32, 32]}) == []
    (bad,) = _check(IMAGE_DYNAMIC, None, method="data_free", data_free={"input_shape": [1, 32, 32]})
    assert "does not fit the teacher's input 'img' (3, ?, ?)" in bad.message
    # auto without data is data-free too; a teacher with fixed shapes needs nothing more
    assert _check(IMAGE_DYNAMIC, None, method="auto")[0].loc == ("options", "data_free", "input_shape")
    assert _check(WAKE, None, method="data_free") == []


def test_output_options_must_name_outputs() -> None:
    problems = _check(SKL, None, outputs={"probs": {"kind": "probabilities"}})
    assert [p.loc for p in problems] == [("options", "outputs", "probs")]
    assert "'probs', which is not a teacher output (outputs: label, probabilities)" in problems[0].message


@pytest.mark.parametrize(
    ("sig", "outputs", "message"),
    [
        (SKL, {"label": {"kind": "logits"}}, "'label' is int64, so it cannot be trained as logits"),
        (SKL, {"probabilities": {"kind": "class_index"}}, "class_index is for integer class outputs"),
        (WAKE, {"score": {"kind": "probabilities"}}, r"needs at least 2 classes.*kind sigmoid"),
        (SKL, {"probabilities": {"kind": "boxes", "scores": "probabilities"}}, "names the output itself"),
    ],
)
def test_kinds_an_output_cannot_be_trained_as(sig: ModelSignature, outputs: dict[str, Any], message: str) -> None:
    problems = _check(sig, None, outputs=outputs)
    name = next(iter(outputs))
    assert any(p.loc == ("options", "outputs", name) for p in problems)
    assert any(re.search(message, p.message) for p in problems), problems


def test_wake_word_sigmoid_and_skl_label_are_fine() -> None:
    assert _check(WAKE, None, outputs={"score": {"kind": "sigmoid"}}) == []
    assert _check(SKL, {"X": ((50, 30), "float64")}) == []  # the int64 label is a check, probabilities train


def test_nothing_left_to_train_is_refused() -> None:
    (problem,) = _check(SKL, None, outputs={"probabilities": {"weight": 0}})
    assert problem.loc == ("options", "outputs") and "no teacher output is left to learn from" in problem.message
    only_label = ModelSignature(inputs=SKL.inputs, outputs=SKL.outputs[:1])
    (problem,) = _check(only_label, None)
    assert problem.loc == ("model_id",) and "'label' (int64)" in problem.message


def test_methods_unsupported_for_the_signature_are_named_at_method() -> None:
    problems = _check(TOKENS, None, method="fitnet")
    assert [p.loc for p in problems] == [("options", "method")]
    assert "method fitnet supports teachers with one input and one output only" in problems[0].message
    data = {"input_ids": ((9, 16), "int64"), "attention_mask": ((9, 16), "int64")}
    assert _check(TOKENS, data, method="kd") == []
    # quantization-aware training is not implemented for these students: a 422, not a silent skip
    (problem,) = _check(TOKENS, data, method="qat_kd")
    assert problem.loc == ("options", "method") and "quantization-aware training" in problem.message
