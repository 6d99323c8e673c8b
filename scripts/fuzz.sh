#!/usr/bin/env bash
# Fuzz the parsers and path builders of oas_core (cargo fuzz, libFuzzer), each target for a
# bounded time. Separate from the test suite: crashes it finds become #[test]s in the module they
# concern. Targets (core/fuzz/fuzz_targets/):
#   npy_header   .npy header parser and writer          (core/src/npy/header.rs)
#   npy_slice    slice parsing, planning, assembly      (core/src/npy/)
#   reference    JSON references: HashRef, ObjectRef    (core/src/reference/, codec.rs)
#   paths        hash and schema-addressed paths, primary-key rendering, section and owner
#                rules, trash keys                      (core/src/path.rs, objpath.rs, gc/)
#   blob         DataJoint blobs: unpack, pack, round trip (core/src/blob/)
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 60 s per target, every target
# Installs the nightly toolchain and cargo-fuzz when missing. Seeds are core/fuzz/corpus/<target>/
# (checked in, read only); what a run discovers goes to core/fuzz/work/<target>/ and crashes to
# core/fuzz/artifacts/<target>/ (both ignored by git). Exits non-zero when a target fails.
set -euo pipefail
source "$(dirname "$0")/env.sh"
SECONDS_PER_TARGET="${1:-60}"
shift || true
FUZZ_DIR="$ROOT/core/fuzz"

if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$ROOT/core"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
log "building ${targets[*]}"
cargo +nightly fuzz build

failed=0
declare -a results=()
for t in "${targets[@]}"; do
  mkdir -p "$FUZZ_DIR/work/$t" "$FUZZ_DIR/artifacts/$t"
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192
        -print_final_stats=1)
  [ -f "$FUZZ_DIR/dict/$t.dict" ] && args+=(-dict="$FUZZ_DIR/dict/$t.dict")
  log "== $t for ${SECONDS_PER_TARGET} s"
  log_file="$FUZZ_DIR/work/$t.log"
  set +e
  cargo +nightly fuzz run "$t" "$FUZZ_DIR/work/$t" "$FUZZ_DIR/corpus/$t" -- "${args[@]}" \
    2>&1 | tee "$log_file" | grep -E '^(#[0-9]+ +DONE|==[0-9]+== ERROR|SUMMARY|thread .* panicked)'
  status="${PIPESTATUS[0]}"
  set -e
  if [ "$status" -eq 0 ]; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -1)"
    results+=("ok    $t (${SECONDS_PER_TARGET} s, ${runs:-?} runs)")
  else
    results+=("FAIL  $t: see $log_file and $FUZZ_DIR/artifacts/$t/")
    failed=$((failed + 1))
  fi
done
printf '%s\n' "${results[@]}"
exit "$failed"
