#!/usr/bin/env bash
# Garbage-collection benchmark: pg_oas's oas_gc() against DataJoint 2.3.5's dj.gc on the same objects.
#   scripts/bench_gc.sh [bench_gc.py options]   e.g. --scenarios local:100000,s3:100000, --record
#   OAS_SERVERS_RUN_DIR=/other/checkout/.run scripts/bench_gc.sh   share that checkout's SeaweedFS
# Starts SeaweedFS (S3) if it is not running, a fresh cluster `gcbench` on
# 127.0.0.1:$OAS_BENCH_GC_PORT (25436) with pg_stat_statements (track = all) and autovacuum off,
# database gcbench, the extension and two stores: `file` (.run/gcbench-store, owned by postgres,
# group-writable) and `s3` (SeaweedFS, bucket oas-test, a new location gcbench-<time> per run).
# Stops the cluster at the end, and SeaweedFS too if this script started it. See bench/README.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_BENCH_GC_PORT:-25436}"
CLUSTER=gcbench
DB=gcbench
STORE="$RUN_DIR/gcbench-store"
S3_LOCATION="gcbench-$(date +%s)"

source "$ROOT/scripts/bench_common.sh"
bench_cluster "$CLUSTER" "$BENCH_PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres)
# pg_stat_statements with nested statements: how long the SQL inside oas_gc() takes.
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
"$ROOT/scripts/cluster.sh" stop "$CLUSTER"
"$ROOT/scripts/cluster.sh" start "$CLUSTER" "$BENCH_PORT"
# Autovacuum off: the benchmark runs ANALYZE itself where autovacuum would have, so the plans
# the collector gets do not depend on when the launcher wakes up.
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" \
  -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null

rm -rf "$STORE"
install -d -o postgres -g postgres -m 2775 "$STORE"
bench_database "$DB" "$S3_LOCATION" "$STORE" pg_stat_statements

log "running bench/bench_gc.py $*"
"$VENV/bin/python" "$ROOT/bench/bench_gc.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" --pg-config "$PG_CONFIG" "$@"
