"""Each Dockerfile target's file set (what its COPY lines copy) carries every project module its code
imports; taking one COPY line away is caught. No Docker engine: tests/images.py reads the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from images import REPO, build_file_set, missing_project_imports, parse_dockerfile, resolve_target

DOCKERFILE = (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["api", "worker"])
def test_every_target_carries_what_its_code_imports(name: str, tmp_path: Path) -> None:
    target = resolve_target(parse_dockerfile(DOCKERFILE), name)
    root = build_file_set(target, tmp_path / "app")
    assert (root / "pyproject.toml").is_file() and (root / "constraints.txt").is_file()
    assert missing_project_imports(root) == []
    assert target.cmd, f"target {name} has no CMD"


def test_targets_inherit_and_run_what_the_dockerfile_says() -> None:
    stages = parse_dockerfile(DOCKERFILE)
    worker = resolve_target(stages, "worker")
    api = resolve_target(stages, "api")
    assert worker.workdir == api.workdir == "/app"
    assert any('".[server,ml,executorch]"' in run for run in worker.runs)
    assert any('".[server]"' in run for run in api.runs) and not any("ml" in run for run in api.runs)
    assert api.cmd[0] == "uvicorn" and worker.cmd[:2] == ["edgedistill", "worker"]
    assert worker.args["TORCH_INDEX_URL"] == ""  # empty: torch comes from the default index


@pytest.mark.parametrize(
    ("line", "where", "expected"),
    [("COPY service ./service", "edgedistill/workers/celery_app.py", "imports edgedistill.service.settings")],
)
def test_removing_a_copy_line_is_caught(line: str, where: str, expected: str, tmp_path: Path) -> None:
    assert line in DOCKERFILE
    broken = DOCKERFILE.replace(line, "")
    target = resolve_target(parse_dockerfile(broken), "worker")
    problems = missing_project_imports(build_file_set(target, tmp_path / "app"))
    assert any(p.startswith(where) and expected in p for p in problems), problems


def test_removing_any_package_copy_is_caught(tmp_path: Path) -> None:
    """Every project package is imported by another one, so dropping any of their COPY lines fails."""
    lines = ("COPY service ./service", "COPY workers ./workers", "COPY migrations ./migrations")
    for line in (*lines, "COPY edgedistill ./edgedistill"):
        target = resolve_target(parse_dockerfile(DOCKERFILE.replace(line, "")), "worker")
        root = build_file_set(target, tmp_path / line.split()[1])
        assert missing_project_imports(root), f"dropping {line!r} went unnoticed"


def test_parser_reads_continuations_lists_and_key_values() -> None:
    text = (
        "ARG V=1\nFROM img:${V} AS one\nENV A=1 B=two\nWORKDIR /w\n"
        'COPY a b ./\nRUN echo x \\\n && echo y\n# comment\nCMD ["run", "--flag"]\n'
        "FROM one AS two\nENV B=three\n"
    )
    two = resolve_target(parse_dockerfile(text), "two")
    assert two.env == {"A": "1", "B": "three"}
    assert two.copies == [(["a", "b"], "./")]
    assert two.runs == ["echo x  && echo y"]
    assert two.cmd == ["run", "--flag"] and two.workdir == "/w"
