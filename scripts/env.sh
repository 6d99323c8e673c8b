# Sourced by the project's scripts: paths and ports in one place.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGBIN=/usr/lib/postgresql/15/bin
RUN_DIR="${OAS_RUN_DIR:-$ROOT/.run}"
VENV="$ROOT/.tools/venv"
DEV_PORT="${OAS_DEV_PORT:-25432}"
TEST_PORT="${OAS_TEST_PORT:-25433}"
log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0" .sh)" "$*"; }
