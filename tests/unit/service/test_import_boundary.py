"""The API process stays light: importing service.main (and building the app) loads no ML library
and no worker task/step code. Checked in a fresh interpreter so other tests' imports do not count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = [
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "litert",
    "litert_torch",
    "ai_edge_litert",
    "tensorflow",
    "tflite_micro",
    "sklearn",
    "edgedistill.workers.steps",
    "edgedistill.workers.tasks",
    "edgedistill.workers.celery_app",
    "edgedistill.workers.persistence",
    "edgedistill.workers.pipeline.runner",
]

SCRIPT = """
import json, sys
import edgedistill.service.main
from edgedistill.service.settings import Settings
edgedistill.service.main.create_app(Settings(data_dir=sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def test_api_imports_no_ml_or_worker_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert bad == []
    assert "edgedistill.service.api.routes.jobs" in loaded  # the check ran against the real app
