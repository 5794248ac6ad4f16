"""The artifact-kind registry is complete and consistent with what reads it: every model kind has a
runtime wrapper that exists, every exporter is a pipeline step, every extra is in pyproject.toml, the
profile targets and the device-artifact tables come out of it as they were specified."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

from edgedistill.contracts import artifact_kinds as ak
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.profiles.schema import TARGETS, DeviceProfile

ROOT = Path(__file__).resolve().parents[3]


def test_names_are_unique_and_lookups_work() -> None:
    assert len(ak.BY_NAME) == len(ak.KINDS)
    assert ak.get("onnx_int8").runtime == "onnxruntime"
    with pytest.raises(KeyError, match="unknown artifact kind"):
        ak.get("nope")


@pytest.mark.parametrize("kind", ak.model_kinds())
def test_every_model_kind_has_a_wrapper_that_exists(kind: str) -> None:
    found = ak.get(kind)
    module = importlib.import_module(f"edgedistill.runtimes.{found.wrapper}")
    assert callable(module.open_model) and callable(module.installed)
    assert found.runtime and found.package and found.measured_by and found.preference
    assert set(found.preference) <= set(ak.DEVICE_CLASSES) and found.runs_on <= set(ak.DEVICE_CLASSES)


def test_every_exporter_is_a_pipeline_step_and_every_extra_is_declared() -> None:
    from edgedistill.workers.pipeline.registry import STEPS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    from edgedistill.workers.pipeline.registry import step_class

    for kind in ak.KINDS:
        assert STEPS[kind.exporter] == kind.exporter_step, kind.name
        assert step_class(kind.exporter).name == kind.exporter  # the class the registry points at is that step
        assert kind.extra is None or kind.extra in extras, kind.name


def test_device_class_tables() -> None:
    # The teacher's own int8 file comes last everywhere and runs on CPUs only (an ONNX file).
    assert ak.by_preference("mcu") == ("tflite_int8_full", "tflite_int8", "onnx_int8", "onnx_fp32", "teacher_int8")
    assert ak.by_preference("mobile") == (
        "tflite_int8", "onnx_int8", "tflite_int8_full", "onnx_fp32", "executorch_int8", "executorch_fp32",
        "teacher_int8",
    )  # fmt: skip
    assert ak.by_preference("cpu") == (
        "onnx_int8", "tflite_int8", "onnx_fp32", "tflite_int8_full", "executorch_int8", "executorch_fp32",
        "teacher_int8",
    )  # fmt: skip
    assert ak.runnable_on("cpu")[-1] == "teacher_int8"
    assert ak.teacher_model_kinds() == ("teacher_int8",)
    assert "teacher_int8" not in ak.int8_kinds() and "teacher_int8" not in ak.student_model_kinds()
    assert ak.runnable_on("mcu") == ("tflite_int8_full",)
    assert ak.runnable_on("mobile") == ("tflite_int8", "tflite_int8_full", "executorch_int8", "executorch_fp32")
    assert ak.tflm_kind() == "tflite_int8_full"
    assert ak.measured_by("agent") == (
        "onnx_fp32", "onnx_int8", "tflite_int8", "tflite_int8_full", "executorch_int8", "executorch_fp32"
    )  # fmt: skip
    assert set(ak.measured_by("tflm")) == {"tflite_int8_full", "c_source", "c_header"}


def test_profile_targets_are_the_registrys() -> None:
    assert TARGETS == (
        "onnx_fp32", "onnx_int8", "tflite_int8", "tflite_int8_full", "executorch_int8", "executorch_fp32", "c_array"
    )  # fmt: skip
    for profile in builtin_profiles().values():
        assert set(profile.targets) <= set(TARGETS)
    base = builtin_profiles()["cpu-x86"].model_dump()
    with pytest.raises(ValueError, match="unknown target 'onnx_fp64'"):
        DeviceProfile.model_validate({**base, "targets": ["onnx_fp32", "onnx_fp64"]})
    enum = DeviceProfile.model_json_schema()["properties"]["targets"]["items"]["enum"]
    assert enum == list(TARGETS)  # the API schema still lists the targets
