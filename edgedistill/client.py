"""Python client for the edgedistill REST API (httpx). Light: no ML imports.

job = Client(url, api_key).submit("teacher.onnx", data="d.npz", profile="mobile-arm64")
job.wait().download("out/")
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ID_PATTERN = re.compile(r"[0-9a-f]{32}")  # service.db.base.new_id: uuid4().hex
# Artifacts that `edgedistill compress` writes without a `<file>.json` metadata sidecar
# (workers/steps/report.py: the report itself and its markdown summary).
NO_SIDECAR_KINDS = frozenset({"report", "summary"})
SIDECAR_SUFFIX = ".json"


class ApiError(RuntimeError):
    """A non-2xx answer; str() carries the server's detail message."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class JobFailed(RuntimeError):
    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} {job['status']}: {job.get('error') or 'no reason given'}")
        self.job = job


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    try:
        detail: Any = resp.json().get("detail", resp.text)
    except (ValueError, AttributeError):
        detail = resp.text
    raise ApiError(resp.status_code, detail)


def iter_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Parse a text/event-stream (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload = json.loads(text)
                except json.JSONDecodeError:
                    payload = {"text": text}
                yield SseEvent(event_id, event, payload if isinstance(payload, dict) else {"value": payload})
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue  # keep-alive comment
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_local(what: str, value: str | Path) -> None:
    path = Path(value)
    if path.is_file() or (isinstance(value, str) and ID_PATTERN.fullmatch(value)):
        return
    if path.is_dir():
        raise FileNotFoundError(f"{what} {value} is a folder, not a file")
    raise FileNotFoundError(f"{what} file {value} does not exist (nor is it an uploaded id: 32 hex digits)")


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.base = url.rstrip("/")
        self.http = httpx.Client(
            base_url=f"{self.base}/api/v1",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, **kwargs)
        _raise_for(resp)
        return resp.json() if resp.content else None

    def _upload(self, path: str, file: Path, name: str | None) -> dict[str, Any]:
        with file.open("rb") as f:
            files = {"file": (file.name, f, "application/octet-stream")}
            result: dict[str, Any] = self.request("POST", path, files=files, data={"name": name or file.name})
        return result

    def upload_model(self, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
        return self._upload("/models", Path(path), name)

    def upload_dataset(self, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
        return self._upload("/datasets", Path(path), name)

    def submit(
        self,
        model: str | Path,
        *,
        data: str | Path | None,
        profile: str,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """model/data: an uploaded id, or a local file path that is uploaded first. A value that is
        neither an existing file nor an id raises FileNotFoundError before anything is sent."""
        _check_local("teacher model", model)
        if data is not None:
            _check_local("transfer set", data)
        model_id = self.upload_model(model)["id"] if Path(model).is_file() else str(model)
        dataset_id: str | None = None
        if data is not None:
            dataset_id = self.upload_dataset(data)["id"] if Path(data).is_file() else str(data)
        body: dict[str, Any] = {"model_id": model_id, "dataset_id": dataset_id, "device_profile": profile}
        body["options"] = options or {}
        if webhook_url:
            body["webhook_url"] = webhook_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job(self, self.request("POST", "/jobs", json=body, headers=headers))

    def job(self, job_id: str) -> Job:
        return Job(self, self.request("GET", f"/jobs/{job_id}"))


class Job:
    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    def refresh(self) -> Job:
        self.data = self.client.request("GET", f"/jobs/{self.id}")
        return self

    def cancel(self) -> Job:
        self.data = self.client.request("POST", f"/jobs/{self.id}/cancel")
        return self

    def events(self, *, last_event_id: str | None = None) -> Iterator[SseEvent]:
        """Follow the server-sent event stream until the server closes it (job ended)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(30.0, read=None)
        with self.client.http.stream("GET", f"/jobs/{self.id}/events", headers=headers, timeout=timeout) as r:
            if not r.is_success:
                r.read()
                _raise_for(r)
            yield from iter_sse(r.iter_lines())

    def wait(
        self,
        *,
        timeout: float | None = None,
        on_event: Callable[[SseEvent], None] | None = None,
        check: bool = True,
    ) -> Job:
        """Block until the job ends, following SSE (reconnecting with Last-Event-ID if the stream drops).
        Raises JobFailed when it ends failed/cancelled and check is true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id: str | None = None
        while self.refresh().status not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout} s")
            try:
                for ev in self.events(last_event_id=last_id):
                    last_id = ev.id or last_id
                    if on_event:
                        on_event(ev)
                    if deadline is not None and time.monotonic() > deadline:
                        break
            except httpx.TransportError:
                time.sleep(1.0)  # stream dropped: reconnect after refreshing the status
        if check and self.status != "succeeded":
            raise JobFailed(self.data)
        return self

    def artifacts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.request("GET", f"/jobs/{self.id}/artifacts")
        return result

    def report(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request("GET", f"/jobs/{self.id}/report")
        return result

    def download(self, out_dir: str | Path, *, kinds: set[str] | None = None) -> list[Path]:
        """Download artifacts (all, or those of the given kinds), verify each sha256 and write the same
        `<file>.json` metadata sidecars `edgedistill compress` writes. Returns the artifact files."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for art in self.artifacts():
            if kinds and art["kind"] not in kinds:
                continue
            path = download_artifact(self.client, art, out)
            if art["kind"] not in NO_SIDECAR_KINDS and isinstance(art.get("metadata"), dict):
                write_sidecar(path, art["metadata"])
            paths.append(path)
        return paths


def write_sidecar(path: Path, metadata: dict[str, Any]) -> Path:
    """`<file>.json` beside an artifact, formatted as workers/steps/artifacts.py writes it."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    tmp = sidecar.with_name(sidecar.name + ".part")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(sidecar)
    return sidecar


def download_artifact(client: Client, art: dict[str, Any], out: Path) -> Path:
    # The server's filename is untrusted: keep only its last path component.
    target = out / Path(str(art["filename"])).name
    tmp = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    with client.http.stream("GET", f"/artifacts/{art['id']}/download") as r:
        if not r.is_success:
            r.read()
            _raise_for(r)
        with tmp.open("wb") as f:
            for chunk in r.iter_bytes(1 << 20):
                h.update(chunk)
                f.write(chunk)
    if h.hexdigest() != art["sha256"]:
        tmp.unlink(missing_ok=True)
        raise ApiError(502, f"artifact {art['id']} sha256 mismatch: got {h.hexdigest()}, expected {art['sha256']}")
    tmp.replace(target)
    return target
