#!/usr/bin/env bash
# The fast tier, for the edit-test loop: unit tests that need no service, no browser and no long run
# (-m "not integration and not e2e and not slow"). No install, no PostgreSQL, no lint (scripts/lint.sh).
# Extra arguments go to pytest, e.g. scripts/test-fast.sh -x tests/unit/service. CI runs every tier
# through scripts/test.sh.
#
# With pytest-xdist (the [dev] extra) it runs on EDGEDISTILL_TEST_WORKERS processes (default 2: about
# 240 s of CPU in all, so about 2 minutes on 2 idle cores). Each worker collects the suite and builds
# the session fixtures again (about 60 s of CPU more than one process), so on a machine that other
# runs keep busy EDGEDISTILL_TEST_WORKERS=0 (one process) finishes sooner.
set -euo pipefail
cd "$(dirname "$0")/.."
# One thread per library: the machine is shared, and the tests' tensors are small.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
workers="${EDGEDISTILL_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != 0 ] && .venv/bin/python -c "import xdist" >/dev/null 2>&1; then
  parallel=(-n "$workers")
fi
exec .venv/bin/pytest -m "not integration and not e2e and not slow" "${parallel[@]}" "$@"
