#!/usr/bin/env bash
# Put/get benchmark of pg_oas against bytea, large objects and DataJoint's own client, then the
# batch cases (many objects in one statement) and a met/not-met line per target of issue #12.
#   scripts/bench.sh [bench_put_get.py options]     e.g. --quick, --record, --sizes 4K,1M,
#                                                   --batch (only the batch cases), --no-batch,
#                                                   --uploads-in-flight N
#   OAS_BENCH_INSTALL=1 scripts/bench.sh            first build and install the release extension
# Starts SeaweedFS (S3) if it is not running, a fresh cluster `bench` on 127.0.0.1:$OAS_BENCH_PORT
# (25434) with database oas_bench, the extension and two stores: `file` (.run/bench-store) and `s3`
# (SeaweedFS, bucket oas-test, location "bench"). Stops the cluster at the end, and SeaweedFS too
# if this script started it. See bench/README.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_BENCH_PORT:-25434}"
DB=oas_bench
STORE="$RUN_DIR/bench-store"

source "$ROOT/scripts/bench_common.sh"
bench_cluster bench "$BENCH_PORT"
rm -rf "$STORE"
install -d -o postgres -g postgres -m 750 "$STORE"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres)
# No autovacuum on this cluster: the WAL measured around each batch of puts must be theirs alone.
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
bench_database "$DB" bench "$STORE"

log "running bench/bench_put_get.py $*"
"$VENV/bin/python" "$ROOT/bench/bench_put_get.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" --pg-config "$PG_CONFIG" "$@"
