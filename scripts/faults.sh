#!/usr/bin/env bash
# The heavier fault cases (pytest marker `faults`): kill -9 at random moments and immediate
# shutdowns during longer stress runs, each in a PostgreSQL cluster of its own. The extension
# must be installed (scripts/test.sh or scripts/setup.sh does it); SeaweedFS is started if it
# is not running. OAS_CRASH_STRESS_S sets the seconds of writing per round (default 30).
#   scripts/faults.sh [PYTEST ARGS...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
eval "$("$ROOT/scripts/servers.sh" env)"
OAS_CRASH_STRESS_S="${OAS_CRASH_STRESS_S:-30}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m faults \
  tests/client/test_crashes.py "$@"
