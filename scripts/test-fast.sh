#!/usr/bin/env bash
# The fast tier, for the edit-test loop: unit tests that need no service, no browser and no long run
# (-m "not integration and not e2e and not slow"), under 2 minutes on 2 idle cores. No install, no
# PostgreSQL, no lint (scripts/lint.sh). Extra arguments go to pytest, e.g. scripts/test-fast.sh -x
# tests/unit/service. CI runs every tier through scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# One thread per library: the machine is shared, and the tests' tensors are small.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/pytest -m "not integration and not e2e and not slow" "$@"
