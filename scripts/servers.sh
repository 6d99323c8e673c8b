#!/usr/bin/env bash
# Local object-store servers for pg_oas tests and benchmarks. Everything binds to 127.0.0.1 only.
#
#   scripts/servers.sh start  [seaweedfs|azurite|all]   start (idempotent: a healthy server is left alone)
#   scripts/servers.sh stop   [seaweedfs|azurite|all]   stop via pid files
#   scripts/servers.sh restart [seaweedfs|azurite|all]
#   scripts/servers.sh status [seaweedfs|azurite|all]   exit 0 only if all named servers are up and healthy
#   scripts/servers.sh check  [seaweedfs|azurite|all]   exit 0 if they answer as ours do, whoever started them
#   scripts/servers.sh env                              print `export VAR=...` lines; use: eval "$(scripts/servers.sh env)"
#
# SeaweedFS (`weed mini`) serves S3 on 127.0.0.1:8333 with signature checking on (one admin identity),
# and bucket oas-test created on start. Azurite serves Azure blob on 127.0.0.1:10000 (well-known
# devstoreaccount1 key), container oas-test created on start. Each start begins with an EMPTY data dir.
# State, logs and pid files live under ${OAS_RUN_DIR:-<repo>/.run}/<name>/. Ports: OAS_S3_PORT (8333),
# OAS_AZ_PORT (10000).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${OAS_RUN_DIR:-$ROOT/.run}"
WEED="${OAS_WEED:-$ROOT/.tools/venv/bin/weed}"
AZURITE="${OAS_AZURITE:-$ROOT/.tools/node/node_modules/.bin/azurite-blob}"
START_TIMEOUT="${OAS_START_TIMEOUT:-60}"   # seconds to wait for a server to become ready

HOST=127.0.0.1
# OAS_S3_PORT / OAS_AZ_PORT run a second pair beside the first (with its own OAS_RUN_DIR). Every
# other port of `weed mini` (master 9333, volume 9340, filer 8888, admin 23646, each with its gRPC
# port 10000 above) moves by as much as the S3 port does.
S3_PORT="${OAS_S3_PORT:-8333}"
WEED_SHIFT=$((S3_PORT - 8333))
S3_ACCESS_KEY=oastestkey
S3_SECRET_KEY=oastestsecret-0123456789
S3_REGION=us-east-1
BUCKET=oas-test
AZ_PORT="${OAS_AZ_PORT:-10000}"
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_CONTAINER=oas-test
AZ_API_VERSION=2021-08-06
AZ_BLOB_ENDPOINT="http://$HOST:$AZ_PORT/$AZ_ACCOUNT"
AZ_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$AZ_ACCOUNT;AccountKey=$AZ_KEY;BlobEndpoint=$AZ_BLOB_ENDPOINT;"

SERVERS=(seaweedfs azurite)

log() { printf '[servers] %s\n' "$*" >&2; }
die() { printf '[servers] ERROR: %s\n' "$*" >&2; exit 1; }

dir_of() { printf '%s/%s' "$RUN_DIR" "$1"; }
pidfile_of() { printf '%s/%s.pid' "$(dir_of "$1")" "$1"; }
logfile_of() { printf '%s/%s.log' "$(dir_of "$1")" "$1"; }
port_of() { case "$1" in seaweedfs) echo "$S3_PORT" ;; azurite) echo "$AZ_PORT" ;; esac; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# pid from the pid file if that process is alive and really is our server (guards against pid reuse).
live_pid() {
  local name="$1" pf pid
  pf="$(pidfile_of "$name")"
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  case "$name" in
    seaweedfs) tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'weed.* mini' || return 1 ;;
    azurite) tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'azurite' || return 1 ;;
  esac
  echo "$pid"
}

# Is anything accepting TCP connections on 127.0.0.1:$1?
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ---------------------------------------------------------------- S3 (SeaweedFS)
# curl 7.88's --aws-sigv4 signs the payload hash but does not send x-amz-content-sha256, which S3
# servers require; so it is passed explicitly (the requests here have no body).
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
# s3_status METHOD PATH [curl args...] -> prints the HTTP status of a SigV4-signed request.
s3_status() {
  local method="$1" path="$2" m; shift 2
  if [ "$method" = HEAD ]; then m=(--head); else m=(-X "$method"); fi
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${m[@]}" \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" \
    "$@" "http://$HOST:$S3_PORT$path" || true
}

seaweedfs_healthy() { [ "$(s3_status HEAD "/$BUCKET")" = 200 ]; }
seaweedfs_tool() { [ -x "$WEED" ] || die "weed not found at $WEED (run scripts/setup.sh)"; }

