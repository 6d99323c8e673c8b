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
