"""The device artifact and the headline speed-up from measured figures (no models needed)."""

from __future__ import annotations

from typing import Any

import pytest

from edgedistill.workers.steps.device_artifact import choose_device_artifact, speed_headline

SIZES = {"onnx_fp32": 40_000, "onnx_int8": 14_000, "tflite_int8": 12_000, "tflite_int8_full": 12_500}


def _t(kind: str, ms: float, runtime: str, threads: int = 4) -> dict[str, Any]:
    return {"artifact_kind": kind, "source": "host", "runtime": runtime, "threads": threads, "p50_ms": ms}


LATENCY = [
    _t("onnx_fp32", 0.10, "onnxruntime"),
    _t("onnx_int8", 0.16, "onnxruntime"),  # int8 slower than fp32, as on x86 without VNNI
    _t("tflite_int8", 0.12, "ai-edge-litert"),
    _t("tflite_int8_full", 0.13, "ai-edge-litert"),
]


def _choose(device_class: str, quality: dict[str, float], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        device_class=device_class, sizes=SIZES, quality=quality, metric="accuracy", teacher_quality=0.95,
        target=0.97, accuracy_budget_pp=0.5, max_model_bytes=1_000_000, latency=LATENCY,
    )  # fmt: skip
    args.update(kw)
    return choose_device_artifact(**args)


GOOD = {"onnx_fp32": 0.95, "onnx_int8": 0.949, "tflite_int8": 0.948, "tflite_int8_full": 0.947}


def test_cpu_gets_the_fastest_artifact_that_meets_quality_and_a_slower_int8_is_named() -> None:
    c = _choose("cpu", GOOD)
    assert c["chosen"] == "onnx_fp32" and "fastest" in c["why"]
    assert c["notes"] == [
        "onnx_int8 is 1.6x slower than onnx_fp32 on this host (p50 0.160 ms vs 0.100 ms, 4 threads in "
        "onnxruntime); the device artifact is onnx_fp32"
    ]
    # An fp32 file over the flash budget is not a candidate.
    assert _choose("cpu", GOOD, max_model_bytes=20_000)["chosen"] == "tflite_int8"


def test_a_fast_artifact_that_loses_quality_is_not_chosen() -> None:
    c = _choose("cpu", {**GOOD, "onnx_fp32": 0.90})  # 94.7 % of the teacher: below 97 %
    assert c["chosen"] == "tflite_int8"
    row = next(r for r in c["candidates"] if r["kind"] == "onnx_fp32")
    assert row["meets_target"] is False and row["kept"] == pytest.approx(0.90 / 0.95)


def test_none_meeting_the_target_falls_back_to_the_fastest_near_the_best() -> None:
    low = {"onnx_fp32": 0.60, "onnx_int8": 0.70, "tflite_int8": 0.40, "tflite_int8_full": 0.698}
    c = _choose("cpu", low)
    assert c["chosen"] == "tflite_int8_full" and c["why"].startswith("none meets")  # 0.2 pp below the best


def test_mobile_runs_litert_and_mcu_stays_full_int8() -> None:
    assert _choose("mobile", GOOD)["chosen"] == "tflite_int8"
    mcu = _choose("mcu", GOOD)
    assert mcu["chosen"] == "tflite_int8_full" and mcu["notes"] == []


def test_speed_headline_is_same_runtime_and_labels_the_cross_runtime_figure() -> None:
    torch_teacher = [*LATENCY, _t("teacher", 3.72, "torch.jit"), _t("student_torch", 0.865, "torch")]
    h = speed_headline(torch_teacher, "tflite_int8")
    assert h["latency_x"] == pytest.approx(3.72 / 0.865) and h["latency_vs"] == "student_torch"
    assert h["latency_same_runtime"] is True and h["latency_basis"].startswith("same runtime")
    assert h["latency_x_device_artifact"] == pytest.approx(31.0)
    assert h["latency_basis_device_artifact"].startswith("cross-runtime: teacher in torch.jit")

    # With the torch teacher exported to ONNX, the like-for-like pair is ONNX vs the student's ONNX.
    h = speed_headline([*torch_teacher, _t("teacher_onnx", 0.688, "onnxruntime")], "tflite_int8")
    assert (h["latency_teacher"], h["latency_vs"]) == ("teacher_onnx", "onnx_int8")
    assert h["latency_x"] == pytest.approx(4.3) and "the teacher exported to ONNX" in h["latency_basis"]
    assert h["latency_x_device_artifact"] == pytest.approx(31.0)  # still the teacher as given

    onnx_teacher = [*LATENCY, _t("teacher", 0.5, "onnxruntime")]
    h = speed_headline(onnx_teacher, "tflite_int8")  # a phone's LiteRT file vs an ONNX teacher
    assert h["latency_vs"] == "onnx_int8" and h["latency_x"] == pytest.approx(0.5 / 0.16)
    assert speed_headline(onnx_teacher, "onnx_fp32")["latency_vs"] == "onnx_fp32"

    other_threads = [*LATENCY, _t("teacher", 0.5, "onnxruntime", threads=1)]
    h = speed_headline(other_threads, "onnx_int8")
    assert h["latency_same_runtime"] is False and h["latency_basis"].startswith("cross-runtime")
    assert speed_headline(LATENCY, "onnx_int8")["latency_x"] is None


# --- the teacher quantized alone as a candidate ------------------------------------------------------

T_SIZES = {**SIZES, "teacher_int8": 60_000}
T_LATENCY = [*LATENCY, _t("teacher_int8", 0.30, "onnxruntime")]
LOW = {"onnx_fp32": 0.80, "onnx_int8": 0.80, "tflite_int8": 0.79, "tflite_int8_full": 0.79}  # 84 % kept


def test_cpu_gets_the_teacher_quantized_alone_only_when_no_student_file_meets_the_target() -> None:
    good = _choose("cpu", {**GOOD, "teacher_int8": 0.95}, sizes=T_SIZES, latency=T_LATENCY)
    assert good["chosen"] == "onnx_fp32"  # the student meets it and is faster
    low = _choose("cpu", {**LOW, "teacher_int8": 0.949}, sizes=T_SIZES, latency=T_LATENCY)
    assert low["chosen"] == "teacher_int8"
    assert "no student artifact does" in low["why"] and "no distillation" in low["why"]
    # The student's problem (verify's quality check) is not held against the teacher's own file.
    assert (
        _choose("cpu", {**LOW, "teacher_int8": 0.949}, sizes=T_SIZES, latency=T_LATENCY, problem="one class")["chosen"]
        == "teacher_int8"
    )


def test_the_teacher_quantized_alone_is_never_given_to_phones_mcus_or_over_a_budget() -> None:
    quality = {**LOW, "teacher_int8": 0.949}
    for device_class in ("mobile", "mcu"):
        c = _choose(device_class, quality, sizes=T_SIZES, latency=T_LATENCY)
        assert c["chosen"] != "teacher_int8", device_class
    over = {"teacher_int8": ["MACs: 3,000,000 > 1,000,000"]}
    c = _choose("cpu", quality, sizes=T_SIZES, latency=T_LATENCY, over_budget=over)
    assert c["chosen"] != "teacher_int8"
    assert next(r for r in c["candidates"] if r["kind"] == "teacher_int8")["fits"] is False
    assert _choose("cpu", quality, sizes=T_SIZES, latency=T_LATENCY, max_model_bytes=50_000)["chosen"] != "teacher_int8"
