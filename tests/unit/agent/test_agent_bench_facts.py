from __future__ import annotations

import time

import pytest

from edgedistill.agent.facts import device_facts, parse_cpuinfo
from edgedistill.runtimes.timing import latency_stats, peak_rss_bytes, time_calls

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512bw avx512_vnni
"""
ARM = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes crc32 asimddp
CPU part\t: 0xd0b
Hardware\t: BCM2712
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_time_calls_counts_warmup_and_runs() -> None:
    calls: list[int] = []
    samples = time_calls(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and len(samples) == 7 and all(s >= 0 for s in samples)
    with pytest.raises(ValueError):
        time_calls(lambda: None, warmup=0, runs=0)


def test_latency_stats() -> None:
    s = latency_stats([1_000_000 * i for i in range(1, 101)])  # 1..100 ms
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5) and s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]


def test_sleep_is_timed() -> None:
    s = latency_stats(time_calls(lambda: time.sleep(0.002), warmup=0, runs=3))
    assert s["p50_ms"] >= 2.0


def test_peak_rss_is_bytes() -> None:
    rss = peak_rss_bytes()
    assert rss is not None and rss > 10 * 1024 * 1024  # a Python process with numpy: tens of MB


def test_parse_cpuinfo() -> None:
    x86 = parse_cpuinfo(X86)
    assert x86["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert x86["int8_features"] == ["avx2", "avx512_vnni", "avx512bw"]
    arm = parse_cpuinfo(ARM)
    assert arm["cpu_model"] == "BCM2712" and arm["cpu_part"] == "0xd0b" and arm["int8_features"] == ["asimddp"]


def test_device_facts() -> None:
    f = device_facts("onnxruntime", "1.31.1")
    assert f["cores"] and f["os"] and f["cpu_model"] and f["runtime"] == "onnxruntime"
