#!/usr/bin/env bash
# Kills the CI cluster's kube-apiserver (SIGKILL: every watch drops at once) and starts it again
# with the same command line, waiting until it is ready; the new PID is recorded in DIR/pids.
# For the tests that check that clients resume their watches.
#   tools/k8s/restart-apiserver.sh DIR [DOWN_SECONDS]   (DOWN_SECONDS: how long it stays away)
set -euo pipefail
dir="${1:?usage: tools/k8s/restart-apiserver.sh DIR [DOWN_SECONDS]}"
down="${2:-1}"
pid="$(awk '$2 == "kube-apiserver" {p = $1} END {print p}' "$dir/pids")"
[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || { echo "restart-apiserver: no apiserver running" >&2; exit 1; }
mapfile -d '' cmd < "/proc/$pid/cmdline"
kill -KILL "$pid"
while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
  sleep 0.05
done
sleep "$down"
setsid "${cmd[@]}" >>"$dir/logs/kube-apiserver.log" 2>&1 < /dev/null &
echo "$! kube-apiserver" >> "$dir/pids"
. "$dir/env"
for _ in $(seq 1 300); do
  "$MLOPS_K8S_BIN/kubectl" get --raw /readyz >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "restart-apiserver: not ready after 30 s" >&2
exit 1
