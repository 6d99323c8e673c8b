#!/usr/bin/env bash
# The fault cases: the heavier ones (pytest marker `faults`: kill -9 at random moments and
# immediate shutdowns during longer stress runs, each in a PostgreSQL cluster of its own) and a
# SeaweedFS cluster losing volume servers under load (marker `cluster`; scripts/test.sh runs it too). The extension
# must be installed (scripts/test.sh or scripts/setup.sh does it); SeaweedFS and the test cluster
# (the SeaweedFS-cluster case connects to it) are started if they are not running. OAS_CRASH_STRESS_S sets the seconds of writing per round (default 30).
#   scripts/faults.sh [PYTEST ARGS...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
eval "$("$ROOT/scripts/servers.sh" env)"
"$ROOT/scripts/cluster.sh" start test "$TEST_PORT"
OAS_CRASH_STRESS_S="${OAS_CRASH_STRESS_S:-30}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "faults or cluster" \
  tests/client/test_crashes.py tests/client/test_store_cluster.py "$@"