# Static identity => SeaweedFS verifies SigV4 (and V2) signatures; anonymous requests are denied.
seaweedfs_prepare() {
  rm -rf "$1/logs"
  mkdir -p "$1/logs"
  cat >"$1/s3.json" <<EOF
{
  "identities": [
    {
      "name": "oastest",
      "credentials": [ { "accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY" } ],
      "actions": [ "Admin", "Read", "Write", "List", "Tagging" ]
    }
  ]
}
EOF
}

# No outbound traffic: telemetry off, webdav / admin UI / iceberg / lance endpoints disabled.
# AWS_* env vars would add a 2nd identity.
seaweedfs_exec() {
  local dir="$1" sock_args=()
  # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our dir when the path fits.
  if [ "${#dir}" -lt 90 ]; then
    sock_args=(-filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock")
  fi
  exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u S3_BUCKET -u S3_TABLE_BUCKET \
    setsid "$WEED" -logdir="$dir/logs" mini \
      -dir="$dir/data" \
      -ip="$HOST" -ip.bind="$HOST" \
      -s3.port="$S3_PORT" \
      -master.port=$((9333 + WEED_SHIFT)) -volume.port=$((9340 + WEED_SHIFT)) \
      -filer.port=$((8888 + WEED_SHIFT)) -admin.port=$((23646 + WEED_SHIFT)) \
      -s3.config="$dir/s3.json" \
      -s3.port.iceberg=0 -s3.port.lance=0 \
      -webdav=false -admin.ui=false \
      -master.telemetry=false -master.telemetry.url="http://$HOST:1/" \
      "${sock_args[@]}"
}

seaweedfs_up() { s3_status GET /; }

seaweedfs_init() {
  local st
  st="$(s3_status PUT "/$BUCKET")"
  case "$st" in
    200 | 409) ;;
    *) echo "creating bucket $BUCKET failed: HTTP $st"; return 1 ;;
  esac
  seaweedfs_healthy || { echo "bucket $BUCKET not visible after create"; return 1; }
}

seaweedfs_where() { echo "S3 http://$HOST:$S3_PORT, bucket $BUCKET"; }

# ---------------------------------------------------------------- Azure blob (Azurite)
# az_status METHOD RESOURCE_PATH QUERY -> HTTP status of a SharedKey-signed, empty-body request.
# RESOURCE_PATH is the path after the account, e.g. "/oas-test"; QUERY e.g. "restype=container".
az_status() {
  local method="$1" rpath="$2" query="$3" date canon_q sts hexkey sig url
  date="$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')"
  canon_q=""
  if [ -n "$query" ]; then
    while IFS= read -r kv; do canon_q+=$'\n'"${kv%%=*}:${kv#*=}"; done < <(tr '&' '\n' <<<"$query" | LC_ALL=C sort)
  fi
  # VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since, If-Match,
  # If-None-Match, If-Unmodified-Since, Range, canonical headers, canonical resource (+ query).
  sts="$(printf '%s\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:%s\nx-ms-version:%s\n/%s/%s%s' \
    "$method" "$date" "$AZ_API_VERSION" "$AZ_ACCOUNT" "$AZ_ACCOUNT$rpath" "$canon_q")"
  hexkey="$(printf '%s' "$AZ_KEY" | base64 -d | xxd -p -c 256)"
  sig="$(printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)"
  url="$AZ_BLOB_ENDPOINT$rpath"
  [ -n "$query" ] && url="$url?$query"
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$method" \
    -H "x-ms-date: $date" -H "x-ms-version: $AZ_API_VERSION" -H "Content-Length: 0" \
    -H "Authorization: SharedKey $AZ_ACCOUNT:$sig" "$url" || true
}

azurite_healthy() { [ "$(az_status GET "/$AZ_CONTAINER" "restype=container")" = 200 ]; }
azurite_tool() {
  [ -x "$AZURITE" ] || die "azurite-blob not found at $AZURITE (run scripts/setup.sh)"
  command -v node >/dev/null || die "node not on PATH"
}
azurite_prepare() { :; }
azurite_exec() {
  exec setsid "$AZURITE" --blobHost "$HOST" --blobPort "$AZ_PORT" --location "$1/data" \
    --skipApiVersionCheck --loose --disableTelemetry
}
azurite_up() { az_status GET "" "comp=list"; }
azurite_init() {
  local st
  st="$(az_status PUT "/$AZ_CONTAINER" "restype=container")"
  case "$st" in
    201 | 409) ;;
    *) echo "creating container $AZ_CONTAINER failed: HTTP $st"; return 1 ;;
  esac
}
azurite_where() { echo "blob $AZ_BLOB_ENDPOINT, container $AZ_CONTAINER"; }

