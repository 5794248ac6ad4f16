"""Transformer distillation end to end on a generated 2-input token teacher (a 4-layer transformer
exported to ONNX): the transformer student family, MiniLM / TinyBERT terms from the teacher graph's
Softmax nodes, and ONNX fp32 + int8 artifacts with the teacher's input and output names."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from factories import make_ctx, write_npz
from torch import nn

from edgedistill.runtimes.onnx import OnnxModel
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.build_student import BuildStudent
from edgedistill.workers.steps.distill.step import Distill
from edgedistill.workers.steps.export_onnx import ExportOnnx
from edgedistill.workers.steps.load_data import LoadData
from edgedistill.workers.steps.load_teacher import LoadTeacher
from edgedistill.workers.steps.quantize import QuantizeOnnx
from edgedistill.workers.steps.students_transformer import TransformerStudent

VOCAB, SEQ, WIDTH, HEADS, LAYERS = 40, 12, 32, 4, 4


class TeacherBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.n1, self.n2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        q, k, v = self.qkv(self.n1(h)).reshape(b, t, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(WIDTH // HEADS) + bias
        h = h + self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, WIDTH))
        return h + self.ff(self.n2(h))


class TokenTransformer(nn.Module):
    """A random 4-layer transformer whose class depends on which tokens occur (a learnable rule)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, SEQ, WIDTH) * 0.1)
        self.blocks = nn.ModuleList([TeacherBlock() for _ in range(LAYERS)])
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.to(torch.float32)
        h = self.tok(input_ids) + self.pos
        for blk in self.blocks:
            h = blk(h, ((1.0 - m) * -1e4)[:, None, None, :])
        return self.head((h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)) * 4


def _files(tmp_path: Path, n: int = 600) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ids = rng.integers(2, VOCAB, size=(n, SEQ)).astype(np.int64)
    lengths = rng.integers(4, SEQ + 1, size=n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids = ids * mask
    teacher = tmp_path / "teacher.onnx"
    with torch.no_grad():
        torch.onnx.export(
            TokenTransformer().eval(), (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1])), str(teacher),
            dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={k: {0: "n"} for k in ("input_ids", "attention_mask", "logits")},
        )  # fmt: skip
    return teacher, write_npz(tmp_path / "d.npz", input_ids=ids, attention_mask=mask)


def _run(tmp_path: Path, **options: object) -> tuple[RunState, object]:
    teacher, data = _files(tmp_path)
    ctx, _ = make_ctx(tmp_path, teacher=teacher, data=data, profile="cpu-x86", calibration_samples=32,
                           **options)  # fmt: skip
    state = RunState()
    for step in (LoadTeacher(), LoadData(), BuildStudent(), Distill()):
        step.run(ctx, state)
    return state, ctx


