#!/usr/bin/env bash
# Migration benchmark (#14): oas_migrate_column of a <blob> column of N GB (default 10) into the
# file store and SeaweedFS, against the raw put speed and the DataJoint client doing the same.
#   scripts/bench_migrate.sh [bench/migrate.py options]   e.g. --gb 0.3
#   OAS_BENCH_INSTALL=1 scripts/bench_migrate.sh          first build and install the release extension
# A fresh cluster `migbench` on 127.0.0.1:$OAS_BENCH_MIGRATE_PORT (25438), database oas_migrate
# with stores `file` (.run/bench-migrate-store) and `s3` (SeaweedFS, location "bench-migrate").
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_BENCH_MIGRATE_PORT:-25438}"
DB=oas_migrate
STORE="$RUN_DIR/bench-migrate-store"

source "$ROOT/scripts/bench_common.sh"
bench_cluster migbench "$BENCH_PORT"
rm -rf "$STORE"
install -d -o postgres -g postgres -m 2775 "$STORE"
bench_database "$DB" bench-migrate "$STORE"
log "running bench/migrate.py $*"
(umask 002 && "$VENV/bin/python" "$ROOT/bench/migrate.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" "$@")
rm -rf "$STORE"
