"""measure_files for the probe of a several-input / several-output job: feed each input by name,
compare each output with the host's, time batch 1. The measurement's agreement and max_abs_diff
(what the service's verdict reads) are the lowest agreement over the outputs and the max |diff| of
the output furthest from the host relative to its own scale; extra.outputs holds every output's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedistill.agent import __version__
from edgedistill.agent.facts import device_facts
from edgedistill.agent.probe_multi import MultiProbe, compare_outputs, headline
from edgedistill.runtimes import open_model
from edgedistill.runtimes.timing import latency_stats, peak_rss_bytes, time_calls


def measure_multi(
    model_path: Path, probe: MultiProbe, artifact: dict[str, Any], *, threads: int, options: Any
) -> dict[str, Any]:
    kind = str(artifact["kind"])
    metadata = artifact.get("metadata") or {}
    model = open_model(model_path, kind, threads=threads, metadata=metadata)
    reference_name, reference = probe.reference_for(kind)
    got = model.predict_all(probe.inputs)
    per = compare_outputs(got, reference, probe.output_kinds)
    agreement, worst = headline(per)
    samples = time_calls(model.timed_call_all(probe.inputs), warmup=options.warmup, runs=options.runs)
    extra: dict[str, Any] = {
        "device": device_facts(model.runtime_name, model.runtime_version),
        "agent_version": __version__,
        "artifact_sha256": artifact["sha256"],
        "reference": f"out_{reference_name}__<output>",
        "probe_samples": probe.samples,
        "reference_max_abs": worst.reference_max_abs if worst else None,
        "mean_abs_diff": worst.mean_abs_diff if worst else None,
        "non_finite_outputs": sum(p.non_finite for p in per),
        "worst_output": worst.name if worst else None,
        "outputs": {p.name: p.as_dict() for p in per},
        "inputs": list(probe.inputs),
        "input_quantization": model.io_quantization(),
        "layout": dict(getattr(model, "layouts", {})) or "as data",
        "warmup": options.warmup,
        "batch": 1,
        "timed": "one runtime call on inputs already in the model's layout and dtype",
    }
    return {
        "source": "device",
        "runtime": model.runtime_name,
        "runtime_version": model.runtime_version,
        "threads": threads,
        "count": len(samples),
        **latency_stats(samples),
        "agreement": agreement,
        "max_abs_diff": worst.max_abs_diff if worst else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "estimated": False,
        "extra": extra,
    }
