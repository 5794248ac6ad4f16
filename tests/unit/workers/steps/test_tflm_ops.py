"""The MCU profiles' op_allowlist against the real TFLite Micro interpreter: the full-int8 files of
multi-I/O students (class-index + probabilities, two inputs with sigmoid and regression heads, token
ids with a mask) use only allowlisted ops and run in tflite-micro; the token student's int32 id
hashing (FLOOR_MOD), which TFLM cannot run, is refused with a reason that says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.signature import ModelSignature
from edgedistill.runtimes.litert import TfliteModel
from edgedistill.runtimes.tflm import run_tflm_all
from edgedistill.workers.steps.model_info import tflite_ops
from edgedistill.workers.steps.verify import OpNotAllowed, Verify
from tests.unit.workers.steps.conftest import make_run
from tests.unit.workers.steps.test_export_multi import _export, multi_state
from tests.unit.workers.steps.test_students_multi import SKLEARN, TEXT, VAD_PLUS_AGE

M4 = builtin_profiles()["mcu-cortex-m4"]
ALLOWED = set(M4.op_allowlist or [])


def _runs_in_tflm(tmp_path: Path, signature: ModelSignature) -> tuple[list[str], Any]:
    state = _export(tmp_path, "mcu-cortex-m4", multi_state(signature))
    rec = state.artifacts["tflite_int8_full"]
    ops = tflite_ops(rec.path)
    assert set(ops) <= ALLOWED, sorted(set(ops) - ALLOWED)
    x = {k: v[:4] for k, v in state.data.inputs_of("test").items()}
    got, arena = run_tflm_all(rec.path, x)  # fails on any op TFLM has no kernel (or no type) for
    lite = TfliteModel(rec.path).predict_all(x)
    assert arena > 0 and list(got) == list(signature.output_names)
    for name in got:
        scale = float(np.max(np.abs(lite[name].astype(np.float64)))) + 1e-3
        assert float(np.max(np.abs(got[name].astype(np.float64) - lite[name]))) <= 0.05 * scale, name
    return ops, state


@pytest.mark.slow  # litert-torch conversion + a TFLM run (~4 s CPU)
def test_class_index_student_runs_in_tflm(tmp_path: Path) -> None:
    assert "ARG_MAX" in _runs_in_tflm(tmp_path, SKLEARN)[0]


@pytest.mark.slow
def test_two_input_sigmoid_regression_student_runs_in_tflm(tmp_path: Path) -> None:
    ops, state = _runs_in_tflm(tmp_path, VAD_PLUS_AGE)
    assert {"LOGISTIC", "TRANSPOSE", "CONCATENATION"} <= set(ops)
    # verify judges the TFLM run per output, as for the other variants
    from edgedistill.workers.steps.export_multi import torch_predict_all
    from edgedistill.workers.steps.heads import export_module
    from edgedistill.workers.steps.verify_multi import verify_multi

    state.export_module = export_module(state.student, VAD_PLUS_AGE)
    x = state.data.inputs_of("test")
    state.teacher_outputs = {"test": torch_predict_all(state.export_module, VAD_PLUS_AGE, x)}
    metrics = verify_multi(make_run(tmp_path, "mcu-cortex-m4").ctx, state)
    tflm = metrics["tflm"]
    assert tflm["runtime"] == "tflite-micro" and set(tflm["outputs"]) == {"speech", "age"}
    assert tflm["arena_bytes"] > 0 and tflm["samples"] == len(state.data.splits["test"])
    assert abs(tflm["headline"] - metrics["tflite_int8_full"]["headline"]) <= 0.05  # same file, other kernels


@pytest.mark.slow  # litert-torch conversion + TFLM (~6 s CPU)
def test_token_student_ops_run_in_tflm_when_its_table_covers_every_id(tmp_path: Path) -> None:
    """Embedding lookup, casts, masked sum / divide / clamp are all TFLM-runnable: a token student whose
    table covers every id seen clamps instead of hashing (no FLOOR_MOD) and runs in TFLM."""
    ops, _ = _runs_in_tflm(tmp_path, TEXT)
    assert {"EMBEDDING_LOOKUP", "CAST", "SUM", "DIV", "MAXIMUM"} <= set(ops) and "FLOOR_MOD" not in ops


@pytest.mark.slow  # litert-torch conversion (~8 s CPU)
def test_token_hashing_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A table smaller than the ids seen (capped by the flash budget) hashes ids, which TFLM cannot run."""
    from edgedistill.workers.steps.students_multi import TokenEncoder

    state = multi_state(TEXT)
    for m in state.student.modules():
        if isinstance(m, TokenEncoder):
            m.hashed = True
    state = _export(tmp_path, "mcu-cortex-m4", state)
    rec = state.artifacts["tflite_int8_full"]
    assert "FLOOR_MOD" in tflite_ops(rec.path)
    run = make_run(tmp_path, "mcu-cortex-m4")
    with pytest.raises(OpNotAllowed, match="FLOOR_MOD") as info:
        Verify()._check_budgets(run.ctx, state, None)
    assert "float32 only" in str(info.value) and "token" in str(info.value)
    assert state.budget["ops"]["tflite_int8_full"]["not_allowed"] == ["FLOOR_MOD"]
    # the interpreter's own message reaches the error, not only "Interpreter invocation failed"
    with pytest.raises(Exception, match="not supported by FLOOR_MOD"):
        run_tflm_all(rec.path, {k: v[:1] for k, v in state.data.inputs_of("test").items()})
