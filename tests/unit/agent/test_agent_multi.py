"""A teacher with two inputs (token ids + attention mask, the ONNX model of tests/signature_models.py)
and two outputs (logits, probabilities), compressed by the real engine for mobile-arm64: verify writes
a probe with one key per input name and each variant's outputs per output name, and the agent runs
every artifact from it (inputs fed by name, int64 ids cast to what each file takes, int8 I/O by the
model's own scales) and compares each output with the host's run of the same file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgedistill.agent.measure import BenchOptions, measure_files
from edgedistill.agent.probe import read_arrays
from edgedistill.agent.probe_multi import compare_outputs, headline, parse_multi
from tests.signature_models import token_classifier_onnx

# every test reads a real engine run of a two-input teacher (~8 s CPU)
pytestmark = pytest.mark.slow

SEQ, VOCAB = 16, 50


@pytest.fixture(scope="module")
def token_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from edgedistill.contracts.profiles import resolve_profile
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    tmp = tmp_path_factory.mktemp("agent-tokens")
    teacher = tmp / "tokens.onnx"
    teacher.write_bytes(token_classifier_onnx(seq=SEQ, vocab=VOCAB))
    rng = np.random.default_rng(0)
    n = 240
    ids = rng.integers(0, VOCAB, size=(n, SEQ)).astype(np.int64)
    lengths = rng.integers(4, SEQ + 1, size=n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    np.savez(tmp / "data.npz", input_ids=ids, attention_mask=mask)
    options = JobOptions(epochs=2, patience=2, benchmark_runs=3, benchmark_warmup=1, calibration_samples=32)
    spec = PipelineSpec(
        teacher_path=teacher, data_path=tmp / "data.npz", profile=resolve_profile("mobile-arm64"),
        options=options, out_dir=tmp / "out",
    )  # fmt: skip
    return run_pipeline(spec)


def _artifact(run: Any, kind: str) -> dict[str, Any]:
    art = run.artifacts[kind]
    return {"id": "a1", "kind": kind, "sha256": art.sha256, "metadata": art.metadata, "task": "classification"}


def test_probe_holds_every_input_by_name_and_outputs_per_variant(token_run: Any) -> None:
    arrays = read_arrays(token_run.artifacts["probe"].path)
    manifest = json.loads(str(arrays["probe_manifest"][()]))
    assert [t["name"] for t in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert arrays["input_ids"].dtype == np.int64 and arrays["input_ids"].shape == (32, SEQ)
    assert arrays["attention_mask"].shape == (32, SEQ)
    assert [o["name"] for o in manifest["outputs"]] == ["logits", "probs"]
    probe = parse_multi(arrays, "probe.npz")
    assert {"teacher", "student_fp32", "onnx_fp32", "onnx_int8", "tflite_int8"} <= set(probe.outputs)
    for variant, outs in probe.outputs.items():
        assert outs["logits"].shape == (32, 3) and outs["probs"].shape == (32, 3), variant
        np.testing.assert_allclose(outs["probs"].sum(axis=1), 1.0, atol=2e-2)  # the teacher's softmax kept
    # the host's own figures are real runs: the fp32 ONNX reproduces the float student
    np.testing.assert_allclose(probe.outputs["onnx_fp32"]["logits"], probe.outputs["student_fp32"]["logits"], atol=1e-4)


@pytest.mark.parametrize("kind", ["onnx_fp32", "onnx_int8", "tflite_int8"])
def test_agent_runs_each_artifact_by_input_name(token_run: Any, kind: str, tmp_path: Path) -> None:
    art = token_run.artifacts[kind]
    body, _ = measure_files(
        art.path, token_run.artifacts["probe"].path, _artifact(token_run, kind), threads=1,
        options=BenchOptions(runs=5, warmup=1),
    )  # fmt: skip
    extra = body["extra"]
    assert set(extra["outputs"]) == {"logits", "probs"} and extra["inputs"] == ["input_ids", "attention_mask"]
    assert extra["reference"] == f"out_{kind}__<output>"  # each file against the host's run of the same file
    assert body["agreement"] == 1.0 and body["max_abs_diff"] <= 1e-5
    assert body["count"] == 5 and body["p50_ms"] > 0 and extra["probe_samples"] == 32


def test_a_wrong_output_is_caught_output_by_output(token_run: Any) -> None:
    probe = parse_multi(read_arrays(token_run.artifacts["probe"].path), "probe.npz")
    host = probe.outputs["tflite_int8"]
    wrong = {"logits": host["logits"][:, ::-1].copy(), "probs": host["probs"]}  # classes swapped in one output
    per = compare_outputs(wrong, host, probe.output_kinds)
    agreement, worst = headline(per)
    assert {p.name: p.agreement for p in per}["probs"] == 1.0
    assert agreement is not None and agreement < 1.0 and worst is not None and worst.name == "logits"
    with pytest.raises(Exception, match="no output 'probs'"):
        compare_outputs({"logits": host["logits"]}, host, probe.output_kinds)


@pytest.mark.slow
def test_full_int8_two_input_student_on_an_mcu_profile(tmp_path: Path) -> None:
    """Spectrogram + vector inputs, sigmoid + regression outputs, int8 I/O: the probe also holds the
    TFLite Micro run, and the agent quantizes each float input with that input's own scale."""
    from edgedistill.workers.steps.export_multi import torch_predict_all
    from edgedistill.workers.steps.heads import export_module
    from edgedistill.workers.steps.probe_multi import write_multi_probe
    from tests.unit.workers.steps.conftest import make_run
    from tests.unit.workers.steps.test_export_multi import _export, multi_state
    from tests.unit.workers.steps.test_students_multi import VAD_PLUS_AGE

    state = _export(tmp_path, "mcu-cortex-m4", multi_state(VAD_PLUS_AGE))
    x = state.data.inputs_of("test")
    state.teacher_outputs = {"test": torch_predict_all(export_module(state.student, VAD_PLUS_AGE), VAD_PLUS_AGE, x)}
    write_multi_probe(make_run(tmp_path, "mcu-cortex-m4").ctx, state, 8)
    probe = parse_multi(read_arrays(state.artifacts["probe"].path), "probe.npz")
    assert {"tflite_int8_full", "tflm"} <= set(probe.outputs) and list(probe.inputs) == ["spec", "meta"]
    body, _ = measure_files(
        state.artifacts["tflite_int8_full"].path, state.artifacts["probe"].path,
        _artifact(state, "tflite_int8_full"), threads=1, options=BenchOptions(runs=3, warmup=1),
    )  # fmt: skip
    quant = body["extra"]["input_quantization"]
    int8_inputs = {  # the file's own input types, in teacher order
        n for n, t in zip(("spec", "meta"), state.artifacts["tflite_int8_full"].metadata["signature"]["inputs"],
                          strict=True) if t["dtype"] == "int8"
    }  # fmt: skip
    assert "spec" in int8_inputs and set(quant) == int8_inputs and all(q["dtype"] == "int8" for q in quant.values())
    assert body["max_abs_diff"] <= 1e-6 and set(body["extra"]["outputs"]) == {"speech", "age"}
