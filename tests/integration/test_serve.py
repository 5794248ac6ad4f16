"""`edgedistill serve` as a newcomer runs it: embedded Redis, SQLite, API + worker; Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from stack import REPO, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _start(tmp_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
    env.update(EDGEDISTILL_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "edgedistill.service.cli", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_serve_starts_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _start(tmp_path, port, log)
    try:
        text = wait_until(lambda: "API key" in log.read_text() and log.read_text(), 120, "serve to print its key")
        key = re.search(r"API key for tenant 'local': (\S+)", text)
        assert key, text
        url = f"http://127.0.0.1:{port}"
        assert url in text
        ready = wait_until(lambda: _get(f"{url}/readyz"), 60, "/readyz")
        assert ready.json()["broker"] == "ok" and ready.json()["database"] == "ok"
        auth = {"Authorization": f"Bearer {key.group(1)}"}
        profiles = httpx.get(f"{url}/api/v1/device-profiles", headers=auth).json()
        assert {"cpu-x86", "mobile-arm64", "mcu-cortex-m4", "mcu-cortex-m7"} <= {p["name"] for p in profiles}
        wait_until(lambda: " ready." in log.read_text(), 120, "the worker to be ready")
        children = _children_of(proc.pid)
        assert len(children) >= 2  # uvicorn + the Celery worker (redis-server too)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2)
        assert (tmp_path / "data" / "local-api-key").read_text().strip() == key.group(1)
        # Everything serve made in its data folder is the owner's only (umask 077 and explicit modes).
        data = tmp_path / "data"
        for path in [data, *data.rglob("*")]:
            if path.is_socket() or path.is_symlink():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, (path, oct(mode))

        # A second start reuses the database and the key, but no longer prints it (it would land in logs).
        log2 = tmp_path / "serve2.log"
        proc = _start(tmp_path, port, log2)
        text2 = wait_until(lambda: "API key" in log2.read_text() and log2.read_text(), 120, "the second start")
        assert key.group(1) not in text2 and "local-api-key" in text2
        wait_until(lambda: _get(f"{url}/readyz"), 60, "/readyz after the restart")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _get(url: str) -> httpx.Response | None:
    try:
        resp = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return resp if resp.status_code == 200 else None
