#!/usr/bin/env bash
# Installs edgedistill into ./.venv with every pin from constraints.txt (torch 2.13.0 CPU: a looser
# pin would pull several GB of CUDA packages). Usage: scripts/install.sh [extras], default "server,ml,dev".
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-server,ml,dev}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
if [[ ",${extras}," == *",ml,"* ]]; then
  # onnx2torch (the derived student family) requires torchvision, whose wheels for this torch are CUDA
  # builds that fail to import next to the CPU torch: installed without its dependencies.
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps "onnx2torch>=1.5"
fi
echo "installed edgedistill[${extras}] into $(pwd)/.venv"
