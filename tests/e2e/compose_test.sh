#!/usr/bin/env bash
# The deployment test on docker/compose.yaml (tools/test.sh's e2e stage; SKIP_E2E=1 skips it):
# the four services as separate containers of the images docker/build.sh packs from a build dir,
# and Prometheus from Debian's package.
#   1. every container healthy; Prometheus scrapes all four services (up == 1, its HTTP API);
#   2. the demo pipeline through the CLI on this host against the separate containers, all through
#      the router's one address (docker/router): a dataset pushed, the pipeline run (steps as
#      child processes of the scheduler container), the best model registered as
#      demo@production; a second submission is all cached; a method no service has is
#      UNIMPLEMENTED;
#   3. the metadata container killed (docker kill: SIGKILL) while experiments are being created,
#      and restarted: every creation that was acknowledged is there (asked directly and through
#      the router, which finds the restarted container);
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
export MLOPS_ROUTER_PORT=$(free_port) MLOPS_METADATA_PORT=$(free_port) MLOPS_ARTIFACT_PORT=$(free_port)
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
# shellcheck source=tests/e2e/demo.sh
. "$root/tests/e2e/demo.sh"
# The CLI with the router's one address for every service.
routed() {
  env -u MLOPS_METADATA_SERVER -u MLOPS_ARTIFACT_SERVER -u MLOPS_SCHEDULER_SERVER \
    -u MLOPS_MONITORING_SERVER MLOPS_SERVER="127.0.0.1:$MLOPS_ROUTER_PORT" "$cli" "$@"
}

log "images: mlops (the binaries of $build), the router and prometheus (Debian's packages)"
"$root/tools/docker-base.sh" >/dev/null
"$root/docker/build.sh" --prebuilt "$build" mlops/mlops:dev
docker build -q -t mlops/prometheus:dev "$root/docker/prometheus" >"$work/prometheus-build.log" 2>&1 ||
  { cat "$work/prometheus-build.log" >&2; fail "the Prometheus image did not build"; }
"$root/docker/build.sh" --router mlops/router:dev >/dev/null
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
wait_healthy metadata artifact scheduler monitoring router
log "1. four services and the router healthy"

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

# 2. The demo pipeline, steps inside the scheduler container, every call through the router.
mlops() { routed "$@"; }
cached=$(run_demo)
# A method that no service has: the router answers UNIMPLEMENTED as a gRPC server would (a
# trailers-only response). The request carries no body: nginx answers without reading one, and
# a body still in flight makes it reset the stream, which curl reports as an error.
headers=$(curl -sS --http2-prior-knowledge -o /dev/null -D - -X POST \
  -H 'content-type: application/grpc' -H 'te: trailers' \
  "http://127.0.0.1:$MLOPS_ROUTER_PORT/mlops.nothing.v1.Nothing/Call")
grep -qi '^grpc-status: 12' <<<"$headers" || fail "the router's answer to an unknown method: $headers"
mlops() { "$cli" "$@"; }
log "2. the demo pipeline ran across the containers through the router; demo@production registered; the second run is cached ($cached steps)"

# 3. The metadata container killed while experiments are created.
start_writer e2e 50
docker kill "$(container metadata)" >/dev/null
sleep 1
stop_writer
[ "$acked" -ge 50 ] || fail "only $acked experiments were acknowledged before the kill"
docker start "$(container metadata)" >/dev/null
wait_healthy metadata
missing=$(missing_acked)
[ "$missing" = 0 ] || fail "$missing of $acked acknowledged experiments are gone after docker kill"
routed experiments list --all | awk 'NR > 1 {print $2}' | sort > "$work/routed"
cmp -s "$work/listed" "$work/routed" || fail "through the router, the restarted metadata service lists other experiments"
log "3. metadata killed mid-ingestion and restarted: all $acked acknowledged experiments are there (directly and through the router)"

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
