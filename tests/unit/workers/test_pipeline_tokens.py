"""A two-input token teacher (input_ids + attention_mask, int64) through the whole engine on the
mobile profile: every artifact is exported under the teacher's names and timed with both inputs fed
(the benchmark once fed only the first input as float and failed the job)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from factories import write_npz
from signature_models import token_classifier_onnx

SEQ, VOCAB = 16, 50


@pytest.mark.slow  # a whole pipeline run (~7 s CPU)
def test_token_teacher_runs_end_to_end_and_every_artifact_is_timed(tmp_path: Path) -> None:
    from edgedistill.contracts.profiles import resolve_profile
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(token_classifier_onnx(seq=SEQ, vocab=VOCAB))
    rng = np.random.default_rng(0)
    n = 400
    lengths = rng.integers(3, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int64) * mask
    data = write_npz(tmp_path / "data.npz", input_ids=ids, attention_mask=mask)
    options = JobOptions(
        epochs=2, patience=2, benchmark_runs=3, benchmark_warmup=1, calibration_samples=32, device="cpu"
    )
    spec = PipelineSpec(
        teacher_path=teacher, data_path=data, profile=resolve_profile("mobile-arm64"), options=options,
        out_dir=tmp_path / "out",
    )  # fmt: skip
    result = run_pipeline(spec)

    timed = {m["artifact_kind"] for m in result.report["latency"]["measurements"] if m.get("source") == "host"}
    assert {"teacher", "onnx_fp32", "onnx_int8", "tflite_int8"} <= timed
    student = ort.InferenceSession(str(result.artifacts["onnx_fp32"].path), providers=["CPUExecutionProvider"])
    assert [i.name for i in student.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in student.get_outputs()] == ["logits", "probs"]
