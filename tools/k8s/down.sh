#!/usr/bin/env bash
# Stops the cluster that tools/k8s/up.sh started in DIR and cleans up after it: every recorded
# PID (SIGTERM, then SIGKILL), the pods' containers and shims, what the kubelet mounted, the
# bridge, kube-proxy's iptables rules and the pod cgroups; then removes DIR (KEEP=1 keeps it).
#   tools/k8s/down.sh DIR
set -uo pipefail
dir="${1:?usage: tools/k8s/down.sh DIR}"
[ -f "$dir/pids" ] || { echo "k8s/down: $dir is not a cluster dir (no pids file)" >&2; exit 1; }
dir="$(cd "$dir" && pwd)"
started=$(date +%s%N)

# The kubelet and kube-proxy first (so nothing restarts pods or rewrites rules), then the pods,
# then everything else at once.
stop() {  # stop PID...: TERM, up to 10 s for all of them, then KILL
  local pid left
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 50); do
    left=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.2
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null; done
}
pid_of() { awk -v n="$1" '$2 == n {print $1}' "$dir/pids"; }
stop $(pid_of kubelet) $(pid_of kube-proxy)
# Containers of the pods: their shims were started by our containerd (their cmdline names its
# socket); stop the tasks through ctr while containerd still runs, then kill what is left.
sock="$dir/containerd/containerd.sock"
if [ -S "$sock" ]; then
  for task in $(ctr -a "$sock" -n k8s.io tasks list -q 2>/dev/null); do
    ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1
  done
fi
for pid in $(pgrep -f "containerd-shim.*-address $sock" 2>/dev/null); do
  kill -KILL "$pid" 2>/dev/null
done
# The apiserver drains its watches for over 10 s on SIGTERM, and etcd waits for it: their state is
# thrown away with DIR, so they are killed outright.
for name in kube-apiserver etcd; do
  for pid in $(pid_of "$name"); do kill -KILL "$pid" 2>/dev/null; done
done
stop $(awk '$2 != "kube-apiserver" && $2 != "etcd" {print $1}' "$dir/pids")
# kube-proxy's rules (its own cleanup mode), then the bridge and what the kubelet mounted.
bin="$(grep '^export MLOPS_K8S_BIN=' "$dir/env" 2>/dev/null | cut -d= -f2)"
if [ -n "$bin" ] && [ -x "$bin/kube-proxy" ]; then
  "$bin/kube-proxy" --cleanup >/dev/null 2>&1
fi
ip link delete mlk8s0 2>/dev/null
iptables -D FORWARD -i mlk8s0 -o mlk8s0 -j ACCEPT 2>/dev/null

for _ in 1 2 3; do
  mounts=$(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount -l "$m" 2>/dev/null; done
done
# The pod cgroups (cgroupfs driver): kubepods under each controller, deepest first.
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# Network namespaces of pods that the CNI left behind.
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
  ip netns delete "$ns" 2>/dev/null
done
if [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
echo "k8s/down: stopped in $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2
