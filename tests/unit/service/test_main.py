from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service import main as service_main
from edgedistill.service.main import create_app
from edgedistill.service.settings import Settings

ISSUE_ROUTES = {
    ("post", "/api/v1/models"),
    ("get", "/api/v1/models"),
    ("get", "/api/v1/models/{model_id}"),
    ("delete", "/api/v1/models/{model_id}"),
    ("post", "/api/v1/datasets"),
    ("get", "/api/v1/datasets"),
    ("get", "/api/v1/datasets/{dataset_id}"),
    ("get", "/api/v1/device-profiles"),
    ("post", "/api/v1/device-profiles"),
    ("get", "/api/v1/device-profiles/{name}"),
    ("post", "/api/v1/jobs"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{job_id}"),
    ("post", "/api/v1/jobs/{job_id}/cancel"),
    ("get", "/api/v1/jobs/{job_id}/events"),
    ("get", "/api/v1/jobs/{job_id}/artifacts"),
    ("get", "/api/v1/jobs/{job_id}/report"),
    ("get", "/api/v1/artifacts/{artifact_id}"),
    ("get", "/api/v1/artifacts/{artifact_id}/download"),
    ("get", "/api/v1/artifacts/{artifact_id}/measurements"),
    ("post", "/api/v1/artifacts/{artifact_id}/measurements"),
    ("get", "/api/v1/measurements"),
    ("get", "/api/v1/healthz"),
    ("get", "/api/v1/readyz"),
}


def test_no_app_is_built_at_import() -> None:
    assert not any(isinstance(v, FastAPI) for v in vars(service_main).values())


def test_openapi_documents_every_route(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        spec = c.get("/openapi.json").json()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented >= ISSUE_ROUTES
    upload = spec["paths"]["/api/v1/models"]["post"]["requestBody"]["content"]
    assert "file" in upload["multipart/form-data"]["schema"]["properties"]


def test_the_report_route_has_a_typed_schema(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        spec = c.get("/openapi.json").json()
    ok = spec["paths"]["/api/v1/jobs/{job_id}/report"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/JobReportOut"}
    schemas = spec["components"]["schemas"]
    out = schemas["JobReportOut"]
    assert out["required"] == ["schema_version", "devices"] and out["additionalProperties"] is False
    for section in ("headline", "quality", "device_artifact", "latency", "metrics", "budget", "sizing", "devices"):
        assert section in out["properties"], section
    assert "quality_kept_pct" in schemas["Headline"]["properties"]
    assert {"met", "target", "kept"} <= set(schemas["QualityVerdict"]["properties"])
    assert "outputs" in schemas["VariantMetrics"]["properties"]  # per-output figures of multi-output runs
    assert "failing" in schemas["DevicesSection"]["properties"]


def test_dashboard_is_mounted_when_its_package_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[FastAPI, Settings]] = []
    web = types.ModuleType("edgedistill.service.web")
    web.__spec__ = importlib.machinery.ModuleSpec("edgedistill.service.web", None)
    web.mount = lambda app, settings: calls.append((app, settings))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgedistill.service.web", web)
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings)
    assert calls == [(app, settings)]
