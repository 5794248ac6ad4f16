#!/usr/bin/env bash
# One command for a newcomer: install, then run API + one worker on the embedded defaults
# (SQLite file, embedded Redis, local artifact folder under ./.edgedistill). Arguments go to
# `edgedistill serve` (--host, --port, --no-worker, --concurrency).
#
# The install runs only when pyproject.toml or constraints.txt changed since the last one
# (a stamp of their sha256 in .venv/); EDGEDISTILL_REINSTALL=1 forces it.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.edgedistill-install-stamp
want="ml $(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "${EDGEDISTILL_REINSTALL:-0}" = 1 ] || [ ! -x .venv/bin/edgedistill ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  scripts/install.sh server,ml,executorch
  echo "$want" > "$stamp"
else
  echo "dependencies unchanged since the last install: skipping it (EDGEDISTILL_REINSTALL=1 forces one)"
fi
exec .venv/bin/edgedistill serve "$@"
