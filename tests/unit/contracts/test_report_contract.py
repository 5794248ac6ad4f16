"""The typed report (edgedistill.contracts.report): real pipeline reports round-trip exactly, drift in
an engine-built section fails, and stored reports from before schema_version still read."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edgedistill.contracts.report import SCHEMA_VERSION, EstimatedTiming, HostTiming, Report, read_report

HERE = Path(__file__).parent
# Written by `python -m edgedistill.workers.cli` (3 epochs): the digits teacher for mcu-cortex-m4 and a
# two-input, three-output TorchScript teacher (tests/unit/workers/steps/distill/test_multi.py) for cpu-x86.
REAL = ("report_mcu_digits.json", "report_multi_io.json")
# Stored by an older engine (no schema_version-era sections: quality, outputs, signature, sizing, ...).
OLD = ("report_cpu.json", "report_mcu.json")
WEB = HERE.parent / "service" / "web"


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


@pytest.mark.parametrize("name", REAL)
def test_a_real_report_round_trips_exactly(name: str, caplog: pytest.LogCaptureFixture) -> None:
    doc = _load(HERE / name)
    report = Report.model_validate(doc)  # strict: no pruning
    assert report.as_json() == doc
    assert json.loads(report.model_dump_json(exclude_unset=True)) == doc
    with caplog.at_level(logging.WARNING):
        assert read_report(doc).as_json() == doc
    assert not caplog.records  # nothing dropped


def test_the_sections_are_typed() -> None:
    mcu = Report.model_validate(_load(HERE / "report_mcu_digits.json"))
    assert mcu.schema_version == SCHEMA_VERSION
    assert mcu.headline.primary_artifact == "tflite_int8_full" and mcu.quality is not None
    assert mcu.profile is not None and mcu.profile.device_class == "mcu"
    assert mcu.device_artifact is not None and mcu.device_artifact.candidates[0].kind == "tflite_int8_full"
    assert isinstance(mcu.latency.estimate(), EstimatedTiming)
    assert set(mcu.latency.host()) == {"onnx_fp32", "onnx_int8", "tflite_int8_full", "teacher"}
    assert all(isinstance(t, HostTiming) for t in mcu.latency.host().values())
    assert mcu.budget.ram is not None and mcu.budget.ram.measured is True
    assert mcu.budget.ops["tflite_int8_full"].not_allowed == []
    assert mcu.sizing is not None and mcu.sizing.tried[0].chosen is True
    assert mcu.metrics["tflm"].figure("max_abs_diff_vs_tflite_int8_full") is not None  # an extra, kept

    multi = Report.model_validate(_load(HERE / "report_multi_io.json"))
    assert [o.name for o in multi.outputs] == ["label", "probabilities", "wake"]
    assert multi.headline.quality_metric == "headline"
    wake = multi.metrics["onnx_int8"].outputs["wake"]  # type: ignore[index]
    assert wake.kind == "sigmoid" and wake.headline_name == "balanced agreement"
    assert (wake.model_extra or {})["auc"] is not None  # a kind's own metric, kept as an extra
    assert multi.signature is not None and [o.kind for o in multi.signature.outputs] == [
        "class_index",
        "probabilities",
        "sigmoid",
    ]


@pytest.mark.parametrize(
    "where",
    [("headline",), ("quality",), ("device_artifact",), ("latency",), ("sizes",), ("budget", "flash")],
)
def test_a_key_the_contract_lacks_fails_in_an_engine_built_section(where: tuple[str, ...]) -> None:
    doc = _load(HERE / "report_mcu_digits.json")
    node = doc
    for key in where:
        node = node[key]
    node["new_figure"] = 1.0
    with pytest.raises(ValidationError, match="new_figure"):
        Report.model_validate(doc)


def test_a_wrong_type_fails() -> None:
    doc = _load(HERE / "report_mcu_digits.json")
    doc["quality"]["met"] = "maybe"
    with pytest.raises(ValidationError):
        Report.model_validate(doc)


@pytest.mark.parametrize("name", OLD)
def test_an_old_report_without_schema_version_reads_as_version_1(name: str) -> None:
    doc = _load(WEB / name)
    doc.pop("schema_version", None)
    report = read_report(doc)
    assert report.schema_version == 1
    assert report.quality is None and report.outputs == [] and report.sizing is None  # not in old reports
    assert report.headline.primary_artifact == doc["headline"]["primary_artifact"]
    assert report.as_json() == {"schema_version": 1, **doc}


def test_what_does_not_fit_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    doc = _load(HERE / "report_mcu_digits.json")
    bad = copy.deepcopy(doc)
    bad["accuracy"] = 0.9  # a top-level key no version has
    bad["headline"]["latency_x"] = "fast"  # a wrong type: the value goes, the section stays
    bad["latency"]["measurements"][0].pop("p50_ms")  # a host timing without its figure: the item goes
    bad["quality"].pop("target")  # a required key missing: the section goes (null)
    with caplog.at_level(logging.WARNING, logger="edgedistill.contracts.report"):
        report = read_report(bad)
    assert report.headline.latency_x is None and report.headline.primary_artifact == "tflite_int8_full"
    assert len(report.latency.measurements) == len(doc["latency"]["measurements"]) - 1
    assert report.quality is None
    assert report.metrics.keys() == doc["metrics"].keys()
    logged = caplog.records[-1].getMessage()
    assert "accuracy" in logged and "headline.latency_x" in logged and "quality" in logged


def test_not_a_report_at_all_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a report"):
        read_report([1, 2])  # type: ignore[arg-type]
    # a mapping whose sections all fail is an empty report, not a server error
    assert read_report({"headline": [], "metrics": 3}).as_json() == {"schema_version": 1}
