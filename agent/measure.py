"""One artifact on this device: download and verify, check its outputs against the host's on the probe
inputs, time it, post the measurement and read back the service's verdict."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.agent import __version__
from edgedistill.agent.api import DeviceApi
from edgedistill.agent.errors import AgentError, RuntimeUnavailable
from edgedistill.agent.facts import device_facts
from edgedistill.agent.probe import Agreement, compare, is_classification, parse_probe, read_arrays
from edgedistill.agent.probe_multi import is_multi, parse_multi
from edgedistill.contracts.errors import ArtifactRunError
from edgedistill.contracts.errors import RuntimeUnavailable as NoRuntime
from edgedistill.runtimes import open_model
from edgedistill.runtimes.timing import latency_stats, peak_rss_bytes, time_calls


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 100
    warmup: int = 10
    threads: int | None = None  # None: the profile's


@dataclass
class Result:
    artifact_id: str
    kind: str
    measurement: dict[str, Any]
    verdict: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.verdict is not None and self.verdict.get("ok") is False

    def summary(self) -> str:
        m = self.measurement
        agree = "n/a" if m.get("agreement") is None else f"{m['agreement']:.4f}"
        line = (
            f"{self.kind} {self.artifact_id}: p50 {m['p50_ms']:.4f} ms, p99 {m['p99_ms']:.4f} ms "
            f"({m['runtime']} {m['runtime_version']}, {m['threads']} threads, {m['count']} runs); "
            f"top-1 agreement {agree}, max |diff| "
            + ("n/a" if m.get("max_abs_diff") is None else f"{m['max_abs_diff']:.6g}")
        )
        if self.verdict is None:
            return line + "; verdict unknown"
        if self.verdict.get("ok") is False:
            return line + "; FAILING on this device: " + "; ".join(self.verdict.get("reasons") or [])
        return line + "; ok"


def measure_files(
    model_path: Path, probe_path: Path, artifact: dict[str, Any], *, threads: int, options: BenchOptions
) -> tuple[dict[str, Any], Agreement | None]:
    """Run and time verified local files; returns the measurement body (without posting it) and, for a
    single-input probe, its Agreement (a several-output probe's are in the body's extra.outputs).
    The runtime wrappers' errors become the agent's own (exit codes, one-line messages)."""
    try:
        return _measure_files(model_path, probe_path, artifact, threads=threads, options=options)
    except NoRuntime as exc:
        raise RuntimeUnavailable(str(exc)) from exc
    except ArtifactRunError as exc:
        raise AgentError(str(exc)) from exc


def _measure_files(
    model_path: Path, probe_path: Path, artifact: dict[str, Any], *, threads: int, options: BenchOptions
) -> tuple[dict[str, Any], Agreement | None]:
    kind = str(artifact["kind"])
    arrays = read_arrays(probe_path)
    if is_multi(arrays):  # a teacher with several inputs/outputs: by name, output by output
        from edgedistill.agent.measure_multi import measure_multi

        return measure_multi(
            model_path, parse_multi(arrays, probe_path.name), artifact, threads=threads, options=options
        ), None
    probe = parse_probe(arrays, probe_path)
    # The artifact's metadata tells the wrapper its layout and, for a full-int8 tabular model, the
    # standardisation its int8 input expects (applied inside the wrapper, before quantising).
    model = open_model(model_path, kind, threads=threads, metadata=artifact.get("metadata") or {})
    reference_name, reference = probe.reference_for(kind)
    x = probe.x
    outputs = model.predict(x)
    agreement = compare(outputs, reference, classification=is_classification(artifact.get("task"), reference, probe.y))
    samples = time_calls(model.timed_call(x[:1]), warmup=options.warmup, runs=options.runs)
    stats = latency_stats(samples)
    extra: dict[str, Any] = {
        "device": device_facts(model.runtime_name, model.runtime_version),
        "agent_version": __version__,
        "artifact_sha256": artifact["sha256"],
        "reference": f"out_{reference_name}",
        "probe_samples": agreement.samples,
        "reference_max_abs": agreement.reference_max_abs,
        "mean_abs_diff": agreement.mean_abs_diff,
        "non_finite_outputs": agreement.non_finite,
        "input_quantization": model.input_quantization.as_dict() if model.input_quantization else None,
        "layout": model.layout or "as data",
        "warmup": options.warmup,
        "batch": 1,
        "timed": "one runtime call on an input already in the model's layout and dtype",
    }
    body: dict[str, Any] = {
        "source": "device",
        "runtime": model.runtime_name,
        "runtime_version": model.runtime_version,
        "threads": threads,
        "count": len(samples),
        **stats,
        "agreement": agreement.agreement,
        "max_abs_diff": agreement.max_abs_diff,
        "peak_rss_bytes": peak_rss_bytes(),
        "estimated": False,
        "extra": extra,
    }
    return body, agreement


def measure_artifact(api: DeviceApi, artifact: dict[str, Any], *, threads: int, options: BenchOptions) -> Result:
    probe_id = artifact.get("probe_artifact_id")
    if not probe_id:
        raise AgentError(f"the job of artifact {artifact['id']} has no probe file: nothing to check outputs against")
    with tempfile.TemporaryDirectory(prefix="edgedistill-agent-") as tmp:
        work = Path(tmp)
        # Both files are verified before anything runs: a mismatch raises IntegrityError here.
        model_path = api.download(artifact, work)
        probe_path = api.download(api.artifact(str(probe_id)), work, role="probe")
        body, _ = measure_files(model_path, probe_path, artifact, threads=threads, options=options)
    posted = api.post_measurement(str(artifact["id"]), body)
    result = Result(artifact_id=str(artifact["id"]), kind=str(artifact["kind"]), measurement=posted)
    statuses = api.artifact(str(artifact["id"])).get("device_status") or []
    result.verdict = next((s for s in statuses if s.get("measurement_id") == posted.get("id")), None)
    return result
