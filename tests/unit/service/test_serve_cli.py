"""`edgedistill serve` with its port taken: one line naming --port, non-zero exit, nothing started.
And scripts/serve.sh installs only when pyproject.toml or constraints.txt changed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from edgedistill.service.serve import EXIT_PORT, port_problem

REPO = Path(__file__).resolve().parents[3]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
    env.update(EDGEDISTILL_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    return env


def test_busy_port_is_one_line_naming_port_and_a_non_zero_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_problem("127.0.0.1", port) == f"port {port} on 127.0.0.1 is already in use"
        proc = subprocess.run(
            [sys.executable, "-m", "edgedistill.service.cli", "serve", "--port", str(port)],
            cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == EXIT_PORT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port" in lines[0]
    assert "is up" not in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # checked before any database, Redis or child process


def test_free_port_and_bad_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None
    problem = port_problem("no-such-host.invalid", port)
    assert problem is not None and problem.startswith("cannot resolve --host no-such-host.invalid")


def _fake_checkout(root: Path) -> Path:
    """scripts/serve.sh with an install.sh that only counts its runs and a .venv whose edgedistill echoes."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "serve.sh", root / "scripts" / "serve.sh")
    (root / "scripts" / "install.sh").write_text('#!/usr/bin/env bash\necho run >> "$(dirname "$0")/../installs"\n')
    (root / "scripts" / "install.sh").chmod(0o755)
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, root / name)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "edgedistill").write_text('#!/usr/bin/env bash\necho "edgedistill $*"\n')
    (bin_dir / "edgedistill").chmod(0o755)
    return root


def test_serve_sh_installs_only_when_the_dependencies_changed(tmp_path: Path) -> None:
    root = _fake_checkout(tmp_path / "checkout")

    def serve() -> str:
        out = subprocess.run(["bash", "scripts/serve.sh", "--port", "8123"], cwd=root, capture_output=True,
                             text=True, timeout=60, check=True)  # fmt: skip
        assert "edgedistill serve --port 8123" in out.stdout
        return out.stdout

    serve()
    serve()
    assert (root / "installs").read_text().count("run") == 1
    with (root / "constraints.txt").open("a") as f:
        f.write("\n# changed\n")
    serve()
    assert (root / "installs").read_text().count("run") == 2
    serve()
    assert (root / "installs").read_text().count("run") == 2
