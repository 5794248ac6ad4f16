#!/usr/bin/env bash
# One command for a newcomer: install, then run API + one worker on the embedded defaults
# (SQLite file, embedded Redis, local artifact folder under ./.edgedistill).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh ml
exec .venv/bin/edgedistill serve "$@"
