from __future__ import annotations

from service.repos import artifacts, measurements

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
