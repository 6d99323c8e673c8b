#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then
#   1. format and lint        cargo fmt --check, cargo clippy -D warnings
#   2. unit tests             cargo test -p oas_core (pure logic, no PostgreSQL)
#   3. in-process tests       cargo pgrx test (#[pg_test], rolled back)
#   4. regression suite       pg_regress over tests/regress/ against a live cluster (commit/abort visible)
#   5. outside-client tests   pytest tests/client/ against the cluster, SeaweedFS, Azurite, DataJoint
#   6. front door             scripts/run.sh twice in an empty temporary OAS_RUN_DIR: the demo works
# It starts every server it needs on 127.0.0.1 that is not already serving, and stops at the end
# what it started.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
mkdir -p "$RUN_DIR"
declare -a results=()
failed=0
step() {
  local name="$1"; shift
  log "== $name"
  local t0=$SECONDS
  if "$@"; then results+=("ok    $name ($((SECONDS - t0)) s)")
  else results+=("FAIL  $name ($((SECONDS - t0)) s)"); failed=$((failed + 1)); fi
}
FRONT_DOOR_DIR=""   # the front-door step's OAS_RUN_DIR while it runs
front_door_cleanup() {
  [ -n "$FRONT_DOOR_DIR" ] || return 0
  OAS_RUN_DIR="$FRONT_DOOR_DIR" "$ROOT/scripts/cluster.sh" stop dev >/dev/null 2>&1 || true
  rm -rf "$FRONT_DOOR_DIR"
  FRONT_DOOR_DIR=""
}
started_servers=()
cleanup() {
  "$ROOT/scripts/cluster.sh" stop test >/dev/null 2>&1 || true
  front_door_cleanup
  for s in "${started_servers[@]}"; do "$ROOT/scripts/servers.sh" stop "$s" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --features pg_test -- -D warnings
step "unit tests (oas_core)" cargo test -p oas_core

pgrx_test() {
  rm -rf "$RUN_DIR/pgrx-test"
  install -d -o postgres "$RUN_DIR/pgrx-test"
  cargo pgrx test pg15 --runas postgres --pgdata "$RUN_DIR/pgrx-test/data"
}
step "in-process tests (cargo pgrx test)" pgrx_test

# The tests below use the release build, as users do.
install_extension
"$ROOT/scripts/cluster.sh" destroy test
"$ROOT/scripts/cluster.sh" start test "$TEST_PORT"
for s in seaweedfs azurite; do
  "$ROOT/scripts/servers.sh" check "$s" >/dev/null 2>&1 && continue
  "$ROOT/scripts/servers.sh" start "$s"
  started_servers+=("$s")
done

regress() {
  local store="$RUN_DIR/regress-store" out="$RUN_DIR/regress"
  rm -rf "$store" "$out"; install -d -o postgres "$store"; mkdir -p "$out"
  psql -X -q -h 127.0.0.1 -p "$TEST_PORT" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS oas_regress" -c "CREATE DATABASE oas_regress"
  local tests; tests=$(cd tests/regress/sql && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
  # shellcheck disable=SC2086
  OAS_REGRESS_STORE="$store" "$PGXS_REGRESS" --use-existing --host=127.0.0.1 --port="$TEST_PORT" --user=postgres \
    --inputdir=tests/regress --outputdir="$out" --dbname=oas_regress $tests \
    || { [ -f "$out/regression.diffs" ] && head -150 "$out/regression.diffs"; return 1; }
}
PGXS_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"
step "regression suite (pg_regress tests/regress/)" regress

# Store clients of oas_core against the real servers (skipped in step 2, which has no servers).
store_integration() {
  eval "$("$ROOT/scripts/servers.sh" env)"
  cargo test -p oas_core --test presign --test azure_sas
}
step "store integration tests (oas_core against SeaweedFS, Azurite)" store_integration

pytests() {
  eval "$("$ROOT/scripts/servers.sh" env)"
  OAS_TEST_PORT="$TEST_PORT" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/client "$@"
}
step "outside-client tests (pytest tests/client/)" pytests

# The product as a newcomer starts it: scripts/run.sh in an empty folder of its own, on a port of
# its own (OAS_DEV_PORT, or the next free one), twice (the second run must change nothing).
# demo_ok LOG: the demo's lines that prove a put/get round trip through the default store.
demo_ok() {
  local log="$1" paths
  paths=$(grep -E '^ +[12] \| _hash/public/[a-z2-7]{26} +\| 5 *$' "$log" | awk '{print $3}' | sort -u)
  [ "$(grep -cE '^ +[12] \| _hash/public/' "$log")" = 2 ] && [ "$(wc -l <<<"$paths")" = 1 ] \
    || { echo "front door: expected two rows sharing one 5-byte object" >&2; return 1; }
  [ "$(grep -cE '^ +[12] \| hello *$' "$log")" = 2 ] || { echo "front door: rows do not read back as hello" >&2; return 1; }
  [ "$(grep -cE '^ [a-z_]+ +\| t +\|' "$log")" = 8 ] && ! grep -qE '^ [a-z_]+ +\| f +\|' "$log" \
    || { echo "front door: oas_store_verify('main') did not pass all 8 steps" >&2; return 1; }
  grep -q "^pg_oas is running\." "$log" || { echo "front door: no closing message" >&2; return 1; }
}
front_door() {
  local port="$DEV_PORT" round log
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  FRONT_DOOR_DIR="$(mktemp -d)"
  for round in 1 2; do
    log="$RUN_DIR/front-door-$round.log"
    OAS_RUN_DIR="$FRONT_DOOR_DIR" OAS_DEV_PORT="$port" OAS_SKIP_SETUP=1 "$ROOT/scripts/run.sh" >"$log" 2>&1 \
      || { tail -30 "$log"; echo "front door: scripts/run.sh failed (round $round, log: $log)" >&2; front_door_cleanup; return 1; }
    demo_ok "$log" || { cat "$log"; front_door_cleanup; return 1; }
  done
  grep -q "installed and up to date" "$RUN_DIR/front-door-2.log" \
    || { echo "front door: the second run installed again" >&2; front_door_cleanup; return 1; }
  front_door_cleanup
}
step "front door (scripts/run.sh twice in an empty OAS_RUN_DIR)" front_door

log "== summary"
printf '  %s\n' "${results[@]}"
passed=$(( ${#results[@]} - failed ))
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
