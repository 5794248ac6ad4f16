#!/usr/bin/env bash
set -uo pipefail
dir="${1:?usage: stop-postgres.sh DIR}"
bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "'$bindir/pg_ctl' -D '$dir/data' -m fast stop" >/dev/null 2>&1
else "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1; fi
rm -rf "$dir"