# ---------------------------------------------------------------- generic
# start_one NAME: one skeleton for every server. Each supplies NAME_healthy, NAME_tool (is it
# installed?), NAME_prepare DIR (its config files), NAME_exec DIR (becomes the server, in DIR so
# that no stray config file there is picked up), NAME_up (HTTP status of a readiness probe),
# NAME_init (creates the bucket or container; prints why it failed) and NAME_where (for the log).
start_one() {
  local name="$1" dir pf lf pid t0 st why
  dir="$(dir_of "$name")"; pf="$(pidfile_of "$name")"; lf="$(logfile_of "$name")"
  if pid="$(live_pid "$name")"; then
    if "${name}_healthy"; then log "$name already running (pid $pid) and healthy"; return 0; fi
    log "$name pid $pid is running but not healthy; restarting it"
    stop_one "$name"
  fi
  "${name}_tool"
  port_open "$(port_of "$name")" && die "port $HOST:$(port_of "$name") is already in use by a process we did not start"

  mkdir -p "$dir"
  rm -rf "$dir/data"
  mkdir -p "$dir/data"
  : >"$lf"
  "${name}_prepare" "$dir"
  t0="$(now)"
  (
    cd "$dir"
    "${name}_exec" "$dir" </dev/null >>"$lf" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$pf"

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pf"
      tail -n 40 "$lf" >&2 || true
      die "$name exited during startup (log: $lf)"
    fi
    st="$("${name}_up")"
    [ "$st" = 200 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$lf" >&2 || true
      stop_one "$name" || true
      die "$name not ready after ${START_TIMEOUT}s (last status: $st; log: $lf)"
    fi
    sleep 0.25
  done
  why="$("${name}_init")" || { stop_one "$name" || true; die "$why"; }
  log "$name ready in $(elapsed "$t0")s (pid $pid, $("${name}_where"))"
}

stop_one() {
  local name="$1" pf pid
  pf="$(pidfile_of "$name")"
  if ! pid="$(live_pid "$name")"; then
    rm -f "$pf"
    log "$name not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 80); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pf"
  log "$name stopped (was pid $pid)"
}

status_one() {
  local name="$1" pid healthy=no
  if pid="$(live_pid "$name")"; then
    "${name}_healthy" && healthy=yes
    printf '%-10s running  pid=%-8s port=%s healthy=%s\n' "$name" "$pid" "$(port_of "$name")" "$healthy"
    [ "$healthy" = yes ]
  else
    printf '%-10s stopped\n' "$name"
    return 1
  fi
}

print_env() {
  cat <<EOF
export OAS_S3_ENDPOINT='$HOST:$S3_PORT'
export OAS_S3_ENDPOINT_URL='http://$HOST:$S3_PORT'
export OAS_S3_REGION='$S3_REGION'
export OAS_S3_ACCESS_KEY='$S3_ACCESS_KEY'
export OAS_S3_SECRET_KEY='$S3_SECRET_KEY'
export OAS_S3_BUCKET='$BUCKET'
export OAS_S3_SECURE='false'
export OAS_AZURE_ACCOUNT='$AZ_ACCOUNT'
export OAS_AZURE_ACCOUNT_KEY='$AZ_KEY'
export OAS_AZURE_BLOB_ENDPOINT='$AZ_BLOB_ENDPOINT'
export OAS_AZURE_CONTAINER='$AZ_CONTAINER'
export OAS_AZURE_CONNECTION_STRING='$AZ_CONNECTION_STRING'
EOF
}

# names ARG -> the server names selected by ARG (default all)
names() {
  case "${1:-all}" in
    all) printf '%s\n' "${SERVERS[@]}" ;;
    seaweedfs | azurite) echo "$1" ;;
    *) die "unknown server '$1' (expected seaweedfs, azurite or all)" ;;
  esac
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd="${1:-}" n list rc=0
  [ $# -gt 0 ] && shift
  case "$cmd" in
    start | stop | restart | status | check) list="$(names "${1:-all}")" || exit 2 ;;
    env) print_env; return 0 ;;
    *) usage ;;
  esac
  for n in $list; do
    case "$cmd" in
      start) start_one "$n" ;;
      stop) stop_one "$n" ;;
      restart) stop_one "$n"; start_one "$n" ;;
      status) status_one "$n" || rc=3 ;;
      check) "${n}_healthy" || rc=3 ;;
    esac
  done
  return "$rc"
}

# Sourced (scripts/seaweed_cluster.sh does, for the S3 helpers and the identity file): define only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
