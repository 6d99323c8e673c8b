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
