"""What the agent tells the service about the device it runs on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edgedistill.agent import __version__

# CPU features that decide whether int8 is fast: x86 VNNI, ARM dot product / i8mm.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "i8mm", "sve")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model and int8-relevant flags from /proc/cpuinfo text (x86 'model name', ARM 'Hardware' /
    'CPU part' / 'Model')."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif value and key not in fields:
            fields[key] = value
    model = fields.get("model name") or fields.get("hardware") or fields.get("model") or fields.get("processor")
    if model is not None and model.isdigit():  # ARM's "processor : 0" is an index, not a name
        model = None
    out: dict[str, Any] = {"cpu_model": model}
    if "cpu part" in fields:
        out["cpu_part"] = fields["cpu part"]
    out["int8_features"] = sorted(f for f in INT8_FLAGS if f in flags)
    return out


def device_facts(runtime: str | None = None, runtime_version: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            info = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            info = {}
    facts: dict[str, Any] = {
        "cpu_model": info.get("cpu_model") or platform.processor() or platform.machine() or "unknown",
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "agent_version": __version__,
    }
    if hasattr(os, "sched_getaffinity"):
        facts["usable_cores"] = len(os.sched_getaffinity(0))
    for key in ("cpu_part", "int8_features"):
        if key in info:
            facts[key] = info[key]
    if runtime is not None:
        facts["runtime"] = runtime
        facts["runtime_version"] = runtime_version
    return facts
