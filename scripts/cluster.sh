#!/usr/bin/env bash
# A local PostgreSQL 15 cluster for pg_oas, run by the `postgres` OS user (initdb refuses root).
#   scripts/cluster.sh start NAME PORT   create (first time) and start .run/NAME on 127.0.0.1:PORT
#   scripts/cluster.sh stop NAME         stop it (fast shutdown)
#   scripts/cluster.sh destroy NAME      stop it and delete its data
# The socket directory is .run/NAME/sock; the superuser is `postgres`, trust auth on loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${OAS_RUN_DIR:-$ROOT/.run}"
BIN="$("${OAS_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)"
cmd="${1:?usage: cluster.sh start|stop|destroy NAME [PORT]}"
name="${2:?cluster name}"
dir="$RUN_DIR/$name"
as_pg() { sudo -u postgres -- "$@"; }

case "$cmd" in
  start)
    port="${3:?port}"
    mkdir -p "$RUN_DIR"
    chmod 755 "$RUN_DIR"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      rm -rf "$dir"
      install -d -o postgres -g postgres -m 700 "$dir" "$dir/data"
      install -d -o postgres -g postgres -m 755 "$dir/sock"
      as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
      cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 100
shared_buffers = 256MB
fsync = on
log_min_messages = warning
CONF
    fi
    chmod 755 "$dir"
    if as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      exit 0
    fi
    # A port in Linux's ephemeral range (32768-60999) can be held for a moment by an outgoing
    # connection ("could not create any TCP/IP sockets"; the default ports 2543x lie below it,
    # after SeaweedFS's client took 55436 once): try again a few times then.
    for attempt in 1 2 3 4 5; do
      # -p: a stopped cluster made with another port (an older checkout) starts on PORT.
      if as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null; then
        exit 0
      fi
      tail -n 3 "$dir/server.log" | grep -q "could not create any TCP/IP sockets" || break
      echo "cluster.sh: port $port is busy, trying again ($attempt)" >&2
      sleep 2
    done
    exit 1
    ;;
  stop)
    if [ -f "$dir/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  destroy)
    "$0" stop "$name"
    rm -rf "$dir"
    ;;
  *) echo "usage: cluster.sh start|stop|destroy NAME [PORT]" >&2; exit 2 ;;
esac
