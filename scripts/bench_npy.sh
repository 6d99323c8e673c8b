#!/usr/bin/env bash
# NumPy slice benchmark: pg_oas's ranged reads (oas_npy_slice) against DataJoint's NpyRef.
#   scripts/bench_npy.sh [bench_npy_slice.py options]   e.g. --size-mib 64, --record
#   OAS_BENCH_INSTALL=1 scripts/bench_npy.sh            first build and install the release extension
# Starts SeaweedFS (S3) if it is not running, a fresh cluster `npybench` on
# 127.0.0.1:$OAS_BENCH_NPY_PORT (25435) with database npybench, the extension and one store `s3`
# (SeaweedFS, bucket oas-test, location "npybench"). Stops the cluster at the end, and SeaweedFS
# too if this script started it. See bench/README.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_BENCH_NPY_PORT:-25435}"
CLUSTER=npybench
DB=npybench

source "$ROOT/scripts/bench_common.sh"
bench_cluster "$CLUSTER" "$BENCH_PORT"

bench_database "$DB" npybench

log "running bench/bench_npy_slice.py $*"
"$VENV/bin/python" "$ROOT/bench/bench_npy_slice.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" --pg-config "$PG_CONFIG" "$@"
