#!/usr/bin/env bash
# A SeaweedFS cluster on this machine, for fault tests: one master (replication 001: every object
# has a second copy on another volume server of the same rack), three volume servers, and a filer
# with the S3 gateway. Everything binds to 127.0.0.1, on ports 19300-19399 (the shared single node
# of scripts/servers.sh uses 8333, 8888, 9333, ...), with the same credentials scheme as that node.
#
#   scripts/seaweed_cluster.sh start            start all (an old cluster in the dir is stopped and wiped)
#   scripts/seaweed_cluster.sh stop             stop all, remove the data dir
#   scripts/seaweed_cluster.sh status           exit 0 if the S3 gateway answers and the bucket exists
#   scripts/seaweed_cluster.sh kill-volume N    kill -9 volume server N (0, 1, 2)
#   scripts/seaweed_cluster.sh start-volume N   start volume server N again (same dir and port)
#   scripts/seaweed_cluster.sh env              `export OAS_CLUSTER_*=...` lines (the credentials are
#                                               the single node's: scripts/servers.sh env)
#
# OAS_CLUSTER_BASE (19300) moves every port (ours are BASE+50 to BASE+63). State, logs and pid files live under
# ${OAS_RUN_DIR:-<repo>/.run}/seaweed-cluster/.
set -euo pipefail

# The single node's helpers: s3_status (a signed request to $S3_PORT), seaweedfs_prepare (the
# identity file), port_open, ROOT, RUN_DIR, WEED, HOST and the credentials.
# shellcheck source=scripts/servers.sh
source "$(dirname "$0")/servers.sh"
DIR="$RUN_DIR/seaweed-cluster"
START_TIMEOUT="${OAS_START_TIMEOUT:-90}"
BASE="${OAS_CLUSTER_BASE:-19300}"
# The shared single node's gRPC ports are 10000 above its own (19333, 19340, 18888, 18333): ours
# start at BASE + 50, each with its gRPC port one above.
MASTER_PORT=$((BASE + 50))
volume_port() { echo $((BASE + 52 + 2 * $1)); }
FILER_PORT=$((BASE + 60))
S3_PORT=$((BASE + 62))
# How other servers name the master: host:port.grpcPort (else they assume port + 10000).
MASTER="$HOST:$MASTER_PORT.$((MASTER_PORT + 1))"
VOLUMES=3
BUCKET=oas-cluster

