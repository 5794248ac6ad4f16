#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster from Debian's packages on a unix socket + loopback port and
# prints the SQLAlchemy URL. Used by scripts/test.sh; stop it with scripts/stop-postgres.sh DIR.
set -euo pipefail
dir="${1:?usage: start-postgres.sh DIR [PORT]}"
port="${2:-55432}"
bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
rm -rf "$dir"; mkdir -p "$dir"
chown postgres "$dir" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
as_pg "'$bindir/initdb' -D '$dir/data' -A trust -U edgedistill >'$dir/initdb.log' 2>&1"
as_pg "'$bindir/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
as_pg "'$bindir/createdb' -h 127.0.0.1 -p $port -U edgedistill edgedistill_test"
echo "postgresql+psycopg://edgedistill@127.0.0.1:${port}/edgedistill_test"
