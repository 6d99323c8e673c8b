#!/usr/bin/env bash
# DataJoint blob benchmark (#11): oas_blob_pack/unpack against DataJoint's blob.pack/unpack, and
# rows of 1 MB float64 arrays in a <blob@store> column inserted and fetched by DataJoint alone, by
# DataJoint on a database with pg_oas (its triggers on), and from SQL.
#   scripts/bench_blob.sh [bench_blob.py options]   e.g. --quick, --record, --stores file,s3, --rows 1000
#   OAS_BENCH_INSTALL=1 scripts/bench_blob.sh       first build and install the release extension
# Starts SeaweedFS (S3) if it is not running, a fresh cluster `blobbench` on 127.0.0.1:$OAS_BENCH_BLOB_PORT
# (25437), autovacuum off, with two databases: oas_blob (the extension and two stores: `file`
# (.run/bench-blob-store) and `s3` (SeaweedFS, bucket oas-test, location "bench-blob")) and
# dj_plain (no pg_oas: DataJoint alone, writing to the same stores). Stops the cluster at the end,
# and SeaweedFS too if this script started it. See bench/README.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_BENCH_BLOB_PORT:-25437}"
DB=oas_blob
PLAIN_DB=dj_plain
STORE="$RUN_DIR/bench-blob-store"

source "$ROOT/scripts/bench_common.sh"
bench_cluster blobbench "$BENCH_PORT"
# DataJoint (this user) and pg_oas (postgres) both write into the file store: owned by postgres,
# group-writable, and the Python side runs with umask 002 so the folders it makes stay so.
rm -rf "$STORE"
install -d -o postgres -g postgres -m 2775 "$STORE"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres)
# No autovacuum: nothing but the benchmark's own statements runs while it measures.
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
bench_database "$DB" bench-blob "$STORE"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $PLAIN_DB"

log "running bench/bench_blob.py $*"
dsn="host=127.0.0.1 port=$BENCH_PORT user=postgres dbname"
(umask 002 && "$VENV/bin/python" "$ROOT/bench/bench_blob.py" \
  --dsn "$dsn=$DB" --plain-dsn "$dsn=$PLAIN_DB" --pg-config "$PG_CONFIG" "$@")
