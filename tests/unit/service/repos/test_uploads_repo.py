"""Models, datasets, custom profiles and the storage-reference check."""

from __future__ import annotations

import pytest

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.service.repos import datasets, jobs, models, profiles
from edgedistill.service.repos.errors import Conflict, NotFound
from edgedistill.service.repos.storage_refs import storage_key_in_use


def test_models_are_scoped_and_soft_deleted(session, factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant(), factory.tenant()
    m = factory.model(a)
    assert models.get_model(session, tenant_id=a.id, model_id=m.id) is not None
    assert models.get_model(session, tenant_id=b.id, model_id=m.id) is None
    with pytest.raises(NotFound):
        models.delete_model(session, tenant_id=b.id, model_id=m.id)
    assert storage_key_in_use(session, key=m.storage_key)
    models.delete_model(session, tenant_id=a.id, model_id=m.id)
    assert models.get_model(session, tenant_id=a.id, model_id=m.id) is None
    assert models.get_model_any_tenant(session, model_id=m.id) is not None  # finished jobs still point at it
    assert models.list_models(session, tenant_id=a.id).items == []
    assert not storage_key_in_use(session, key=m.storage_key)


def test_model_with_an_active_job_cannot_be_deleted(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    m = factory.model(t)
    job = factory.job(t, m)
    with pytest.raises(Conflict):
        models.delete_model(session, tenant_id=t.id, model_id=m.id)
    jobs.finish_job(session, job_id=job.id, status="cancelled")
    models.delete_model(session, tenant_id=t.id, model_id=m.id)


def test_shared_content_stays_in_use(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    one = factory.model(t, sha256="a" * 64)
    factory.model(t, sha256="a" * 64)  # the same bytes uploaded twice share one object
    models.delete_model(session, tenant_id=t.id, model_id=one.id)
    assert storage_key_in_use(session, key=one.storage_key)


def test_datasets_are_scoped(session, factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant(), factory.tenant()
    d = factory.dataset(a)
    assert datasets.get_dataset(session, tenant_id=a.id, dataset_id=d.id) is not None
    assert datasets.get_dataset(session, tenant_id=b.id, dataset_id=d.id) is None
    assert [x.id for x in datasets.list_datasets(session, tenant_id=a.id).items] == [d.id]
    assert datasets.list_datasets(session, tenant_id=b.id).items == []


def _custom(name: str = "my-board") -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "name": name,
            "class": "cpu",
            "targets": ["onnx_int8"],
            "int8_scheme": "qdq_per_channel",
            "budgets": {"max_model_bytes": 1_000_000},
        }
    )


def test_custom_profiles_resolve_per_tenant(session, factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant(), factory.tenant()
    profiles.create_profile(session, tenant_id=a.id, profile=_custom())
    got = profiles.resolve_profile(session, tenant_id=a.id, name="my-board")
    assert got is not None and got[0] == _custom() and got[1] is False
    assert profiles.resolve_profile(session, tenant_id=b.id, name="my-board") is None
    builtin_name = next(iter(builtin_profiles()))
    got = profiles.resolve_profile(session, tenant_id=b.id, name=builtin_name)
    assert got is not None and got[1] is True
    assert [r.name for r in profiles.list_custom_profiles(session, tenant_id=a.id)] == ["my-board"]


def test_custom_profile_names_must_be_new(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    profiles.create_profile(session, tenant_id=t.id, profile=_custom())
    with pytest.raises(Conflict, match="already exists"):
        profiles.create_profile(session, tenant_id=t.id, profile=_custom())
    with pytest.raises(Conflict, match="built-in"):
        profiles.create_profile(session, tenant_id=t.id, profile=_custom(next(iter(builtin_profiles()))))
