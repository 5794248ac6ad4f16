from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.context import RunState
from edgedistill.workers.steps.artifacts import (
    record_artifact,
    sidecar_path,
    staged_file,
    to_jsonable,
    write_bytes_atomic,
)


def test_staged_file_appears_only_when_complete(tmp_path: Path) -> None:
    with staged_file(tmp_path, "model.bin") as tmp:
        tmp.write_bytes(b"abc")
        assert not (tmp_path / "model.bin").exists()  # not visible under its name while being written
    assert (tmp_path / "model.bin").read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_staged_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staged_file(tmp_path, "model.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []


def test_staged_file_refuses_an_empty_result(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not written"), staged_file(tmp_path, "model.bin"):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "../x", "a/b", "..", "a\\b"])
def test_staged_file_rejects_names_that_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError), staged_file(tmp_path, name):
        pass


def test_record_artifact_hashes_writes_sidecar_and_emits(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("cpu-x86")
    state = RunState()
    state.data = digits_case.data
    path = write_bytes_atomic(run.ctx.work_dir, "blob.bin", b"\x00\x01payload")
    rec = record_artifact(
        run.ctx, state, kind="onnx_fp32", path=path, metadata={"ops": ["Conv"], "scale": np.float32(0.5)}
    )

    assert rec.sha256 == hashlib.sha256(b"\x00\x01payload").hexdigest()
    assert rec.size_bytes == 9
    assert state.artifacts["onnx_fp32"] is rec
    side = json.loads(sidecar_path(path).read_text())
    assert side["sha256"] == rec.sha256
    assert side["profile"] == "cpu-x86"
    assert side["class_labels"] == digits_case.data.class_labels
    assert side["scale"] == 0.5 and side["ops"] == ["Conv"]
    (event,) = run.of_kind("artifact")
    assert event.data["kind"] == "onnx_fp32"
    assert event.data["filename"] == "blob.bin"
    assert event.data["sha256"] == rec.sha256
    assert event.data["metadata"] == side


def test_record_artifact_without_file_fails(run_factory: Any) -> None:
    run = run_factory("cpu-x86")
    with pytest.raises(PipelineError, match="missing"):
        record_artifact(run.ctx, RunState(), kind="report", path=run.ctx.work_dir / "nope.json")


def test_to_jsonable_converts_numpy() -> None:
    out = to_jsonable({"a": np.int64(3), "b": np.arange(3, dtype=np.int8), "c": Path("/x")})
    assert out == {"a": 3, "b": [0, 1, 2], "c": "/x"}
    with pytest.raises(TypeError):
        to_jsonable({"bad": object()})
