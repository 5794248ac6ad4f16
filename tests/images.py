"""The Dockerfile's targets without a Docker engine: parse the Dockerfile, lay out each target's file
set from its COPY lines, install it the way its RUN lines do into a fresh virtualenv, and find the
project imports its code makes that its files do not carry.

Used by tests/unit/test_dockerfile.py (static: every project import resolves inside the file set) and
tests/integration/test_images.py (dynamic: each target's CMD runs and the worker finishes a job).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    parent: str  # another stage's name, or an external image
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] | None = None


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _key_values(arguments: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(arguments):
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"only KEY=VALUE forms are supported, got {token!r}")
        pairs[key] = value
    return pairs


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name. Supports what this project's Dockerfile uses: FROM .. AS, ARG, ENV, WORKDIR,
    COPY (no --from), RUN, CMD (exec form); USER, EXPOSE and HEALTHCHECK are ignored."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for word, rest in _instructions(text):
        if word == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, flags=re.IGNORECASE)
            if not m:
                raise ValueError(f"every stage needs a name: FROM {rest}")
            current = Stage(name=m.group(2), parent=m.group(1))
            stages[current.name] = current
        elif current is None:
            continue  # global ARGs before the first FROM only pick base images
        elif word == "ARG":
            name, _, default = rest.partition("=")
            current.args[name] = default.strip('"')
        elif word == "ENV":
            current.env.update(_key_values(rest))
        elif word == "WORKDIR":
            current.workdir = rest
        elif word == "COPY":
            if rest.startswith("--"):
                raise ValueError(f"COPY options are not supported here: {rest}")
            parts = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            current.copies.append((parts[:-1], parts[-1]))
        elif word == "RUN":
            current.runs.append(rest)
        elif word == "CMD":
            current.cmd = json.loads(rest)
    return stages


@dataclass
class Target:
    name: str
    workdir: str
    copies: list[tuple[list[str], str]]
    runs: list[str]
    env: dict[str, str]
    args: dict[str, str]
    cmd: list[str]


def resolve_target(stages: dict[str, Stage], name: str) -> Target:
    """A target with everything it inherits from the stages it is built FROM."""
    chain: list[Stage] = []
    stage: Stage | None = stages[name]
    while stage is not None:
        chain.insert(0, stage)
        stage = stages.get(stage.parent)
    target = Target(name=name, workdir="/", copies=[], runs=[], env={}, args={}, cmd=[])
    for s in chain:
        if s.workdir != "/":
            target.workdir = s.workdir
        target.copies += s.copies
        target.runs += s.runs
        target.env.update(s.env)
        target.args.update(s.args)
        if s.cmd is not None:
            target.cmd = s.cmd
    return target


def build_file_set(target: Target, dest: Path, *, context: Path = REPO) -> Path:
    """Copy what the target's COPY lines copy into dest (dest stands for its WORKDIR)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, destination in target.copies:
        into = dest / destination
        for src in sources:
            path = context / src
            if path.is_dir():
                # symlinks=True: Docker's COPY keeps edgedistill/'s relative links as links.
                shutil.copytree(path, into, ignore=ignore, dirs_exist_ok=True, symlinks=True)
            elif destination.endswith("/") or len(sources) > 1:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into / path.name)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)
    return dest


def project_packages(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The top-level packages the distribution is made of ([tool.setuptools.packages.find] include)."""
    data = tomllib.loads(pyproject.read_text())
    return sorted({p.rstrip("*") for p in data["tool"]["setuptools"]["packages"]["find"]["include"]})


_DOTTED = re.compile(r"^([a-z_][a-z0-9_]*)(\.[a-z_][a-z0-9_]*)+(:[A-Za-z_]\w*)?$")


_SUBPACKAGES = {p.stem for p in (REPO / "edgedistill").iterdir() if p.suffix in ("", ".py")}


def _is_module_path(text: str) -> bool:
    """'package.module[:Attr]' naming a project module; the Celery task "edgedistill.run_job" is not one."""
    return bool(_DOTTED.match(text)) and text.split(".")[1].split(":")[0] in _SUBPACKAGES


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names (nested imports too: steps import lazily), plus string
    constants spelled 'package.module[:Attr]' (the step registry and the CLI import by name)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            if "." not in node.module:  # `from edgedistill import migrations` names a subpackage
                found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_module_path(node.value):
            found.append(node.value.split(":")[0])
    return found


def _module_exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or path.is_dir()


def _python_files(top: Path) -> list[Path]:
    """Every .py file under top, through edgedistill/'s links to the top-level folders (rglob skips links)."""
    return sorted(Path(d) / f for d, _, files in os.walk(top, followlinks=True) for f in files if f.endswith(".py"))


def missing_project_imports(root: Path, packages: list[str] | None = None) -> list[str]:
    """'file: imports module' for each project module named by the file set's code but absent from it."""
    packages = packages or project_packages()
    problems: list[str] = []
    for top in packages:
        if not (root / top).is_dir():
            problems.append(f"{top}: package folder missing")
            continue
        for path in _python_files(root / top):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for module in _imported_modules(tree):
                if module.split(".")[0] in packages and not _module_exists(root, module):
                    problems.append(f"{path.relative_to(root)}: imports {module}")
    return problems


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [str(venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


def third_party_overlay(dest: Path, packages: list[str]) -> Path:
    """A folder of links to every distribution of the test interpreter's site-packages except this
    project's own (its modules, dist-info and editable finder), so a fresh virtualenv can see the ML
    stack without being able to import the project from the working tree."""
    source = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()))
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        name = entry.name
        if name in packages or name.startswith(("edgedistill", "__editable__", "__pycache__")):
            continue
        if name.endswith(".pth"):
            continue  # .pth files in a plain path entry are not processed; leave them out to be explicit
        (dest / name).symlink_to(entry)
    return dest


def make_venv(venv: Path, *, overlay: Path | None = None) -> Path:
    """A fresh virtualenv without system site-packages; overlay (if given) is appended to its path."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    if overlay is not None:
        (site_packages(venv) / "zz-third-party-overlay.pth").write_text(f"{overlay}\n")
    return venv


def clean_env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without anything that points Python at the working tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEDISTILL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.update(extra or {})
    return env


def run_install_steps(target: Target, workdir: Path, venv: Path, *, log: Path) -> list[str]:
    """Run the target's RUN lines that install Python packages, as written, with the venv's pip first on
    PATH and the stage's ARG defaults and ENV; returns the RUN lines skipped (system setup such as
    useradd, which a virtualenv has no use for)."""
    skipped: list[str] = []
    env = clean_env(venv, {**target.args, **target.env})
    env.pop("PIP_NO_CACHE_DIR", None)  # pip's local cache keeps CI from downloading the same wheels again
    for command in target.runs:
        if "pip install" not in command:
            skipped.append(command)
            continue
        with log.open("ab") as out:
            subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command], cwd=workdir, env=env, check=True,
                stdout=out, stderr=subprocess.STDOUT, timeout=1500,
            )  # fmt: skip
    return skipped
