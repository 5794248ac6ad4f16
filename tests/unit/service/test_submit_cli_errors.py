"""`edgedistill submit` in a subprocess, against no server, a server that never answers and missing
files: one line each with the fix, the documented exit status, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedistill.service.cli_errors import EXIT_UNREACHABLE, EXIT_USAGE

REPO = Path(__file__).resolve().parents[3]


def submit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "edgedistill.service.cli", "submit", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    teacher, data = tmp_path / "teacher.onnx", tmp_path / "data.npz"
    teacher.write_bytes(b"not really onnx")  # never sent: these tests fail before or at the connection
    data.write_bytes(b"nor npz")
    return teacher, data


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(timeout=2)
    for c in held:
        c.close()
    srv.close()


def test_connection_refused(tmp_path: Path, files: tuple[Path, Path]) -> None:
    port = _closed_port()
    proc = submit(str(files[0]), "--data", str(files[1]), "--profile", "cpu-x86", "--api-key", "k",
                  "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_UNREACHABLE
    line = one_error_line(proc)
    assert f"cannot reach the edgedistill server at http://127.0.0.1:{port}" in line
    assert "edgedistill serve" in line and "--url" in line


def test_unknown_host(tmp_path: Path, files: tuple[Path, Path]) -> None:
    proc = submit(str(files[0]), "--profile", "cpu-x86", "--api-key", "k", "--url", "http://no-such-host.invalid:8000",
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_UNREACHABLE
    assert "cannot reach the edgedistill server at http://no-such-host.invalid:8000" in one_error_line(proc)


def test_server_that_never_answers_times_out(tmp_path: Path, files: tuple[Path, Path], silent_server: int) -> None:
    url = f"http://127.0.0.1:{silent_server}"
    proc = submit(str(files[0]), "--profile", "cpu-x86", "--api-key", "k", "--url", url, "--http-timeout", "1",
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_UNREACHABLE
    line = one_error_line(proc)
    assert f"no answer from {url} in time" in line and "--http-timeout" in line


def test_missing_local_files_are_named_before_anything_is_sent(tmp_path: Path, files: tuple[Path, Path]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"  # a connection attempt would answer 3, not 2
    proc = submit("techer.onnx", "--data", str(files[1]), "--profile", "cpu-x86", "--api-key", "k", "--url", url,
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    line = one_error_line(proc)
    assert "teacher model file techer.onnx does not exist" in line
    proc = submit(str(files[0]), "--data", "missing.npz", "--profile", "cpu-x86", "--api-key", "k", "--url", url,
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    assert "transfer set file missing.npz does not exist" in one_error_line(proc)
    proc = submit(str(files[0]), "--profile", "cpu-x86", "--api-key", "k", "--url", url, "--options", "nope.yaml",
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    assert "nope.yaml" in one_error_line(proc)


def test_usage_errors(tmp_path: Path, files: tuple[Path, Path]) -> None:
    proc = submit(str(files[0]), "--profile", "cpu-x86", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "--api-key or EDGEDISTILL_API_KEY" in one_error_line(proc)
    proc = submit(str(files[0]), "--profile", "cpu-x86", "--api-key", "k", "--set", "epochs", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "--set takes KEY=VALUE" in one_error_line(proc)


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    proc = submit("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "exit status:" in proc.stdout
    for code in range(6):
        assert f"\n  {code}  " in proc.stdout
