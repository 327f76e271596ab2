# The demo pipeline and the acknowledged-writes check as the deployment tests run them (sourced by
# compose_test.sh and chart_test.sh).
# Needs: a function `mlops` (the CLI, pointed at the deployment), `fail MESSAGE`, $root, $work,
# $example (the host's mlops-example, which makes the data).

# finish RUN: waits for the run to end (3 minutes at most); prints its final state.
finish() {
  local state=""
  for _ in $(seq 1 900); do
    state=$(mlops pipeline status "$1" | sed -n 's/^state: *//p')
    case "$state" in SUCCEEDED | FAILED | CANCELED) break ;; esac
    sleep 0.2
  done
  echo "$state"
}

# run_demo: pushes the demo's dataset, runs examples/pipeline.yaml with the image's paths (the
# mlops image has mlops-example and the demo's files), checks demo@production, then runs it again:
# every step must be cached or succeeded, at least 5 cached. Prints the number of cached steps.
run_demo() {
  mkdir -p "$work/data"
  "$example" generate --rows 5000 --seed 7 --out "$work/data/customers.csv" >/dev/null
  mlops data push "$work/data" --dataset demo-data --tag v1 -m "e2e" >/dev/null
  local params=(--param bin=/usr/local/bin --param cli=mlops --param examples=/usr/share/mlops/examples)
  local first second states cached
  first=$(mlops pipeline submit "$root/examples/pipeline.yaml" "${params[@]}")
  [ "$(finish "$first")" = SUCCEEDED ] ||
    { mlops pipeline status "$first" >&2; fail "the demo pipeline did not succeed"; }
  mlops models show demo@production | grep -q 'version' || fail "no demo@production"
  second=$(mlops pipeline submit "$root/examples/pipeline.yaml" "${params[@]}")
  [ "$(finish "$second")" = SUCCEEDED ] || fail "the second demo run did not succeed"
  states=$(mlops --output json pipeline status "$second" | grep -o '"state": "[A-Z_]*"' | sort | uniq -c)
  if grep -v '"CACHED"\|"SUCCEEDED"' <<<"$states" | grep -q .; then fail "second run: $states"; fi
  cached=$(grep '"CACHED"' <<<"$states" | awk '{print $1}')
  [ "${cached:-0}" -ge 5 ] || fail "second run: only ${cached:-0} steps cached: $states"
  echo "$cached"
}

# start_writer PREFIX COUNT: creates experiments PREFIX-1, PREFIX-2, ... in the background, each
# acknowledged one appended to $work/acked; returns once COUNT are acknowledged (30 s at most).
# stop_writer; then missing_acked: how many acknowledged experiments the service does not list.
start_writer() {
  : > "$work/acked"
  rm -f "$work/stop-writer"
  (
    for i in $(seq 1 100000); do
      [ -e "$work/stop-writer" ] && break
      if mlops experiments create "$1-$i" >/dev/null 2>&1; then echo "$1-$i" >> "$work/acked"; fi
    done
  ) &
  writer=$!
  for _ in $(seq 1 300); do [ "$(wc -l < "$work/acked")" -ge "$2" ] && break; sleep 0.1; done
}
stop_writer() {
  # Asked to stop between two calls, not killed: a call killed with its loop would go on as an
  # orphan and could create an experiment after the caller has moved on.
  touch "$work/stop-writer"
  wait "$writer" 2>/dev/null || true
  acked=$(wc -l < "$work/acked")
}
missing_acked() {
  mlops experiments list --all | awk 'NR > 1 {print $2}' | sort > "$work/listed"
  sort "$work/acked" | comm -23 - "$work/listed" | wc -l
}
