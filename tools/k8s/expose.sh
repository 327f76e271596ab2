#!/usr/bin/env bash
# Makes TCP ports that listen on 127.0.0.1 reachable from the CI cluster's pods at
# 10.244.0.1:PORT (the host's address on the pods' bridge, which has no way off the machine): a
# socat forwarder per port, its PID recorded in DIR/pids so that tools/k8s/down.sh stops it.
#   tools/k8s/expose.sh DIR PORT...
set -euo pipefail
dir="${1:?usage: tools/k8s/expose.sh DIR PORT...}"
shift
GATEWAY=10.244.0.1
command -v socat >/dev/null || apt-get install -y -qq --no-install-recommends socat >/dev/null
mkdir -p "$dir/logs"
for port in "$@"; do
  socat "TCP-LISTEN:$port,bind=$GATEWAY,reuseaddr,fork" "TCP:127.0.0.1:$port" \
    >"$dir/logs/expose-$port.log" 2>&1 &
  echo "$! expose-$port" >> "$dir/pids"
done
# Listening before returning.
for port in "$@"; do
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/$GATEWAY/$port") 2>/dev/null && break
    sleep 0.1
  done
done
