"""Form fields -> the engine's pydantic models, and their validation errors -> messages per form field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edgedistill.contracts import spec
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.contracts.spec import JobOptions

_METHOD_HELP: dict[str, str] = {
    "kd": "Knowledge distillation (Hinton et al. 2015): the teacher's softened outputs, plus labels when present",
    "labels_only": "Labels only, no teacher: a baseline to compare against",
    "fitnet": "FitNets (Romero et al. 2015): also match intermediate features",
    "at": "Attention transfer (Zagoruyko & Komodakis 2017): match spatial attention maps",
    "rkd": "Relational KD (Park et al. 2019): match distances and angles between samples",
    "sp": "Similarity-preserving KD (Tung & Mori 2019): match pairwise similarities within a batch",
    "data_free": "Data-free: inputs synthesized against the teacher; no transfer set needed",
    "qat_kd": "KD with quantization-aware fine-tuning for int8",
    "lifelong": "Continue from an earlier student without forgetting",
    "nas": "Search the student's architecture within the device's budgets",
    "transformer": "Token-sequence teachers: a small transformer student with MiniLM attention and TinyBERT "
    "hidden-state transfer",
    "auto": "Let edgedistill choose",
}
# The methods the engine's option schema accepts (workers.pipeline.spec, pure data like JobOptions).
METHODS: dict[str, str] = {m: _METHOD_HELP.get(m, "") for m in getattr(spec, "METHODS", ("kd",))}
# Methods that need no transfer set.
DATA_FREE_METHODS = frozenset({"data_free"})

# options.student.family: value -> what the form says of it
FAMILIES: dict[str, str] = {
    "auto": "auto: a student designed for the device (or a transformer for token-sequence teachers)",
    "best": "best: train the designed and the teacher-derived student, keep the one that best meets the objective",
    "derived": "derived: the teacher itself, pruned to fit (fails when it cannot be converted)",
    "prefer_derived": "prefer_derived: derived, else the designed student",
    "transformer": "transformer: a small transformer for token-sequence teachers",
}

OPTION_FIELDS: dict[str, tuple[str, ...]] = {
    # form field -> JobOptions location
    "epochs": ("epochs",),
    "accuracy_budget_pp": ("accuracy_budget_pp",),
    "quality_target": ("quality_target",),
    "method": ("method",),
    "temperature": ("temperature",),
    "alpha": ("alpha",),
    "family": ("student", "family"),
    "student_width": ("student", "width"),
    "student_depth": ("student", "depth"),
    "task": ("task",),
    "batch_size": ("batch_size",),
    "learning_rate": ("learning_rate",),
    "patience": ("patience",),
    "seed": ("seed",),
    "calibration": ("calibration",),
    "calibration_samples": ("calibration_samples",),
    "benchmark_runs": ("benchmark_runs",),
    "device": ("device",),
}
ADVANCED_FIELDS = (
    "task",
    "batch_size",
    "learning_rate",
    "patience",
    "seed",
    "calibration",
    "calibration_samples",
    "benchmark_runs",
    "device",
    "qat",
)

PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "description": ("description",),
    "device_class": ("class",),
    "targets": ("targets",),
    "int8_scheme": ("int8_scheme",),
    "max_model_bytes": ("budgets", "max_model_bytes"),
    "max_ram_bytes": ("budgets", "max_ram_bytes"),
    "max_macs": ("budgets", "max_macs"),
    "latency_target_ms": ("budgets", "latency_target_ms"),
    "threads": ("threads",),
    "clock_hz": ("clock_hz",),
    "cycles_per_mac": ("cycles_per_mac",),
    "op_allowlist": ("op_allowlist",),
}
BYTE_FIELDS = frozenset({"max_model_bytes", "max_ram_bytes"})
# Words in the profile schema's cross-field messages -> the form field the message belongs to.
_MESSAGE_FIELDS = (
    ("budgets.max_model_bytes", "max_model_bytes"),
    ("budgets.max_ram_bytes", "max_ram_bytes"),
    ("op_allowlist", "op_allowlist"),
    ("int8_scheme", "int8_scheme"),
    ("tflite_int8_full", "targets"),
    ("c_array", "targets"),
)
# Messages for errors whose pydantic wording is written for programmers.
_FRIENDLY: dict[tuple[str, str], str] = {
    ("name", "string_pattern_mismatch"): (
        "Use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
    ),
}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass
class FormResult:
    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_bytes(text: str) -> int:
    """'262144', '256 KB', '256KiB', '1.5 MB' -> bytes. K/M/G are 1024-based, as in MCU datasheets."""
    m = _BYTES_RE.match(text.replace(",", "").replace("_", ""))
    if not m:
        raise ValueError("enter a number of bytes, e.g. 262144 or 256 KB")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _UNITS[unit])


def _clean(msg: str) -> str:
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg[:1].upper() + msg[1:] if msg else msg


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def errors_by_field(exc: ValidationError, mapping: Mapping[str, tuple[str, ...]], default: str) -> dict[str, str]:
    """pydantic errors -> {form field: message}; cross-field errors go to the field their message names."""
    by_loc = {loc: name for name, loc in mapping.items()}
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
        msg = _clean(str(err["msg"]))
        name = None
        while loc and name is None:
            name = by_loc.get(loc)
            loc = loc[:-1]
        if name is None:
            name = next((f for word, f in _MESSAGE_FIELDS if word in msg), default)
        out.setdefault(name, _FRIENDLY.get((name, str(err.get("type"))), msg))
    return out


def job_options(form: Mapping[str, str]) -> FormResult:
    """The options part of the New job form -> JobOptions fields (as a dict), with per-field errors."""
    raw: dict[str, Any] = {}
    values = {name: (form.get(name) or "").strip() for name in (*OPTION_FIELDS, "qat")}
    values["student_mode"] = form.get("student_mode") or "auto"
    errors: dict[str, str] = {}
    for name, loc in OPTION_FIELDS.items():
        if name.startswith("student_") and values["student_mode"] != "explicit":
            continue
        if values[name] != "":
            _set(raw, loc, values[name])
    if values["student_mode"] == "explicit":
        for name in ("student_width", "student_depth"):
            if not values[name]:
                errors[name] = "Enter a number, or choose an automatic student size"
    if values["family"] and values["family"] not in FAMILIES:
        errors["family"] = f"Unknown student family; choose one of: {', '.join(FAMILIES)}"
    if values["method"] and values["method"] not in METHODS:
        errors["method"] = f"Unknown method; choose one of: {', '.join(METHODS)}"
    if "qat" in JobOptions.model_fields and values["qat"]:
        _set(raw, ("qat",), values["qat"])
    try:
        opts = JobOptions.model_validate(raw)
    except ValidationError as exc:
        for name, msg in errors_by_field(exc, OPTION_FIELDS, "epochs").items():
            errors.setdefault(name, msg)
        return FormResult(values, errors)
    result = FormResult(values, errors)
    result.values["options"] = opts
    return result


def device_profile(form: Mapping[str, Any], targets: list[str]) -> FormResult:
    """The custom-profile form -> a DeviceProfile, with per-field errors."""
    values: dict[str, Any] = {name: str(form.get(name) or "").strip() for name in PROFILE_FIELDS}
    values["targets"] = targets
    errors: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for name, loc in PROFILE_FIELDS.items():
        value = values[name]
        if name == "targets":
            _set(raw, loc, value)
            continue
        if name == "op_allowlist":
            ops = [op.strip().upper() for op in re.split(r"[\s,]+", value) if op.strip()]
            if ops:
                _set(raw, loc, ops)
            continue
        if value == "":
            continue
        if name in BYTE_FIELDS:
            try:
                value = parse_bytes(value)
            except ValueError as exc:
                errors[name] = _clean(str(exc))
                continue
        _set(raw, loc, value)
    raw.setdefault("budgets", {})
    if not values["max_model_bytes"] and "max_model_bytes" not in errors:
        errors["max_model_bytes"] = "Enter the flash / model size budget, e.g. 1 MB"
    try:
        profile = DeviceProfile.model_validate(raw)
    except ValidationError as exc:
        for name, msg in errors_by_field(exc, PROFILE_FIELDS, "name").items():
            errors.setdefault(name, msg)
        return FormResult(values, errors)
    result = FormResult(values, errors)
    if result.ok:
        result.values["profile"] = profile
    return result
