"""Real third-party teachers in CI, sized to fit it: each run keeps the teacher's I/O names, and a
student that misses its kind's target on held-out data is never a plain success (the report carries
a quality problem). The full targets are judged by the conformance tier (test_conformance.py,
`scripts/test.sh -m conformance`) and bench/conformance.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import conformance, material

pytestmark = pytest.mark.slow

# A label + probabilities skl2onnx forest (tabular) and a TFLite wake-word head (one sigmoid unit).
CASES = ("skl_forest", "wakeword")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-teachers")


@pytest.mark.parametrize("name", CASES)
def test_real_teacher_keeps_io_and_reports_misses(name: str, work: Path) -> None:
    case = material.build_case(name, work)
    rows = conformance.run_case(case, "mobile-arm64", work, {"epochs": 8, "seed": 0})
    conformance.print_table(rows)
    judged = [r for r in rows if r.target is not None]
    assert judged, [r.why for r in rows]
    assert all(r.io_kept == "yes" for r in judged), [r.io_kept for r in judged]
    run_dirs = sorted((work / "runs").glob(f"{name}-mobile-arm64-*"))
    report = json.loads((run_dirs[-1] / "report.json").read_text())
    # where a user could not use the student (a sigmoid decision near chance, top-1 below one in two)
    unusable = {"balanced_agreement": 0.8, "top1_agreement": 0.5}
    if any(r.value is not None and r.value < unusable.get(r.metric, 0.0) for r in judged):
        # unusable: the job must say so, prominently
        assert (report.get("quality") or {}).get("problem"), (report.get("quality"), [r.why for r in judged])
