#!/usr/bin/env bash
# The deployment test on docker/compose.yaml (tools/test.sh's e2e stage; SKIP_E2E=1 skips it):
# the four services as separate containers of the images docker/build.sh packs from a build dir,
# and Prometheus from Debian's package.
#   1. every container healthy; Prometheus scrapes all four services (up == 1, its HTTP API);
#   2. the demo pipeline through the CLI on this host against the separate containers: a dataset
#      pushed, the pipeline run (steps as child processes of the scheduler container), the best
#      model registered as demo@production; a second submission is all cached;
#   3. the metadata container killed (docker kill: SIGKILL) while experiments are being created,
#      and restarted: every creation that was acknowledged is there;
#   4. the scheduler container killed while a step runs, and restarted: the run completes and its
#      succeeded step is not run again.
#   tests/e2e/compose_test.sh BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:?usage: tests/e2e/compose_test.sh BUILD_DIR}" && pwd)"
cli="$build/tools/cli/mlops"
example="$build/examples/mlops-example"
project="mlops-e2e-$$"
work="$(mktemp -d /tmp/mlops-e2e.XXXXXX)"
started=$(date +%s)
log() { echo "e2e: [$(( $(date +%s) - started ))s] $*"; }
fail() { echo "e2e: FAILED: $*" >&2; exit 1; }

# Free ports on 127.0.0.1 for the published ports.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MLOPS_METADATA_PORT=$(free_port) MLOPS_ARTIFACT_PORT=$(free_port)
export MLOPS_SCHEDULER_PORT=$(free_port) MLOPS_MONITORING_PORT=$(free_port) PROMETHEUS_PORT=$(free_port)
export MLOPS_METADATA_SERVER=127.0.0.1:$MLOPS_METADATA_PORT
export MLOPS_ARTIFACT_SERVER=127.0.0.1:$MLOPS_ARTIFACT_PORT
export MLOPS_SCHEDULER_SERVER=127.0.0.1:$MLOPS_SCHEDULER_PORT
export MLOPS_MONITORING_SERVER=127.0.0.1:$MLOPS_MONITORING_PORT
unset MLOPS_SERVER
compose() { docker-compose -p "$project" -f "$root/docker/compose.yaml" "$@"; }
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    compose ps >&2 || true
    compose logs --tail=30 >&2 || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mlops() { "$cli" "$@"; }

log "images: mlops (the binaries of $build) and prometheus (Debian's package)"
"$root/tools/docker-base.sh" >/dev/null
"$root/docker/build.sh" --prebuilt "$build" mlops/mlops:dev
docker build -q -t mlops/prometheus:dev "$root/docker/prometheus" >"$work/prometheus-build.log" 2>&1 ||
  { cat "$work/prometheus-build.log" >&2; fail "the Prometheus image did not build"; }
compose up -d --no-build >/dev/null 2>&1 || { compose up -d --no-build; exit 1; }

container() { compose ps -q "$1"; }
wait_healthy() {  # wait_healthy SERVICE...
  local service status
  for service in "$@"; do
    for _ in $(seq 1 120); do
      status=$(docker inspect -f '{{.State.Health.Status}}' "$(container "$service")" 2>/dev/null || true)
      [ "$status" = healthy ] && break
      sleep 0.5
    done
    [ "$status" = healthy ] || fail "$service is $status"
  done
}
wait_healthy metadata artifact scheduler monitoring
log "1. four services healthy"

up=""
for _ in $(seq 1 60); do
  up=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=up" 2>/dev/null || true)
  [ "$(grep -o '"value":\[[0-9.]*,"1"\]' <<<"$up" | wc -l)" = 4 ] && break
  sleep 1
done
[ "$(grep -o '"value":\[[0-9.]*,"1"\]' <<<"$up" | wc -l)" = 4 ] || fail "Prometheus: not every target is up: $up"
rules=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules")
grep -q '"MlopsModelDrift"' <<<"$rules" || fail "Prometheus did not load the chart's rules"
log "1. Prometheus scrapes all four services (up == 1) and loaded the alerting rules"

