from __future__ import annotations

import pytest

from edgedistill.service.repos import artifacts, measurements

M = dict(
    device_name="host",
    runtime="onnxruntime",
    runtime_version="1.2",
    threads=1,
    count=100,
    p50_ms=1.0,
    p90_ms=1.5,
    p99_ms=2.0,
    mean_ms=1.1,
)


def test_upsert_by_job_and_kind_never_duplicates(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job = factory.job(t)
    first = factory.artifact(job, "onnx_int8", sha256="1" * 64)
    again = factory.artifact(job, "onnx_int8", sha256="2" * 64, size_bytes=42)
    assert again.id == first.id
    listed = artifacts.list_job_artifacts(session, tenant_id=t.id, job_id=job.id)
    assert len(listed) == 1 and listed[0].sha256 == "2" * 64 and listed[0].size_bytes == 42
    factory.artifact(job, "tflite_int8")
    assert len(artifacts.list_job_artifacts(session, tenant_id=t.id, job_id=job.id)) == 2


def test_artifacts_are_scoped(session, factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant(), factory.tenant()
    art = factory.artifact(factory.job(a))
    assert artifacts.get_artifact(session, tenant_id=a.id, artifact_id=art.id) is not None
    assert artifacts.get_artifact(session, tenant_id=b.id, artifact_id=art.id) is None
    assert artifacts.list_job_artifacts(session, tenant_id=b.id, job_id=art.job_id) == []


def test_measurements_filter(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job1, job2 = factory.job(t), factory.job(t)
    a1, a2 = factory.artifact(job1), factory.artifact(job2)
    host = measurements.create_measurement(session, artifact_id=a1.id, tenant_id=t.id, source="host", **M)
    dev = measurements.create_measurement(
        session, artifact_id=a2.id, tenant_id=t.id, source="device", **{**M, "device_name": "pi5"}, agreement=0.99
    )
    other = factory.tenant()
    measurements.create_measurement(
        session, artifact_id=factory.artifact(factory.job(other)).id, tenant_id=other.id, source="host", **M
    )

    def ids(**kw: object) -> set[str]:
        return {m.id for m in measurements.list_measurements(session, tenant_id=t.id, **kw).items}  # type: ignore[arg-type]

    assert ids() == {host.id, dev.id}
    assert ids(source="device") == {dev.id}
    assert ids(job_id=job1.id) == {host.id}
    assert ids(artifact_id=a2.id) == {dev.id}
    assert ids(device_name="pi5") == {dev.id}
    assert ids(runtime="tflite") == set()


def test_upsert_finds_the_tenant_from_the_job(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job = factory.job(t)
    art = artifacts.upsert_artifact(
        session,
        job_id=job.id,
        kind="c_array",
        filename="m.h",
        size_bytes=1,
        sha256="3" * 64,
        storage_key="33/" + "3" * 64,
    )
    assert art.tenant_id == t.id


def test_replace_host_measurements_is_idempotent(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job = factory.job(t)
    art = factory.artifact(job, "onnx_int8")
    device_row = measurements.create_measurement(session, artifact_id=art.id, tenant_id=t.id, source="device", **M)
    bench = {k: v for k, v in M.items() if k != "device_name"}
    rows = [{**bench, "artifact_id": art.id, "artifact_kind": "onnx_int8", "source": "host", "std_ms": 0.1}]
    for _ in range(2):  # a redelivered job records its benchmark again
        measurements.replace_host_measurements(session, job_id=job.id, measurements=rows)
    listed = measurements.list_measurements(session, tenant_id=t.id, artifact_id=art.id).items
    host = [m for m in listed if m.source == "host"]
    assert len(host) == 1 and host[0].device_name == "host" and host[0].std_ms == 0.1
    assert host[0].extra == {"artifact_kind": "onnx_int8"}
    assert device_row.id in {m.id for m in listed}
    other_job = factory.job(t)
    with pytest.raises(ValueError):
        measurements.replace_host_measurements(session, job_id=other_job.id, measurements=rows)
