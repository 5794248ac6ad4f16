"""The agent as a real process against a hostile server (a real HTTP server that lies): whatever ids,
file names and hashes it sends, the agent writes nothing outside its own temporary folder, and refuses
plain http unless told --insecure."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from stack import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = b"not really a model"


class Hostile(BaseHTTPRequestHandler):
    artifact: dict[str, Any] = {}
    downloads: list[str] = []

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/v1/devices/me":
            self._json({"id": "d", "name": "box", "profile": "cpu-x86", "threads": 1})
        elif path == "/api/v1/devices/me/artifacts":
            self._json([type(self).artifact])
        elif path.endswith("/download"):
            type(self).downloads.append(path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL)))
            self.end_headers()
            self.wfile.write(MODEL)
        else:
            self._json(type(self).artifact)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def hostile() -> Iterator[str]:
    Hostile.downloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run_agent(url: str, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    tmp = work / "agent-tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(work / "home"),
        "TMPDIR": str(tmp),
        "EDGEDISTILL_DEVICE_TOKEN": "edd_hostile",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "edgedistill.agent.cli",
        "run",
        "--artifact",
        "a1",
        "--url",
        url,
        "--runs",
        "1",
        *extra,
    ]
    return subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=240)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "artifact",
    [
        # the id itself walks out of the folder
        {"id": "../../../../escape", "kind": "onnx_int8", "filename": "m.onnx", "probe_artifact_id": "p1"},
        # a valid id, a file name that walks out, bytes and sha256 both rewritten to match
        {"id": "a1", "kind": "onnx_int8", "filename": "../../../../escape.onnx", "probe_artifact_id": "p1"},
        # a valid model, a probe id that walks out
        {"id": "a1", "kind": "onnx_int8", "filename": "m.onnx", "probe_artifact_id": "../../escape"},
        # an absolute file name and a kind that is not a model
        {"id": "a1", "kind": "../../x", "filename": "/tmp/escape", "probe_artifact_id": "p1"},
    ],
)
def test_a_hostile_server_cannot_make_the_agent_write_outside_its_folder(
    hostile: str, tmp_path: Path, artifact: dict[str, Any]
) -> None:
    Hostile.artifact = {**artifact, "sha256": hashlib.sha256(MODEL).hexdigest(), "job_id": "j", "task": None}
    work = tmp_path / "device"
    work.mkdir()
    (work / "home").mkdir()
    before = _files(tmp_path)
    done = _run_agent(hostile, work, "--insecure")
    assert done.returncode != 0, done.stdout  # nothing about this server is measurable
    assert _files(tmp_path) == before, done.stderr  # not one file left, anywhere under the test's folder
    assert not list((work / "agent-tmp").iterdir())  # the agent's own temp folder was removed
    assert not Path("/tmp/escape").exists()
    assert all(".." not in p for p in Hostile.downloads)  # nor did it request paths it was fed


def test_plain_http_is_refused_without_insecure(hostile: str, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    done = _run_agent(hostile, tmp_path)
    assert done.returncode == 2 and "--insecure" in done.stderr
    assert Hostile.downloads == []
