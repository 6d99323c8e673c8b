# Sourced by the benchmark scripts: installs what is missing, optionally installs the release
# build (OAS_BENCH_INSTALL=1), starts SeaweedFS if it is not running (and stops it at the end
# only then), and starts a fresh cluster: bench_cluster NAME PORT. OAS_SERVERS_RUN_DIR points the
# servers' state at another checkout's .run (to share the SeaweedFS that checkout runs).
"$ROOT/scripts/setup.sh"
if [ "${OAS_BENCH_INSTALL:-0}" = 1 ]; then install_extension; fi
servers() { OAS_RUN_DIR="${OAS_SERVERS_RUN_DIR:-$RUN_DIR}" "$ROOT/scripts/servers.sh" "$@"; }
weed_was_running=no
servers status seaweedfs >/dev/null 2>&1 && weed_was_running=yes
BENCH_CLUSTER=""
bench_cleanup() {
  if [ -n "$BENCH_CLUSTER" ]; then
    # A fast shutdown can hang when a backend has just crashed (e.g. pg_oas.so replaced under it
    # by a reinstall); then stop it immediately.
    "$ROOT/scripts/cluster.sh" stop "$BENCH_CLUSTER" ||
      sudo -u postgres "$PGBIN/pg_ctl" -D "$RUN_DIR/$BENCH_CLUSTER/data" -m immediate -w stop >/dev/null || true
  fi
  if [ "$weed_was_running" = no ]; then servers stop seaweedfs || true; fi
}
trap bench_cleanup EXIT
servers start seaweedfs
eval "$(servers env)"

bench_cluster() {
  BENCH_CLUSTER="$1"
  log "fresh cluster $1 on 127.0.0.1:$2"
  "$ROOT/scripts/cluster.sh" destroy "$1"
  "$ROOT/scripts/cluster.sh" start "$1" "$2"
}

# bench_database DB S3_LOCATION [FILE_STORE_DIR [EXTENSION]]: database DB on the bench cluster
# with pg_oas (and EXTENSION), a store `s3` (SeaweedFS, at S3_LOCATION in the bucket) and, given
# FILE_STORE_DIR, a store `file` there; `file` is the default store when there is one, else `s3`.
bench_database() {
  local db="$1" loc="$2" store="${3:-}" extension="${4:-}"
  local psql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres)
  "${psql[@]}" -d postgres -c "CREATE DATABASE $db"
  "${psql[@]}" -d "$db" -v store="$store" -v endpoint="$OAS_S3_ENDPOINT" -v bucket="$OAS_S3_BUCKET" \
    -v ak="$OAS_S3_ACCESS_KEY" -v sk="$OAS_S3_SECRET_KEY" -v loc="$loc" -v extension="$extension" \
    -v has_file="$([ -n "$store" ] && echo on || echo off)" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_oas;
SELECT :'extension' <> '' AS has_extension \gset
\if :has_extension
CREATE EXTENSION :"extension";
\endif
\if :has_file
SELECT oas.oas_store_create('file', jsonb_build_object('protocol', 'file', 'location', :'store'), true);
\endif
SELECT oas.oas_store_create('s3', jsonb_build_object(
  'protocol', 's3', 'endpoint', :'endpoint', 'bucket', :'bucket', 'location', :'loc',
  'secure', false, 'access_key', :'ak', 'secret_key', :'sk'), NOT :'has_file'::boolean);
SQL
}
