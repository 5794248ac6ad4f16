"""What `pip install` really puts on a machine (issue 15): one `edgedistill` package, console scripts,
and extras that stay small. The wheel is built once from the working tree and installed into fresh
virtualenvs from the registry (pip's cache is kept), so nothing here can see the working tree or the
test interpreter's site-packages: a server module imported by the client, or a heavy dependency
listed in the wrong extra, fails here first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from images import clean_env, make_venv, venv_python

REPO = Path(__file__).resolve().parents[2]
# The server's and the worker's heavy stack: none of it may come with the client or the agent.
SERVER_DISTRIBUTIONS = ("torch", "fastapi", "sqlalchemy", "celery", "uvicorn", "alembic", "onnx")

# One wheel build plus two installs from the registry's cache take about a minute on the shared
# 2-core machine; the limit leaves room for a cold cache.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


# What the build reads. It runs on a copy: an in-place build leaves build/lib behind, whose stale files
# (a module deleted since) would go into the next wheel.
SOURCES = ("pyproject.toml", "README.md", "edgedistill", "service", "workers", "agent", "migrations")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
        else:  # edgedistill/'s links stay links: the build must follow them as it does in a checkout
            shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(out)],
        check=True, cwd=out, timeout=600,
    )  # fmt: skip
    (built,) = out.glob("edgedistill-*.whl")
    return built


def _install(wheel: Path, extra: str, root: Path) -> tuple[Path, dict[str, str]]:
    """A fresh virtualenv with `edgedistill[extra]` installed from the wheel, and its clean environment."""
    venv = make_venv(root / f"venv-{extra}")
    env = clean_env(venv)
    subprocess.run(
        [str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(REPO / "constraints.txt"), f"{wheel}[{extra}]"],
        check=True, cwd=root, env=env, timeout=600,
    )  # fmt: skip
    return venv, env


def _installed(venv: Path, env: dict[str, str], cwd: Path) -> set[str]:
    code = "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    out = subprocess.run(
        [str(venv_python(venv)), "-c", code], check=True, capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )
    return {name.lower().replace("_", "-") for name in json.loads(out.stdout)}


def _run(venv: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def client_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("client")
    venv, env = _install(wheel, "client", root)
    yield venv, env, root


@pytest.fixture(scope="module")
def agent_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("agent")
    venv, env = _install(wheel, "agent", root)
    yield venv, env, root


def test_the_wheel_holds_one_package_and_declares_the_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        dist_info = next(t for t in top if t.endswith(".dist-info"))
        assert top == {"edgedistill", dist_info}, sorted(top)
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["edgedistill"]
    assert "edgedistill = edgedistill.service.cli:main" in entry_points
    assert "edgedistill-agent = edgedistill.agent.cli:main" in entry_points
    # The linked folders are copied in as real files, data included (profiles, templates, migrations).
    for path in (
        "edgedistill/client.py",
        "edgedistill/service/main.py",
        "edgedistill/workers/pipeline/runner.py",
        "edgedistill/agent/cli.py",
        "edgedistill/migrations/env.py",
        "edgedistill/migrations/alembic.ini",
        "edgedistill/contracts/profiles/mobile-arm64.yaml",
        "edgedistill/service/web/templates/base.html",
    ):
        assert path in names, path


def test_the_client_extra_installs_without_the_server(client_venv: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, cwd = client_venv
    installed = _installed(venv, env, cwd)
    assert "edgedistill" in installed
    assert not installed & set(SERVER_DISTRIBUTIONS), sorted(installed & set(SERVER_DISTRIBUTIONS))

    where = _run(venv, env, cwd, "python", "-c", "import edgedistill.client as c; c.Client; print(c.__file__)")
    assert where.returncode == 0, where.stderr
    # Imported from the virtualenv, not from the working tree.
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    help_ = _run(venv, env, cwd, "edgedistill", "submit", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "usage: edgedistill submit" in help_.stdout
    assert "--require-quality" in help_.stdout

    # Past --help: a real submit goes through the client's upload path to a port where nothing listens
    # (9, discard) and ends with the one-line "unreachable" error, exit 3, not an ImportError.
    teacher = cwd / "teacher.onnx"
    teacher.write_bytes(b"not really onnx: the upload never starts")
    submit = _run(
        venv, env, cwd, "edgedistill", "submit", str(teacher), "--profile", "mobile-arm64",
        "--url", "http://127.0.0.1:9", "--api-key", "edk_test", "--http-timeout", "5",
    )  # fmt: skip
    assert submit.returncode == 3, (submit.stdout, submit.stderr)
    assert "Traceback" not in submit.stderr


def test_the_agent_extra_installs_without_the_server(agent_venv: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, cwd = agent_venv
    installed = _installed(venv, env, cwd)
    assert {"edgedistill", "numpy", "httpx"} <= installed
    assert not installed & set(SERVER_DISTRIBUTIONS), sorted(installed & set(SERVER_DISTRIBUTIONS))

    help_ = _run(venv, env, cwd, "edgedistill-agent", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "usage: edgedistill-agent" in help_.stdout
    for command in ("run", "watch"):
        sub = _run(venv, env, cwd, "edgedistill-agent", command, "--help")
        assert sub.returncode == 0, sub.stderr

    # A real run imports the agent's whole chain (api, measure, runtimes) and fails only on the network.
    run = _run(
        venv, {**env, "EDGEDISTILL_DEVICE_TOKEN": "edd_x"}, cwd, "edgedistill-agent", "run", "--artifact", "a",
        "--url", "http://127.0.0.1:9", "--insecure", "--timeout", "5",
    )  # fmt: skip
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "cannot reach the service" in run.stderr
    assert "Traceback" not in run.stderr
