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

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -v endpoint="$OAS_S3_ENDPOINT" -v bucket="$OAS_S3_BUCKET" \
  -v ak="$OAS_S3_ACCESS_KEY" -v sk="$OAS_S3_SECRET_KEY" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_oas;
SELECT oas.oas_store_create('s3', jsonb_build_object(
  'protocol', 's3', 'endpoint', :'endpoint', 'bucket', :'bucket', 'location', 'npybench',
  'secure', false, 'access_key', :'ak', 'secret_key', :'sk'), true);
SQL

log "running bench/bench_npy_slice.py $*"
"$VENV/bin/python" "$ROOT/bench/bench_npy_slice.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" --pg-config "$PG_CONFIG" "$@"
