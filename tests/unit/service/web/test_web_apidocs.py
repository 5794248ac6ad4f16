"""/docs and /redoc reference only assets this server serves (no CDN, no Google Fonts)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from edgedistill.service.main import create_app
from edgedistill.service.settings import Settings

URL_ATTR = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""")


def test_docs_pages_load_only_local_assets(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        for page in ("/docs", "/redoc"):
            resp = c.get(page)
            assert resp.status_code == 200, page
            refs = URL_ATTR.findall(resp.text)
            assert refs, f"{page} references no asset"
            assert not [r for r in refs if "//" in r], f"{page} points off this server: {refs}"
            for ref in refs:
                asset = c.get(ref)
                assert asset.status_code == 200, f"{page}: {ref} -> {asset.status_code}"
                assert len(asset.content) > 100, ref
        assert "oauth2" in c.get("/docs/oauth2-redirect").text
        # The docs pages are not API operations.
        assert not {p for p in c.get("/openapi.json").json()["paths"] if p.startswith(("/docs", "/redoc"))}


def test_vendored_assets_ship_their_licenses() -> None:
    root = Path(__file__).parents[4] / "service" / "web" / "static" / "apidocs"
    for lib in ("swagger-ui", "redoc"):
        assert (root / lib / "LICENSE").stat().st_size > 500
