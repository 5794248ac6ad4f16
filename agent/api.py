"""The few service endpoints a device token may use, over httpx."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import httpx

from edgedistill.agent import __version__
from edgedistill.agent.errors import ApiError, IntegrityError

API_PREFIX = "/api/v1"
_CHUNK = 1 << 16
# Artifact ids go into request paths: anything else than the service's own id alphabet is refused.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EXTENSIONS = (("onnx", ".onnx"), ("tflite", ".tflite"), ("probe", ".npz"))


def checked_id(value: object) -> str:
    text = str(value)
    if not _ID_RE.match(text):
        raise IntegrityError(f"the service sent an invalid artifact id {text[:80]!r}; nothing was downloaded")
    return text


def local_name(kind: object, role: str) -> str:
    """The file name a download gets here: made from its role and kind, never from what the server sends
    (an id or file name such as ../../.bashrc must not choose where the agent writes)."""
    ext = next((e for prefix, e in _EXTENSIONS if str(kind).startswith(prefix)), ".bin")
    return f"{role}{ext}"


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else str(detail)[:500]


class DeviceApi:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.http = httpx.Client(
            base_url=url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"edgedistill-agent/{__version__}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DeviceApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the service at {self.http.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            raise ApiError(f"{method} {path}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code)
        return resp

    def me(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", "/devices/me").json()
        return body

    def artifacts(
        self, *, pending: bool = False, kinds: list[str] | None = None, artifact_id: str | None = None
    ) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("pending", "true" if pending else "false")]
        params += [("kind", k) for k in kinds or []]
        if artifact_id is not None:
            params.append(("artifact_id", artifact_id))
        body: list[dict[str, Any]] = self._request("GET", "/devices/me/artifacts", params=params).json()
        return body

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", f"/artifacts/{checked_id(artifact_id)}").json()
        return body

    def download(self, artifact: dict[str, Any], dest_dir: Path, *, role: str = "model") -> Path:
        """Stream the artifact to dest_dir/<role><ext> and check its sha256 against the one the service
        lists. On a mismatch the file is deleted and IntegrityError raised: the caller runs nothing."""
        artifact_id = checked_id(artifact["id"])
        expected = str(artifact["sha256"]).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise IntegrityError(f"the service lists no valid sha256 for artifact {artifact_id}; nothing was run")
        path = dest_dir / local_name(artifact.get("kind"), role)
        h = hashlib.sha256()
        try:
            with self.http.stream("GET", f"/artifacts/{artifact_id}/download") as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(
                        f"download of artifact {artifact['id']}: HTTP {resp.status_code}: {_detail(resp)}",
                        resp.status_code,
                    )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "wb") as f:
                    for chunk in resp.iter_bytes(_CHUNK):
                        h.update(chunk)
                        f.write(chunk)
        except httpx.HTTPError as exc:
            path.unlink(missing_ok=True)
            raise ApiError(f"download of artifact {artifact['id']} failed: {exc}") from exc
        actual = h.hexdigest()
        if actual != expected:
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"refusing artifact {artifact['id']} ({artifact.get('kind')}): the downloaded bytes have sha256 "
                f"{actual}, the service lists {expected}. Nothing was run or posted."
            )
        return path

    def post_measurement(self, artifact_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/artifacts/{checked_id(artifact_id)}/measurements"
        out: dict[str, Any] = self._request("POST", path, json=body).json()
        return out
