from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgedistill.contracts.errors import PipelineError
from edgedistill.runtimes.tflm import run_tflm
from edgedistill.workers.steps.mcu import (
    ARENA_VERSION_MARGIN,
    ExportCArray,
    align_up,
    arena_reservation,
    c_array_source,
    cmsis_scratch_bound,
)


def parse_c_array(source: str, name: str) -> bytes:
    """The bytes of `name[] = {...}` in a C source, parsed back independently of the writer."""
    m = re.search(rf"{name}\[\]\s*=\s*\{{(.*?)\}};", source, re.S)
    assert m, f"no array {name}"
    return bytes(int(tok, 16) for tok in re.findall(r"0x[0-9a-fA-F]{2}", m.group(1)))


def _defines(header: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (\w+) (.+)$", header, re.M))


def test_c_array_round_trips_any_bytes() -> None:
    data = bytes(range(256)) * 3 + b"\x00"
    src = c_array_source(data, "m", "m.h")
    assert parse_c_array(src, "m_model") == data
    assert f"const unsigned int m_model_len = {len(data)};" in src
    assert "alignas(16) const unsigned char m_model[]" in src
    with pytest.raises(ValueError):
        c_array_source(data, "not-an-identifier", "x.h")


def test_align_up() -> None:
    assert [align_up(n) for n in (0, 1, 16, 17, 4095)] == [0, 16, 16, 32, 4096]


@pytest.mark.slow  # a whole pipeline / real lowering: seconds of CPU (fast tier < 2 min)
def test_source_and_header_describe_the_exact_model(exported: Any) -> None:
    _run, state = exported("mcu-cortex-m4", "digits")
    tfl = state.artifacts["tflite_int8_full"]
    src = state.artifacts["c_source"].path.read_text()
    header = state.artifacts["c_header"].path.read_text()

    assert parse_c_array(src, "student_model") == tfl.path.read_bytes()
    d = _defines(header)
    assert int(d["STUDENT_MODEL_LEN"]) == tfl.size_bytes
    q = tfl.metadata["io_quantization"]
    assert float(d["STUDENT_INPUT_SCALE"].rstrip("f")) == pytest.approx(q["input"]["scale"], rel=1e-7)
    assert int(d["STUDENT_INPUT_ZERO_POINT"].strip("()")) == q["input"]["zero_point"]
    assert float(d["STUDENT_OUTPUT_SCALE"].rstrip("f")) == pytest.approx(q["output"]["scale"], rel=1e-7)
    assert d["STUDENT_INPUT_SHAPE"] == "{1, 8, 8, 1}" and d["STUDENT_OUTPUT_SIZE"] == "10"
    assert d["STUDENT_NUM_CLASSES"] == "10" and '"digit_7"' in src

    # The arena define is TFLM's own measurement plus the documented margin.
    _, measured = run_tflm(tfl.path, state.data.x_of("test")[:1])
    assert int(d["STUDENT_TENSOR_ARENA_MEASURED"]) == measured
    expected = align_up(measured + cmsis_scratch_bound(tfl.path) + ARENA_VERSION_MARGIN)
    assert int(d["STUDENT_TENSOR_ARENA_SIZE"]) == expected
    assert state.budget["tflm_arena"]["reserved_bytes"] == expected
    assert tfl.sha256 in header and tfl.sha256 in src


def test_cmsis_scratch_bound_follows_the_largest_convolution(exported: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    # TinyDSCNN(width 16): the 1-channel stem becomes DEPTHWISE_CONV_2D [1, 3, 3, 16] -> 4*3*3*16 = 576,
    # depthwise 3x3x16 -> 576, pointwise [32, 1, 1, 16] -> 64, FC with 10 outputs -> 40 bytes.
    assert cmsis_scratch_bound(state.artifacts["tflite_int8_full"].path) == 576
    rule = arena_reservation(1000, state.artifacts["tflite_int8_full"].path)
    assert rule["reserved_bytes"] == align_up(1000 + 576 + ARENA_VERSION_MARGIN)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_generated_files_compile_link_and_hold_the_model(exported: Any, tmp_path: Path) -> None:
    """Build the .cc with a small program, as firmware would, and read the model back from the binary."""
    _, state = exported("mcu-cortex-m4", "digits")
    src, hdr = state.artifacts["c_source"].path, state.artifacts["c_header"].path
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "student_model.h"\n'
        "int main() {\n"
        "  if ((reinterpret_cast<std::uintptr_t>(student_model) % 16) != 0) return 2;\n"
        "  if (student_model_len != STUDENT_MODEL_LEN) return 3;\n"
        '  static_assert(STUDENT_TENSOR_ARENA_SIZE % 16 == 0, "arena aligned");\n'
        "  std::fwrite(student_model, 1, student_model_len, stdout);\n"
        '  std::fprintf(stderr, "%s|%d", student_class_labels[STUDENT_NUM_CLASSES - 1], STUDENT_INPUT_ZERO_POINT);\n'
        "  return 0;\n}\n"
    )
    exe = tmp_path / "probe"
    subprocess.run(
        ["g++", "-std=c++11", "-Wall", "-Werror", "-I", str(hdr.parent), str(main), str(src), "-o", str(exe)],
        check=True,
        capture_output=True,
    )
    done = subprocess.run([str(exe)], capture_output=True, check=True)
    assert done.stdout == state.artifacts["tflite_int8_full"].path.read_bytes()
    zp = state.artifacts["tflite_int8_full"].metadata["io_quantization"]["input"]["zero_point"]
    assert done.stderr.decode() == f"digit_9|{zp}"


def test_labels_with_quotes_and_unicode_are_escaped(
    run_factory: Any, exported: Any, digits_case: Any, tmp_path: Path
) -> None:
    _, shared = exported("mcu-cortex-m4", "digits")
    run = run_factory("mcu-cortex-m4")
    state = digits_case.state()
    state.artifacts["tflite_int8_full"] = shared.artifacts["tflite_int8_full"]
    run.ctx.spec.class_labels = None
    state.data = dataclasses.replace(digits_case.data, class_labels=[f'a"b\\c é {i}' for i in range(10)])
    ExportCArray().run(run.ctx, state)
    src = state.artifacts["c_source"].path.read_text()
    assert '"a\\"b\\\\c \\303\\251 0"' in src  # quote and backslash escaped, UTF-8 as octal bytes


def test_needs_the_full_int8_model(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("mcu-cortex-m4")
    with pytest.raises(PipelineError, match="tflite_int8_full"):
        ExportCArray().run(run.ctx, digits_case.state())


def test_skipped_for_profiles_without_c_array(run_factory: Any, digits_case: Any) -> None:
    run = run_factory("mobile-arm64")
    state = digits_case.state()
    ExportCArray().run(run.ctx, state)
    assert state.artifacts == {} and list(run.ctx.work_dir.iterdir()) == []