def test_transformer_method_distils_attention_and_exports_fp32_and_int8(tmp_path: Path) -> None:
    state, ctx = _run(tmp_path, method="transformer", epochs=6, batch_size=64, learning_rate=3e-3)
    student = state.student
    assert isinstance(student, TransformerStudent)
    arch = state.student_arch
    # half the teacher's depth and width, the teacher's head count (8-wide heads still fit)
    assert (arch["family"], arch["depth"], arch["width"], arch["heads"]) == ("transformer", 2, 16, 2)
    assert arch["teacher_transformer"] == {"layers": LAYERS, "heads": HEADS, "width": WIDTH}
    info = state.distillation["transformer"]
    assert info["terms_used"] == ["kl_output", "minilm_attention", "minilm_value", "tinybert_hidden"]
    assert info["heads"].startswith("averaged over heads")  # 4 teacher heads, 2 student heads
    roles = [(p["role"], p["student"]) for p in info["pairs"]]
    assert roles[:2] == [("attention", "blocks.1.attn_softmax"), ("values", "blocks.1.value_tap")]
    # TinyBERT depth pairs: student layer 2 <- teacher layer 4, student layer 1 <- teacher layer 2
    hows = [p["how"] for p in info["pairs"] if p["role"] == "hidden"]
    assert hows == ["TinyBERT: student layer 2 <- teacher layer 4", "TinyBERT: student layer 1 <- teacher layer 2"]
    att = next(p for p in info["pairs"] if p["role"] == "attention")
    assert att["teacher_shape"] == [HEADS, SEQ, SEQ]
    assert [t["key"] for t in state.distillation["loss_terms"]] == [
        "kl_output", "minilm_attention", "minilm_value", "tinybert_hidden",
    ]  # fmt: skip
    m = state.metrics["student_fp32"]
    assert m["outputs"]["logits"]["top1_agreement"] > 0.5  # 3 classes: chance is ~1/3

    for step in (ExportOnnx(), QuantizeOnnx()):
        step.run(ctx, state)
    x = state.data.inputs_of("test")
    ref = state.teacher_outputs["test"]["logits"]
    for kind in ("onnx_fp32", "onnx_int8"):
        rec = state.artifacts[kind]
        sig = rec.metadata["signature"]
        assert [t["name"] for t in sig["inputs"]] == ["input_ids", "attention_mask"]
        assert [t["name"] for t in sig["outputs"]] == ["logits"]
        got = OnnxModel(rec.path).predict_all(x)["logits"]
        assert got.shape == ref.shape
    fp32 = OnnxModel(state.artifacts["onnx_fp32"].path).predict_all(x)["logits"]
    int8 = OnnxModel(state.artifacts["onnx_int8"].path).predict_all(x)["logits"]
    assert float((fp32.argmax(1) == int8.argmax(1)).mean()) > 0.9
    assert state.artifacts["onnx_int8"].size_bytes < state.artifacts["onnx_fp32"].size_bytes
    assert state.artifacts["onnx_int8"].metadata["quantization"]["tool"].endswith("quantize_dynamic")
    assert state.artifacts["onnx_int8"].metadata["check"]["max_abs_diff_vs_fp32"]["logits"] < 0.5 * float(
        np.abs(fp32).max()
    )
    from edgedistill.workers.steps.verify import Verify

    Verify().run(ctx, state)  # verified like every other artifact: per output against the teacher
    for variant in ("student_fp32", "onnx_fp32", "onnx_int8"):
        assert state.metrics[variant]["outputs"]["logits"]["top1_agreement"] > 0.5, variant


def test_family_transformer_with_kd_trains_logits_only(tmp_path: Path) -> None:
    state, _ = _run(tmp_path, method="kd", student={"family": "transformer", "width": 32, "depth": 2}, epochs=1)
    assert isinstance(state.student, TransformerStudent)
    assert "transformer" not in state.distillation
    assert [t["key"] for t in state.distillation["loss_terms"]] == ["kl_output"]
    # width 32 = the teacher's: the token table is the teacher's (every row of it fits)
    assert state.student_arch["init_from_teacher"]["copied"][0].startswith("token embedding")


def test_the_student_respects_the_attention_mask() -> None:
    from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec

    sig = ModelSignature(
        inputs=(TensorSpec(name="input_ids", dtype="int64", shape=(None, SEQ)),
                TensorSpec(name="attention_mask", dtype="int64", shape=(None, SEQ))),
        outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 3), kind="logits"),),
    )  # fmt: skip
    student = TransformerStudent(sig, 16, 2, 2, VOCAB).eval()
    ids = torch.randint(2, VOCAB, (4, SEQ))
    mask = torch.ones(4, SEQ, dtype=torch.int64)
    mask[:, 6:] = 0
    other = ids.clone()
    other[:, 6:] = torch.randint(2, VOCAB, (4, SEQ - 6))  # only masked positions change
    with torch.no_grad():
        a, b = student(ids, mask)[0], student(other, mask)[0]
        c = student(other, torch.ones_like(mask))[0]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)


