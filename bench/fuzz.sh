#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (config, resp, rewrite, values) for a given time each,
# at the lowest CPU priority, and records executions and crashes.
#
# Usage: bench/fuzz.sh TARGET|all SECONDS
# Needs: a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Not part of CI: the fuzz crate has its own workspace.
#
# Before each run the seed corpus is rebuilt from the tests and tunnel.conf.example
# (bench/fuzz-seeds.py); the corpus grows in fuzz/corpus/TARGET across runs. A crash does not
# end the run: its input is kept in fuzz/artifacts/TARGET/ and fuzzing goes on for the time
# left. Every run appends a line to fuzz/runs.tsv:
#   date  target  seconds  executions  crashes  artifacts
# Reproduce a crash: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS="config resp rewrite values"
[ $# -eq 2 ] || { echo "usage: $0 TARGET|all SECONDS (targets: $TARGETS)" >&2; exit 2; }
WHICH=$1
SECONDS_EACH=$2
[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || { echo "SECONDS must be a positive whole number, not '$SECONDS_EACH'" >&2; exit 2; }
if [ "$WHICH" = all ]; then
  set -- $TARGETS
else
  [[ " $TARGETS " == *" $WHICH "* ]] || { echo "unknown target '$WHICH'; use one of: $TARGETS, all" >&2; exit 2; }
  set -- "$WHICH"
fi
cargo +nightly fuzz --version >/dev/null 2>&1 ||
  { echo "cargo-fuzz on a nightly toolchain is needed: cargo install cargo-fuzz" >&2; exit 2; }

# Release with debug assertions (overflow checks on). No sanitizer: the parsers are safe Rust,
# and without one each target runs several times faster.
FLAGS=(--release --debug-assertions --sanitizer none)
python3 bench/fuzz-seeds.py
nice -n 19 cargo +nightly fuzz build "${FLAGS[@]}" "$@"

run() {
  local target=$1 left=$SECONDS_EACH execs=0 crashes=0 start log n found
  local artifacts="fuzz/artifacts/$target"
  mkdir -p "$artifacts"
  log=$(mktemp "/tmp/retunnel-fuzz-$target.XXXXXX")
  while [ "$left" -gt 0 ]; do
    start=$(date +%s)
    found=$(ls "$artifacts" | wc -l)
    # -timeout: an input taking over 10 s counts as a hang; -rss_limit_mb: as a leak. `cargo
    # fuzz run` builds first, so a fix made while a run goes on is fuzzed from the next start
    # (interrupt the fuzzer with SIGINT to restart it early: that is not counted as a crash).
    nice -n 19 cargo +nightly fuzz run "${FLAGS[@]}" "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -len_control=200 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || true
    if [ "$(ls "$artifacts" | wc -l)" -gt "$found" ]; then
      crashes=$((crashes + 1))
      echo "$target: crash or hang; input kept in $artifacts/"
      grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer' "$log" || true
    elif ! grep -q 'stat::number_of_executed_units' "$log"; then
      echo "$target: the fuzzer did not run:" >&2; tail -5 "$log" >&2; exit 1
    fi
    n=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
    execs=$((execs + ${n:-0}))
    left=$((left - ($(date +%s) - start)))
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$SECONDS_EACH" "$execs" "$crashes" \
    "$(ls "$artifacts" | wc -l)" | tee -a fuzz/runs.tsv
  rm -f "$log"
}

for t in "$@"; do run "$t"; done