log() { printf '[seaweed-cluster] %s\n' "$*" >&2; }
die() { printf '[seaweed-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$WEED" ] || die "weed not found at $WEED (run scripts/setup.sh)"

pidfile() { echo "$DIR/$1.pid"; }

# The pid in NAME's pid file, if that process is alive and is a weed of our cluster dir.
live_pid() {
  local pf pid
  pf="$(pidfile "$1")"
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "weed.*$DIR" || return 1
  echo "$pid"
}

# run NAME ARGS...: start one weed process in the background, logs in $DIR/NAME.log.
run() {
  local name="$1"; shift
  mkdir -p "$DIR/logs/$name"
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u S3_BUCKET \
    setsid "$WEED" -logdir="$DIR/logs/$name" "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# wait_for WHAT CMD...: poll CMD every 0.3 s for at most START_TIMEOUT seconds.
wait_for() {
  local what="$1" end=$((SECONDS + START_TIMEOUT)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || die "$what not ready after ${START_TIMEOUT}s (logs in $DIR)"
    sleep 0.3
  done
}

start_volume() {
  local i="$1" port
  port="$(volume_port "$i")"
  if live_pid "volume$i" >/dev/null; then return 0; fi
  mkdir -p "$DIR/volume$i"
  run "volume$i" volume -dir="$DIR/volume$i" -ip="$HOST" -ip.bind="$HOST" \
    -port="$port" -port.grpc=$((port + 1)) -master="$MASTER" \
    -dataCenter=dc1 -rack=rack1 -max=30 -minFreeSpace=1 -preStopSeconds=0
  wait_for "volume server $i" port_open "$port"
}

# Every volume server is registered with the master.
volumes_registered() {
  local n
  n="$(curl -s --max-time 3 "http://$HOST:$MASTER_PORT/dir/status" | grep -o '"Url":"[^"]*"' | sort -u | wc -l)"
  [ "$n" -ge "$VOLUMES" ]
}

start() {
  stop 2>/dev/null || true
  # Whatever fails below (die exits), nothing started stays behind (the logs do).
  trap 'stop_all' EXIT
  mkdir -p "$DIR/master" "$DIR/filer"
  seaweedfs_prepare "$DIR"
  local t0=$SECONDS
  run master master -mdir="$DIR/master" -ip="$HOST" -ip.bind="$HOST" \
    -port="$MASTER_PORT" -port.grpc=$((MASTER_PORT + 1)) -defaultReplication=001 \
    -volumeSizeLimitMB=64 -telemetry=false -telemetry.url="http://$HOST:1/"
  wait_for master port_open "$MASTER_PORT"
  for i in $(seq 0 $((VOLUMES - 1))); do start_volume "$i"; done
  wait_for "volume registration" volumes_registered
  run filer filer -defaultStoreDir="$DIR/filer" -ip="$HOST" -ip.bind="$HOST" \
    -port="$FILER_PORT" -port.grpc=$((FILER_PORT + 1)) -master="$MASTER" \
    -defaultReplicaPlacement=001 -webdav=false
  wait_for filer port_open "$FILER_PORT"
  run s3 s3 -filer="$HOST:$FILER_PORT.$((FILER_PORT + 1))" -ip.bind="$HOST" \
    -port="$S3_PORT" -port.grpc=$((S3_PORT + 1)) -config="$DIR/s3.json" \
    -port.iceberg=0 -port.lance=0
  wait_for "S3 gateway" port_open "$S3_PORT"
  local end=$((SECONDS + START_TIMEOUT)) st
  while :; do
    st="$(s3_status PUT "/$BUCKET")"
    case "$st" in 200 | 409) break ;; esac
    [ "$SECONDS" -lt "$end" ] || die "creating bucket $BUCKET failed: HTTP $st (logs in $DIR)"
    sleep 0.5
  done
  wait_for "bucket $BUCKET" status
  trap - EXIT
  log "up in $((SECONDS - t0))s: S3 http://$HOST:$S3_PORT, bucket $BUCKET, master $HOST:$MASTER_PORT"
}

# stop_pid NAME SIGNAL: signal NAME's process group, wait up to 10 s, then KILL.
stop_pid() {
  local name="$1" sig="$2" pid
  pid="$(live_pid "$name")" || { rm -f "$(pidfile "$name")"; return 0; }
  kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$(pidfile "$name")"
}

# Stop every process (TERM to all at once, KILL to what is left after 3 s: the data is thrown away);
# the dir (logs) stays.
stop_all() {
  local name pid pids=() end
  for name in s3 filer $(seq -f 'volume%g' 0 $((VOLUMES - 1))) master; do
    if pid="$(live_pid "$name")"; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$(pidfile "$name")"
  done
  end=$((SECONDS + 3))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
}

stop() {
  stop_all
  rm -rf "$DIR"
}

status() { seaweedfs_healthy; }

env_lines() {
  cat <<EOF
export OAS_CLUSTER_S3_ENDPOINT='$HOST:$S3_PORT'
export OAS_CLUSTER_S3_BUCKET='$BUCKET'
export OAS_CLUSTER_MASTER='$HOST:$MASTER_PORT'
export OAS_CLUSTER_VOLUME_PORTS='$(for i in $(seq 0 $((VOLUMES - 1))); do printf '%s ' "$(volume_port "$i")"; done)'
EOF
}

volume_arg() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -lt "$VOLUMES" ] || die "volume server number 0..$((VOLUMES - 1)) expected"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill-volume) volume_arg "${2:-}"; stop_pid "volume$2" KILL ;;
  start-volume) volume_arg "${2:-}"; start_volume "$2" ;;
  env) env_lines ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
