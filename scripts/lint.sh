#!/usr/bin/env bash
# Lint and types only, no install and no tests (seconds, not minutes): ruff, ruff format --check,
# mypy on the package and, once the layer contracts exist (.importlinter or [tool.importlinter] in
# pyproject.toml), import-linter. scripts/test.sh runs this before pytest; pre-commit runs the same
# ruff and mypy hooks (.pre-commit-config.yaml). Needs ./.venv (scripts/install.sh server,ml,dev).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
paths=(edgedistill service workers agent tests bench scripts migrations)

echo "== ruff"
"$bin/ruff" check "${paths[@]}"
"$bin/ruff" format --check "${paths[@]}"
echo "== mypy"
"$bin/mypy" edgedistill
if [ -f .importlinter ] || grep -q '^\[tool\.importlinter' pyproject.toml; then
  echo "== import-linter"
  if [ ! -x "$bin/lint-imports" ]; then
    # The contracts are there but the tool is not: say so rather than pass without checking them.
    echo "lint-imports is not installed in .venv: run scripts/install.sh server,ml,dev" >&2
    exit 1
  fi
  "$bin/lint-imports"
fi
