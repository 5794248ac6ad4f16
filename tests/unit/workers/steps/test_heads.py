"""export_module: the raw student's outputs turned into every teacher output with its semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.workers.steps.heads import export_module, raw_to_teacher_space, trained_output_names


class _Raw(nn.Module):
    """Two inputs (floats, token ids) -> three raw outputs: class logits, a sigmoid score, boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 4)
        self.a = nn.Linear(8, 5)
        self.b = nn.Linear(8, 1)
        self.c = nn.Linear(8, 6 * 4)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = torch.cat([x, self.emb(ids).mean(1)], dim=1)
        return self.a(h), self.b(h), self.c(h).reshape(-1, 6, 4)


def _sig() -> ModelSignature:
    return ModelSignature(
        inputs=(
            TensorSpec(name="x", dtype="float32", shape=(None, 4)),
            TensorSpec(name="ids", dtype="int64", shape=(None, 7), layout="tokens"),
        ),
        outputs=(
            OutputSpec(name="label", dtype="int64", shape=(None,), kind="class_index"),
            OutputSpec(name="probs", dtype="float32", shape=(None, 5), kind="probabilities"),
            OutputSpec(name="face", dtype="float32", shape=(None, 1), kind="sigmoid"),
            OutputSpec(name="boxes", dtype="float32", shape=(None, 6, 4), kind="boxes"),
        ),
    )


def test_outputs_follow_teacher_order_and_semantics() -> None:
    torch.manual_seed(0)
    raw = _Raw().eval()
    x, ids = torch.randn(3, 4), torch.randint(0, 50, (3, 7))
    logits, score, boxes = raw(x, ids)
    label, probs, face, box_out = export_module(raw, _sig())(x, ids)
    assert label.dtype == torch.int64 and torch.equal(label, logits.argmax(-1))
    torch.testing.assert_close(probs, torch.softmax(logits, -1))
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    torch.testing.assert_close(face, torch.sigmoid(score))
    torch.testing.assert_close(box_out, boxes)
    assert trained_output_names(_sig()) == ("probs", "face", "boxes")
    np.testing.assert_allclose(
        raw_to_teacher_space("probabilities", logits.detach().numpy()), probs.detach().numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        raw_to_teacher_space("sigmoid", score.detach().numpy()), face.detach().numpy(), atol=1e-6
    )


def test_exports_to_onnx_with_the_teacher_names(tmp_path: object) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    sig = _sig()
    module = export_module(_Raw().eval(), sig)
    x, ids = torch.randn(2, 4), torch.randint(0, 50, (2, 7))
    path = f"{tmp_path}/m.onnx"
    torch.onnx.export(
        module, (x, ids), path, dynamo=False, opset_version=17,
        input_names=list(sig.input_names), output_names=list(sig.output_names),
        dynamic_axes={n: {0: "batch"} for n in (*sig.input_names, *sig.output_names)},
    )  # fmt: skip
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(sig.output_names)
    got = sess.run(None, {"x": np.random.rand(5, 4).astype(np.float32), "ids": np.zeros((5, 7), np.int64)})
    assert got[0].dtype == np.int64 and got[0].shape == (5,) and got[3].shape == (5, 6, 4)


def test_class_index_without_class_scores_is_refused() -> None:
    sig = ModelSignature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(None, 4)),),
        outputs=(
            OutputSpec(name="label", dtype="int64", shape=(None,), kind="class_index"),
            OutputSpec(name="v", dtype="float32", shape=(None, 2), kind="regression"),
        ),
    )
    with pytest.raises(InputError, match="class-index output 'label'"):
        export_module(nn.Linear(4, 2), sig)
