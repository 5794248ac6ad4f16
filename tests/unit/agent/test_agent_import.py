"""The agent stays light: importing its CLI loads no torch, no service or worker code, and no runtime
until a model is run. Checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ["torch", "edgedistill.service", "edgedistill.workers",
             "onnx", "onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorflow",
             "sqlalchemy", "fastapi", "pydantic", "sklearn"]  # fmt: skip

SCRIPT = "import json, sys; import edgedistill.agent.cli; print(json.dumps(sorted(sys.modules)))"


def test_importing_the_cli_loads_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "edgedistill.agent.cli" in loaded and "httpx" in loaded
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert bad == []


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'edgedistill-agent = "edgedistill.agent.cli:main"' in text and '"edgedistill*"' in text