def test_a_torch_teacher_of_the_same_width_gives_its_table_and_every_other_block(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
    from edgedistill.workers.steps.students_transformer import init_from_teacher

    sig = ModelSignature(
        inputs=(TensorSpec(name="input_ids", dtype="int64", shape=(None, SEQ)),
                TensorSpec(name="attention_mask", dtype="int64", shape=(None, SEQ))),
        outputs=(OutputSpec(name="logits", dtype="float32", shape=(None, 3), kind="logits"),),
    )  # fmt: skip
    torch.manual_seed(5)
    big = TransformerStudent(sig, 16, 4, 2, VOCAB).eval()  # a 4-layer teacher built like the student
    ids, mask = torch.randint(0, VOCAB, (2, SEQ)), torch.ones(2, SEQ, dtype=torch.int64)
    path = tmp_path / "t.pt"
    torch.jit.save(torch.jit.trace(big, (ids, mask), strict=False), str(path))
    # what TorchScriptTeacher holds: the loaded ScriptModule (its parameters by name, in order)
    teacher = SimpleNamespace(_module=torch.jit.load(str(path)))
    student = TransformerStudent(sig, 16, 2, 2, VOCAB)
    info = init_from_teacher(student, teacher, sig)
    assert info["copied"] == ["token embedding (40 rows of the teacher's 40)", "block 0 <- teacher block 1",
                              "block 1 <- teacher block 3"]  # fmt: skip
    assert torch.equal(student.embedding.weight, big.embedding.weight)
    for mine, theirs in ((student.blocks[0], big.blocks[1]), (student.blocks[1], big.blocks[3])):
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b)
    narrow = TransformerStudent(sig, 8, 2, 1, VOCAB)
    info = init_from_teacher(narrow, teacher, sig)
    assert info["copied"] == [] and any("shapes differ" in s for s in info["not_copied"])


def _built_student(tmp_path: Path, profile: str) -> tuple[RunState, list[Any]]:
    """The run state after LoadTeacher, LoadData and BuildStudent on the 4-layer teacher, and the events."""
    teacher, data = _files(tmp_path, n=64)
    ctx, events = make_ctx(tmp_path, teacher=teacher, data=data, profile=profile)
    state = RunState()
    for step in (LoadTeacher(), LoadData(), BuildStudent()):
        step.run(ctx, state)
    return state, events


def test_family_auto_builds_a_transformer_student_for_a_transformer_teacher(tmp_path: Path) -> None:
    """On a CPU or phone profile family auto takes the transformer family for a detected transformer
    teacher (the conv token student stayed at the majority class on real reviews) and says why."""
    state, _ = _built_student(tmp_path, "mobile-arm64")
    assert state.student_arch["family"] == "transformer"
    assert state.student_arch["chosen_because"].startswith(
        "family auto: the teacher is a transformer (4 layers, 4 heads), so the student is one"
    )


def test_a_transformer_teacher_on_an_mcu_keeps_the_token_student_and_offers_the_method(tmp_path: Path) -> None:
    state, events = _built_student(tmp_path, "mcu-cortex-m4")
    assert state.student_arch["family"] == "multi"  # TFLite Micro's coverage of the transformer is unproven
    messages = [e.data.get("message", "") for e in events]
    assert any("the teacher is a transformer (4 layers, 4 heads)" in m for m in messages)


def test_the_report_summary_names_the_transformer_terms_and_pairs() -> None:
    from edgedistill.contracts.report import DistillationFacts
    from edgedistill.workers.steps.distill.report_section import summary_lines

    lines = summary_lines(
        DistillationFacts.model_validate({
            "method": "transformer",
            "transformer": {"terms_used": ["kl_output", "minilm_attention"], "heads": "per head (4 = 4)"},
            "features": {"pairs": [{"role": "attention", "student": "blocks.1.attn_softmax", "teacher": "sm3",
                                    "how": "MiniLM: last layer <- last layer"}]},
        })
    )  # fmt: skip
    assert "- Transformer terms: kl_output, minilm_attention; heads per head (4 = 4)" in lines
    assert any(
        line.startswith("- Feature pair: attention student blocks.1.attn_softmax <- teacher sm3") for line in lines
    )


def test_family_auto_falls_back_to_the_designed_student_when_no_transformer_student_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedistill.contracts.errors import InputError
    from edgedistill.workers.steps import students_transformer

    def refuse(*_a: object, **_k: object) -> None:
        raise InputError("no transformer student within the budgets")

    monkeypatch.setattr(students_transformer, "build_transformer_student", refuse)
    state, _ = _built_student(tmp_path, "mobile-arm64")
    assert state.student_arch["family"] == "multi"
    assert any("family auto: no transformer student (no transformer student within" in w for w in state.warnings)
