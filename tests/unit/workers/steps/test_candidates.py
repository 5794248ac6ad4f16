"""The report's candidate table from measured figures (no models): one row per model, the budgets
each breaks, the device artifact marked, and a sentence that says what the loser would have cost."""

from __future__ import annotations

from typing import Any

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.report import Candidates
from edgedistill.workers.steps.candidates import candidates_section, teacher_int8_over_budget
from edgedistill.workers.steps.device_artifact import choose_device_artifact

TEACHER = {"format": "onnx", "file_bytes": 880_000, "params": 220_000, "macs": 3_000_000, "runtime": "onnxruntime"}
ARCH = {"family": "ds_cnn2d", "width": 32, "depth": 3, "params": 17_800, "macs": 2_030_000}


def _t(kind: str, ms: float) -> dict[str, Any]:
    return {"artifact_kind": kind, "source": "host", "runtime": "onnxruntime", "threads": 1, "p50_ms": ms}


def _section(profile: str, quality: dict[str, float], notes: dict[str, Any] | None = None) -> dict[str, Any]:
    prof = builtin_profiles()[profile]
    sizes = {"onnx_int8": 40_000, "tflite_int8": 34_000, "tflite_int8_full": 34_100, "teacher_int8": 238_000}
    latency = [_t("teacher", 0.29), _t("onnx_int8", 0.05), _t("tflite_int8", 0.04), _t("teacher_int8", 0.36)]
    if "teacher_int8" not in quality:
        sizes.pop("teacher_int8")
    args: dict[str, Any] = dict(
        device_class=prof.device_class, quality=quality, metric="accuracy", teacher_quality=0.923, target=0.97,
        accuracy_budget_pp=0.5, max_model_bytes=prof.budgets.max_model_bytes, latency=latency,
    )  # fmt: skip
    choice = choose_device_artifact(
        sizes=sizes, over_budget=teacher_int8_over_budget(TEACHER["macs"], prof.budgets), **args
    )
    student = choose_device_artifact(sizes={k: v for k, v in sizes.items() if k != "teacher_int8"}, **args)
    section = candidates_section(
        device_class=prof.device_class, budgets=prof.budgets, choice=choice, student_choice=student,
        metric="accuracy", teacher_quality=0.923, target=0.97, teacher=TEACHER, student_arch=ARCH, sizes=sizes,
        quality=quality, latency=latency, problem=None, notes=notes or {},
    )  # fmt: skip
    Candidates.model_validate(section)  # the report's contract
    return section


def test_cpu_student_below_target_loses_to_the_teacher_quantized_alone() -> None:
    q = {"onnx_int8": 0.882, "tflite_int8": 0.881, "tflite_int8_full": 0.881, "teacher_int8": 0.921}
    s = _section("cpu-x86", q)
    rows = {r["name"]: r for r in s["rows"]}
    assert list(rows) == ["teacher", "teacher_int8", "student"]
    assert s["chosen"] == "teacher_int8" and rows["teacher_int8"]["chosen"] and not rows["student"]["chosen"]
    assert rows["teacher_int8"]["meets_target"] and rows["student"]["meets_target"] is False
    assert rows["student"]["artifact_kind"] == "tflite_int8"  # the student's own best file is still shown
    # 238,000 / 34,000 = 7.0x; 0.36 / 0.04 = 9.0x; 88.1 - 92.1 = -4.00 pp
    assert "7.0x smaller, 9.0x faster on the host, -4.00 pp quality (misses the quality target)" in s["why"]


def test_mcu_keeps_the_student_and_says_the_teacher_file_cannot_run_there() -> None:
    q = {"onnx_int8": 0.90, "tflite_int8": 0.90, "tflite_int8_full": 0.905, "teacher_int8": 0.921}
    s = _section("mcu-cortex-m4", q)
    rows = {r["name"]: r for r in s["rows"]}
    assert s["chosen"] == "student" and rows["student"]["artifact_kind"] == "tflite_int8_full"
    assert rows["teacher_int8"]["runs_on_device"] is False and "family derived" in rows["teacher_int8"]["note"]
    assert "smallest" in s["objective"]
    assert "does not run on this device class" in s["why"]


def test_a_teacher_without_an_int8_file_says_why() -> None:
    q = {"onnx_int8": 0.90, "tflite_int8": 0.90}
    s = _section("cpu-x86", q, notes={"teacher_int8": {"reason": "a tflite teacher: quantizing it needs ..."}})
    row = next(r for r in s["rows"] if r["name"] == "teacher_int8")
    assert row["artifact_kind"] is None and row["note"].startswith("not evaluated: a tflite teacher")


def test_budgets_the_teacher_breaks_are_named() -> None:
    prof = builtin_profiles()["mcu-cortex-m4"]
    over = teacher_int8_over_budget(10 * (prof.budgets.max_macs or 1), prof.budgets)
    assert over["teacher_int8"][0].startswith("MACs:")
    assert teacher_int8_over_budget(None, prof.budgets) == {}
