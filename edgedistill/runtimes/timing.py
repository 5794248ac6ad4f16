"""Latency of one call: warm-up runs, then N timed runs; percentiles, mean, std and the process's peak RSS.
The worker's benchmark step and the device agent time with this one module, so their figures compare."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], *, warmup: int, runs: int) -> list[int]:
    """Nanoseconds of each of `runs` calls, after `warmup` untimed ones."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for _ in range(warmup):
        fn()
    out: list[int] = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def latency_stats(samples_ns: list[int]) -> dict[str, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
    }


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size (getrusage): kilobytes on Linux, bytes on macOS."""
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024
