#!/usr/bin/env bash
# Load (#13): many clients at once on SeaweedFS with the collector looping, then an integrity
# check, and the same load against bytea (bench/load.py says what runs).
#   scripts/load.sh [load.py options]      e.g. --clients 32 --seconds 60, --record
#   OAS_BENCH_INSTALL=1 scripts/load.sh    first build and install the release extension
# Starts SeaweedFS if it is not running, a fresh cluster `load` on 127.0.0.1:$OAS_LOAD_PORT (25435)
# with max_connections 100 and database oas_load, store `s3` at a new location in the bucket
# (removed at the end). Stops the cluster at the end, and SeaweedFS too if this script started it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
BENCH_PORT="${OAS_LOAD_PORT:-25435}"
DB=oas_load
LOCATION="load-$(date +%Y%m%d%H%M%S)"

source "$ROOT/scripts/bench_common.sh"
bench_cluster load "$BENCH_PORT"
bench_database "$DB" "$LOCATION"
remove_location() {
  "$VENV/bin/python" - "$LOCATION" <<'PY' || true
import sys, s3fs, os
fs = s3fs.S3FileSystem(key=os.environ["OAS_S3_ACCESS_KEY"], secret=os.environ["OAS_S3_SECRET_KEY"],
                       client_kwargs={"endpoint_url": os.environ["OAS_S3_ENDPOINT_URL"]})
path = f"{os.environ['OAS_S3_BUCKET']}/{sys.argv[1]}"
if fs.exists(path):
    fs.rm(path, recursive=True)
PY
}
trap 'remove_location; bench_cleanup' EXIT

log "running bench/load.py $*"
"$VENV/bin/python" "$ROOT/bench/load.py" \
  --dsn "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=$DB" "$@"
