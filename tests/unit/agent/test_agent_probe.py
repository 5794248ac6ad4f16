from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgedistill.agent.errors import AgentError
from edgedistill.agent.probe import compare, is_classification, load_probe


def _probe(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_probe_and_pick_references(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 8, 8), np.float32)
    out = np.eye(4, 3, dtype=np.float32)
    p = load_probe(_probe(tmp_path / "p.npz", x=x, y=np.arange(4), out_onnx_int8=out, out_student_fp32=out + 1))
    assert p.x.shape == (4, 1, 8, 8) and set(p.outputs) == {"onnx_int8", "student_fp32"}
    assert p.reference_for("onnx_int8")[0] == "onnx_int8"
    assert p.reference_for("onnx_fp32")[0] == "student_fp32"  # float artifacts vs the float student
    with pytest.raises(AgentError, match="no host outputs for tflite_int8"):
        p.reference_for("tflite_int8")


def test_probe_is_never_unpickled(tmp_path: Path) -> None:
    path = _probe(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(AgentError, match="cannot read the probe"):
        load_probe(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(AgentError, match="cannot read the probe"):
        load_probe(tmp_path / "junk.npz")


def test_probe_rows_must_match(tmp_path: Path) -> None:
    path = _probe(tmp_path / "p.npz", x=np.zeros((4, 3), np.float32), out_onnx_int8=np.zeros((3, 2), np.float32))
    with pytest.raises(AgentError, match="3 rows for 4 inputs"):
        load_probe(path)


def test_compare_agreement_and_diffs() -> None:
    host = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 3.0], [5.0, -1.0]], np.float32)
    same = compare(host, host, classification=True)
    assert same.agreement == 1.0 and same.max_abs_diff == 0.0 and same.reference_max_abs == 5.0
    flipped = compare(-host, host, classification=True)
    assert flipped.agreement == 0.0 and flipped.max_abs_diff == pytest.approx(10.0)
    one_off = host.copy()
    one_off[0] = [1.0, 2.0]
    r = compare(one_off, host, classification=True)
    assert r.agreement == 0.75 and r.max_abs_diff == pytest.approx(1.0)
    assert compare(host, host, classification=False).agreement is None


def test_compare_nan_outputs_are_far_but_json_safe() -> None:
    host = np.ones((2, 3), np.float32)
    dev = host.copy()
    dev[1, 2] = np.nan
    r = compare(dev, host, classification=False)
    assert r.non_finite == 1 and np.isfinite(r.max_abs_diff) and r.max_abs_diff > 1e30


def test_compare_shape_mismatch() -> None:
    with pytest.raises(AgentError, match="shape"):
        compare(np.zeros((2, 3)), np.zeros((2, 4)), classification=True)


def test_is_classification() -> None:
    logits = np.zeros((4, 10), np.float32)
    assert is_classification("classification", logits, None)
    assert not is_classification("regression", logits, None)
    assert is_classification(None, logits, np.arange(4))
    assert not is_classification(None, logits, np.zeros(4, np.float32))  # float targets: regression
    assert not is_classification(None, np.zeros((4, 1), np.float32), None)
