# Sourced by the project's scripts: paths and ports in one place.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
# OAS_PG_CONFIG chooses another PostgreSQL 15 installation (a relocated copy, say).
PG_CONFIG="${OAS_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
PGBIN="$("$PG_CONFIG" --bindir)"
RUN_DIR="${OAS_RUN_DIR:-$ROOT/.run}"
VENV="$ROOT/.tools/venv"
DEV_PORT="${OAS_DEV_PORT:-25432}"
TEST_PORT="${OAS_TEST_PORT:-25433}"
log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0" .sh)" "$*"; }

# What an installation of this checkout depends on: the sources and the build settings.
source_fingerprint() {
  local p paths=()
  for p in src core/src sql build.rs Cargo.toml Cargo.lock core/Cargo.toml pg_oas.control; do
    [ -e "$ROOT/$p" ] && paths+=("$p")
  done
  (cd "$ROOT" && find "${paths[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}
# The extension's files as installed in $PG_CONFIG's PostgreSQL (library, control, SQL scripts).
installed_fingerprint() {
  local lib share
  lib="$("$PG_CONFIG" --pkglibdir)"; share="$("$PG_CONFIG" --sharedir)/extension"
  [ -f "$lib/pg_oas.so" ] || return 1
  cat "$lib/pg_oas.so" "$share"/pg_oas.control "$share"/pg_oas--*.sql 2>/dev/null | sha256sum | cut -c1-64
}
# Builds and installs the release extension into $PG_CONFIG's PostgreSQL, unless that installation
# already holds this very build: a stamp in target/ pairs the sources' fingerprint with the
# installed files' (another checkout's install, or a source change, makes it stale). Compiler
# output goes to $RUN_DIR/install.log; its tail is shown on failure.
install_extension() {
  local stamp want
  mkdir -p "$RUN_DIR" "$ROOT/target"
  stamp="$ROOT/target/pg_oas-installed-$(printf '%s' "$PG_CONFIG" | sha256sum | cut -c1-16)"
  want="$(source_fingerprint)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want $(installed_fingerprint || echo none)" ]; then
    log "pg_oas (release) is installed and up to date"
    return 0
  fi
  log "building and installing pg_oas (release; log: $RUN_DIR/install.log)"
  if ! (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG") >"$RUN_DIR/install.log" 2>&1; then
    tail -40 "$RUN_DIR/install.log" >&2
    return 1
  fi
  echo "$want $(installed_fingerprint)" >"$stamp"
}
