"""The shared signature contract: what counts as a mismatch between a teacher and its data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgedistill.contracts.signature import (
    ModelSignature,
    OutputOptions,
    OutputSpec,
    TensorSpec,
    check_data,
    unsupported_reason,
)
from edgedistill.contracts.spec import JobOptions, LossTerm


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


def _sklearn_sig(label_kind: str | None = "class_index", prob_kind: str | None = "probabilities") -> ModelSignature:
    return ModelSignature(
        inputs=(TensorSpec(name="float_input", dtype="float32", shape=(None, 30)),),
        outputs=(
            OutputSpec(name="label", dtype="int64", shape=(None,), kind=label_kind),  # type: ignore[arg-type]
            OutputSpec(name="probabilities", dtype="float32", shape=(None, 2), kind=prob_kind),  # type: ignore[arg-type]
        ),
    )


@pytest.mark.parametrize("method", ["kd", "auto", "labels_only"])
def test_multi_io_methods_accept_two_inputs_and_two_outputs(method: str) -> None:
    assert unsupported_reason(_text_sig(), JobOptions(method=method)) is None
    assert unsupported_reason(_sklearn_sig(), JobOptions(method=method)) is None


@pytest.mark.parametrize("options", [{"method": "qat_kd"}, {"method": "kd", "qat": "always"}])
def test_quantization_aware_training_asked_for_a_multi_io_teacher_is_refused(options: dict[str, str]) -> None:
    """QAT cannot train these students (token ids; outputs behind softmax/argmax/sigmoid heads): asked
    for explicitly, the job is refused with the reason instead of succeeding without it."""
    text = unsupported_reason(_text_sig(), JobOptions(**options))  # type: ignore[arg-type]
    assert text is not None and "int64 input 'input_ids'" in text
    sklearn = unsupported_reason(_sklearn_sig(), JobOptions(**options))  # type: ignore[arg-type]
    assert sklearn is not None and "class_index output 'label'" in sklearn
    for reason in (text, sklearn):
        assert "quantization-aware training" in reason
        assert ("method qat_kd" if options["method"] == "qat_kd" else "options.qat always") in reason
    tokens = ModelSignature(
        inputs=(TensorSpec(name="bytes", dtype="int32", shape=(None, 2048)),),
        outputs=(OutputSpec(name="p", dtype="float32", shape=(None, 214)),),
    )
    reason = unsupported_reason(tokens, JobOptions(**options))  # type: ignore[arg-type]
    assert reason is not None and "int32 input 'bytes'" in reason
    wake = ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 16, 96)),),
        outputs=(OutputSpec(name="score", dtype="float32", shape=(None, 1), kind="sigmoid"),),
    )
    reason = unsupported_reason(wake, JobOptions(**options))  # type: ignore[arg-type]
    assert reason is not None and "sigmoid output 'score'" in reason
    # the classic case QAT handles, and QAT left to auto, stay accepted
    classic = wake.model_copy(update={"outputs": (OutputSpec(name="logits", dtype="float32", shape=(None, 10)),)})
    assert unsupported_reason(classic, JobOptions(**options)) is None  # type: ignore[arg-type]
    assert unsupported_reason(_text_sig(), JobOptions(method="kd", qat="auto")) is None
    # a detector (float image in, raw anchor boxes and scores out) trains under fake quantization as exported
    detector = ModelSignature(
        inputs=(TensorSpec(name="image", dtype="float32", shape=(None, 128, 128, 3), layout="NHWC"),),
        outputs=(
            OutputSpec(name="boxes", dtype="float32", shape=(None, 896, 16), kind="boxes"),
            OutputSpec(name="scores", dtype="float32", shape=(None, 896, 1), kind="sigmoid_logits"),
        ),
    )
    assert unsupported_reason(detector, JobOptions(**options)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "method", ["fitnet", "at", "rkd", "sp", "relational", "data_free", "nas", "lifelong", "hybrid"]
)
def test_single_io_methods_are_refused_for_multi_io_teachers_with_a_reason(method: str) -> None:
    reason = unsupported_reason(_text_sig(), JobOptions(method=method))
    assert reason is not None and f"method {method}" in reason and "input_ids, attention_mask" in reason
    reason = unsupported_reason(_sklearn_sig(), JobOptions(method=method))
    assert reason is not None and "label, probabilities" in reason


def test_single_io_methods_refuse_sigmoid_outputs_but_take_logits() -> None:
    sig = ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 16)),),
        outputs=(OutputSpec(name="score", dtype="float32", shape=(None, 1), kind="sigmoid"),),
    )
    reason = unsupported_reason(sig, JobOptions(method="fitnet"))
    assert reason is not None and "sigmoid" in reason
    # the job's override decides the kind
    assert unsupported_reason(sig, JobOptions(method="fitnet", outputs={"score": OutputOptions(kind="logits")})) is None


def test_class_index_alone_or_all_weights_zero_leave_nothing_to_train() -> None:
    only_label = _sklearn_sig(prob_kind="regression")
    assert "class index" in (unsupported_reason(only_label, JobOptions()) or "")
    zero = JobOptions(outputs={"probabilities": OutputOptions(weight=0)})
    assert "no teacher output is trained" in (unsupported_reason(_sklearn_sig(), zero) or "")
    # unknown kinds are not judged yet
    assert unsupported_reason(_sklearn_sig(None, None), JobOptions()) is None


def test_explicit_losses_and_labels_only_need_a_single_trained_output() -> None:
    two = ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 8)),),
        outputs=(
            OutputSpec(name="a", dtype="float32", shape=(None, 3), kind="logits"),
            OutputSpec(name="b", dtype="float32", shape=(None, 1), kind="regression"),
        ),
    )
    assert "options.losses" in (unsupported_reason(two, JobOptions(losses=[LossTerm(key="kd")])) or "")
    assert "labels_only" in (unsupported_reason(two, JobOptions(method="labels_only")) or "")
    assert unsupported_reason(two, JobOptions(method="kd")) is None
