"""Output kinds inferred from the teacher's values, names and neighbours; options override."""

from __future__ import annotations

import numpy as np

from edgedistill.contracts.signature import ModelSignature, OutputOptions, OutputSpec, TensorSpec
from edgedistill.workers.steps.output_kinds import infer_output_kinds

RNG = np.random.default_rng(0)


def _sig(outputs: dict[str, np.ndarray]) -> ModelSignature:
    return ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 4)),),
        outputs=tuple(
            OutputSpec(name=k, dtype="int64" if v.dtype.kind == "i" else "float32", shape=(None, *v.shape[1:]))
            for k, v in outputs.items()
        ),
    )


def _kinds(outputs: dict[str, np.ndarray], **kw: object) -> dict[str, str]:
    return {d.name: d.kind for d in infer_output_kinds(_sig(outputs), outputs, **kw)}  # type: ignore[arg-type]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_each_value_pattern_gets_its_kind() -> None:
    z = RNG.normal(size=(50, 5)).astype(np.float32)
    assert _kinds({"p": _softmax(z)}) == {"p": "probabilities"}
    assert _kinds({"lp": np.log(_softmax(z))}) == {"lp": "log_probabilities"}
    assert _kinds({"out": z}) == {"out": "logits"}
    assert _kinds({"wake": 1 / (1 + np.exp(-z[:, :1]))}) == {"wake": "sigmoid"}
    assert _kinds({"vad": 1 / (1 + np.exp(-z))}) == {"vad": "multilabel"}
    sk = {"label": np.argmax(z, 1).astype(np.int64), "probabilities": _softmax(z)}
    assert _kinds(sk) == {"label": "class_index", "probabilities": "probabilities"}


def test_real_valued_labels_make_a_vector_regression() -> None:
    z = RNG.normal(size=(50, 3)).astype(np.float32)
    assert _kinds({"logits": z}, labels=RNG.normal(size=(50, 3))) == {"logits": "regression"}
    assert _kinds({"out": z}, labels=RNG.integers(0, 3, 50)) == {"out": "logits"}
    assert _kinds({"out": z[:, 0]}) == {"out": "regression"}


def test_detector_boxes_next_to_raw_scores() -> None:
    outs = {
        "regressors": RNG.normal(size=(6, 896, 16)).astype(np.float32) * 30,
        "classificators": RNG.normal(size=(6, 896, 1)).astype(np.float32) * 5,
    }
    decisions = infer_output_kinds(_sig(outs), outs)
    assert [(d.kind, d.scores) for d in decisions] == [("boxes", "classificators"), ("sigmoid_logits", None)]
    assert "896 anchors" in decisions[0].reason


def test_options_override_with_the_reason() -> None:
    z = RNG.uniform(size=(20, 1)).astype(np.float32)
    (d,) = infer_output_kinds(_sig({"s": z}), {"s": z}, options={"s": OutputOptions(kind="regression")})
    assert (d.kind, d.reason) == ("regression", "set in options.outputs")
