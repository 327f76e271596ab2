#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz, built by the asan preset (clang ASan+UBSan):
#   tools/fuzz.sh [--seconds N] [--build DIR] [TARGET...]
# For each target (all by default): replays its seed corpus (tests/fuzz/corpus/T) and its
# regression inputs (tests/fuzz/regressions/T), then fuzzes it for N seconds (default 600) starting
# from them. New inputs go to a scratch corpus, never into the repository. Any crash, leak,
# timeout or sanitizer report fails the run; the input that caused it is kept as
# $FUZZ_OUT/T/crash-* (default /tmp/mlops-fuzz) and should become tests/fuzz/regressions/T/NAME
# once fixed. tools/test.sh runs it with --seconds 10.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
build=build/asan
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ "${#targets[@]}" -eq 0 ]; then
  for source in tests/fuzz/*_fuzz.cc; do
    name="$(basename "$source" .cc)"
    targets+=("${name%_fuzz}")
  done
fi

out="${FUZZ_OUT:-/tmp/mlops-fuzz}"
mkdir -p "$out"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for target in "${targets[@]}"; do
  binary="$build/tests/fuzz/${target}_fuzz"
  if [ ! -x "$binary" ]; then
    echo "fuzz: $binary is not built (cmake --build --preset asan --target mlops_fuzzers)" >&2
    exit 2
  fi
  seeds=(tests/fuzz/corpus/"$target")
  [ -d tests/fuzz/regressions/"$target" ] && seeds+=(tests/fuzz/regressions/"$target")
  work="$out/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  log="$work/log"
  started=$(date +%s)
  # Replay: every seed and regression input once (-runs=0 runs the given inputs only).
  if ! "$binary" -runs=0 -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$work/" "${seeds[@]}" \
       >"$log" 2>&1; then
    echo "fuzz: $target: replaying its corpus FAILED ($log)"; tail -30 "$log"; failed+=("$target")
    continue
  fi
  replayed=$(grep -c . < <(find "${seeds[@]}" -type f) || true)
  # Fuzz from the seeds into a scratch corpus; crashes land in $work.
  if ! "$binary" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "${seeds[@]}" >>"$log" 2>&1
  then
    echo "fuzz: $target: FAILED after fuzzing ($log)"; tail -40 "$log"; failed+=("$target")
    continue
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  echo "fuzz: $target: ${replayed} inputs replayed, ${runs:-?} runs in ${seconds} s," \
    "coverage ${coverage:-?} edges, 0 crashes ($(( $(date +%s) - started )) s)"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, 0 crashes"
