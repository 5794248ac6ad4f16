"""Small ONNX teachers with a chosen signature, built with onnx.helper (no torch, so the service
tests can use them), and a 2-input token classifier that onnxruntime really runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Dim = int | str | None  # int: fixed, str: dim_param (dynamic), None: no value
IO = tuple[str, int, Sequence[Dim]]  # name, onnx.TensorProto element type, shape


def token_classifier_onnx(seq: int = 16, vocab: int = 50, classes: int = 3) -> bytes:
    """input_ids int64 (n, seq) + attention_mask int64 (n, seq) -> logits (n, classes), probs (n, classes).

    A masked mean of token embeddings, then a linear layer: runnable by onnxruntime, dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(vocab, 8)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.normal(size=(8, classes)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),  # (n, seq, 8)
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "last"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "axis1"], ["s"], keepdims=0),  # (n, 8)
        helper.make_node("ReduceSum", ["m", "axis1"], ["cnt"], keepdims=1),  # (n, 1)
        helper.make_node("Div", ["s", "cnt"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", seq]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", seq]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", classes]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def declared_onnx(inputs: Sequence[IO], outputs: Sequence[IO], *, shapeless_output: bool = False) -> bytes:
    """A model that declares these inputs and outputs (each output a Constant: enough for readers)."""
    from onnx import TensorProto, helper

    def info(name: str, elem: int, shape: Sequence[Dim]) -> object:
        return helper.make_tensor_value_info(name, elem, list(shape))

    nodes = [
        helper.make_node("Constant", [], [name], value=helper.make_tensor(f"{name}_v", TensorProto.FLOAT, [1], [0.0]))
        for name, _elem, _shape in outputs
    ]
    outs = [info(*o) for o in outputs]
    if shapeless_output:
        outs.append(helper.make_tensor_value_info("unranked", TensorProto.FLOAT, None))
        nodes.append(
            helper.make_node(
                "Constant", [], ["unranked"], value=helper.make_tensor("u_v", TensorProto.FLOAT, [1], [0.0])
            )
        )
    graph = helper.make_graph(nodes, "declared", [info(*i) for i in inputs], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())
