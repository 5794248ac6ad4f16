"""Deployment facts read back from the exported files: the ONNX and TFLite snippets run as written,
int8 scale/zero-point match the exporter's, the TFLM snippet uses only the header's defines and the
model's ops, and every sidecar and summary.md carry them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgedistill.workers.steps.artifacts import sidecar_path
from edgedistill.workers.steps.deployment import c_array_bytes, facts_for, how_to_run, layout_of, tflite_ops


def _run_snippet(code: str, artifact: Path, tmp_path: Path) -> str:
    """Run a Python snippet in a folder holding only the artifact, as a user who copied both would."""
    folder = tmp_path / "snippet"
    folder.mkdir(exist_ok=True)
    shutil.copy(artifact, folder / artifact.name)
    (folder / "run.py").write_text(code)
    proc = subprocess.run([sys.executable, "run.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_layout_of() -> None:
    assert layout_of([1, 1, 8, 8]) == "NCHW" and layout_of(["batch", 3, 32, 32]) == "NCHW"
    assert layout_of([1, 8, 8, 1]) == "NHWC" and layout_of([1, 32, 32, 3]) == "NHWC"
    assert layout_of([1, 30]) == "NF"
    assert layout_of([1, 4, 4, 4]) == "as-is"  # ambiguous: say so rather than guess
    assert layout_of([1, 1, 64, 3]) == "as-is"


@pytest.mark.slow  # runs the generated onnxruntime snippet in two subprocesses (~5 s CPU)
def test_onnx_facts_and_snippet(exported: Any, tmp_path: Path) -> None:
    _, state = exported("mobile-arm64", "digits")
    for kind in ("onnx_fp32", "onnx_int8"):
        art = state.artifacts[kind]
        facts = art.metadata["deployment"]
        assert facts["runtime"] == "onnxruntime"
        (inp,) = facts["inputs"]
        assert inp["dtype"] == "float32" and inp["shape"][1:] == [1, 8, 8] and inp["layout"] == "NCHW"
        assert facts["outputs"][0]["shape"][-1] == 10
        assert ("QDQ" in facts["note"]) == (kind == "onnx_int8")
        assert "(1, 10)" in _run_snippet(facts["snippet"]["code"], art.path, tmp_path)
        assert json.loads(sidecar_path(art.path).read_text())["deployment"] == facts


@pytest.mark.slow  # runs the generated LiteRT snippets in two subprocesses (~9 s CPU)
def test_tflite_facts_match_the_exporter_and_the_snippet_runs(exported: Any, tmp_path: Path) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    art = state.artifacts["tflite_int8_full"]
    facts = art.metadata["deployment"]
    (inp,), (out,) = facts["inputs"], facts["outputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [1, 8, 8, 1] and inp["layout"] == "NHWC"
    q = art.metadata["io_quantization"]
    assert inp["quantization"]["scale"] == pytest.approx(q["input"]["scale"], rel=1e-7)
    assert inp["quantization"]["zero_point"] == q["input"]["zero_point"]
    assert out["quantization"]["scale"] == pytest.approx(q["output"]["scale"], rel=1e-7)
    assert "channels-last" in facts["note"] and "int8" in facts["note"]
    printed = _run_snippet(facts["snippet"]["code"], art.path, tmp_path)
    assert printed.count(".") >= 10  # ten dequantized floats

    _, mobile = exported("mobile-arm64", "digits")
    float_io = mobile.artifacts["tflite_int8"].metadata["deployment"]
    assert float_io["inputs"][0]["dtype"] == "float32" and float_io["inputs"][0]["layout"] == "NHWC"
    _run_snippet(float_io["snippet"]["code"], mobile.artifacts["tflite_int8"].path, tmp_path)


def test_c_source_and_header_facts(exported: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    tfl = state.artifacts["tflite_int8_full"].metadata["deployment"]
    src_art, hdr_art = state.artifacts["c_source"], state.artifacts["c_header"]
    src, hdr = src_art.metadata["deployment"], hdr_art.metadata["deployment"]
    name, model = c_array_bytes(src_art.path.read_text())
    assert name == "student" and model == state.artifacts["tflite_int8_full"].path.read_bytes()
    assert src["inputs"] == tfl["inputs"] and src["outputs"] == tfl["outputs"]
    assert src["ops"] == tflite_ops(model) and "FULLY_CONNECTED" in src["ops"]
    # The header's own defines give the same shape and quantization.
    assert hdr["inputs"][0]["shape"] == tfl["inputs"][0]["shape"]
    assert hdr["inputs"][0]["quantization"]["scale"] == pytest.approx(tfl["inputs"][0]["quantization"]["scale"])
    assert hdr["outputs"][0]["quantization"]["zero_point"] == tfl["outputs"][0]["quantization"]["zero_point"]
    assert hdr["tensor_arena_bytes"] == state.budget["tflm_arena"]["reserved_bytes"]

    header = hdr_art.path.read_text()
    defined = set(re.findall(r"^#define (\w+)", header, re.MULTILINE)) | {"student_model"}
    code = src["snippet"]["code"]
    used = set(re.findall(r"\bSTUDENT_\w+|\bstudent_model\b", code))
    assert used and used <= defined, used - defined
    for op in src["ops"]:
        method = "Add" + "".join(p.capitalize() if p.isalpha() else p for p in op.split("_"))
        assert f"resolver.{method}();" in code
    assert f"MicroMutableOpResolver<{len(src['ops'])}>" in code


def test_summary_how_to_run_lists_every_model(exported: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    text = how_to_run(state.artifacts)
    assert text.startswith("## How to run")
    for kind in ("onnx_fp32", "onnx_int8", "tflite_int8_full", "c_source", "c_header"):
        assert f"### {kind}: `{state.artifacts[kind].path.name}`" in text
    assert "```cpp" in text and "```python" in text and "zero-point" in text


def test_unreadable_model_gives_a_reason_and_other_files_none(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00not onnx")
    facts = facts_for(bad)
    assert facts is not None and facts["error"].startswith("could not read broken.onnx")
    (tmp_path / "report.json").write_text("{}")
    assert facts_for(tmp_path / "report.json") is None