# 2. The demo pipeline, steps inside the scheduler container.
mkdir -p "$work/data"
"$example" generate --rows 5000 --seed 7 --out "$work/data/customers.csv" >/dev/null
mlops data push "$work/data" --dataset demo-data --tag v1 -m "e2e" >/dev/null
params=(--param bin=/usr/local/bin --param cli=mlops --param examples=/usr/share/mlops/examples)
finish() {  # finish RUN: waits; prints the final state
  local state=""
  for _ in $(seq 1 900); do
    state=$(mlops pipeline status "$1" | sed -n 's/^state: *//p')
    case "$state" in SUCCEEDED | FAILED | CANCELED) break ;; esac
    sleep 0.2
  done
  echo "$state"
}
first=$(mlops pipeline submit "$root/examples/pipeline.yaml" "${params[@]}")
[ "$(finish "$first")" = SUCCEEDED ] || { mlops pipeline status "$first" >&2; fail "the demo pipeline did not succeed"; }
mlops models show demo@production | grep -q 'version' || fail "no demo@production"
second=$(mlops pipeline submit "$root/examples/pipeline.yaml" "${params[@]}")
[ "$(finish "$second")" = SUCCEEDED ] || fail "the second demo run did not succeed"
states=$(mlops --output json pipeline status "$second" | grep -o '"state": "[A-Z_]*"' | sort | uniq -c)
if grep -v '"CACHED"\|"SUCCEEDED"' <<<"$states" | grep -q .; then fail "second run: $states"; fi
cached=$(grep '"CACHED"' <<<"$states" | awk '{print $1}')
[ "${cached:-0}" -ge 5 ] || fail "second run: only ${cached:-0} steps cached: $states"
log "2. the demo pipeline ran across the containers; demo@production registered; the second run is cached ($cached steps)"

# 3. The metadata container killed while experiments are created.
: > "$work/acked"
(
  for i in $(seq 1 100000); do
    if mlops experiments create "e2e-$i" >/dev/null 2>&1; then echo "e2e-$i" >> "$work/acked"; fi
  done
) &
writer=$!
for _ in $(seq 1 100); do [ "$(wc -l < "$work/acked")" -ge 50 ] && break; sleep 0.1; done
docker kill "$(container metadata)" >/dev/null
sleep 1
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
acked=$(wc -l < "$work/acked")
[ "$acked" -ge 50 ] || fail "only $acked experiments were acknowledged before the kill"
docker start "$(container metadata)" >/dev/null
wait_healthy metadata
mlops experiments list --all | awk 'NR > 1 {print $2}' | sort > "$work/listed"
missing=$(sort "$work/acked" | comm -23 - "$work/listed" | wc -l)
[ "$missing" = 0 ] || fail "$missing of $acked acknowledged experiments are gone after docker kill"
log "3. metadata killed mid-ingestion and restarted: all $acked acknowledged experiments are there"

# 4. The scheduler container killed while a step runs.
cat > "$work/slow.yaml" <<'EOT'
name: e2e-slow
steps:
  - name: first
    outputs: {x: x.txt}
    command: [/bin/sh, -c, 'echo first >> /data/first-ran; echo one > {{outputs.x}}']
  - name: second
    inputs: {x: first.outputs.x}
    outputs: {y: y.txt}
    command: [/bin/sh, -c, 'sleep 4; cat {{inputs.x}} > {{outputs.y}}']
EOT
run=$(mlops pipeline submit "$work/slow.yaml")
for _ in $(seq 1 200); do
  mlops --output json pipeline status "$run" | tr -d '\n ' | grep -q '"name":"second","state":"RUNNING"' && break
  sleep 0.1
done
docker kill "$(container scheduler)" >/dev/null
docker start "$(container scheduler)" >/dev/null
wait_healthy scheduler
[ "$(finish "$run")" = SUCCEEDED ] || { mlops pipeline status "$run" >&2; fail "the run did not complete after the scheduler's restart"; }
ran=$(docker exec "$(container scheduler)" sh -c 'wc -l < /data/first-ran')
[ "$ran" = 1 ] || fail "the succeeded step ran $ran times"
log "4. scheduler killed mid-pipeline and restarted: the run completed; its succeeded step ran once"
echo "e2e: compose: 4 passed, 0 failed ($(( $(date +%s) - started )) s)"
