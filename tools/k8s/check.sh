#!/usr/bin/env bash
# Proves a cluster from tools/k8s/up.sh runs pods for real, over the REST API the scheduler uses:
# a batch/v1 Job of the busybox image completes and its log says what it printed; a pod resolves
# the `kubernetes` Service's name (cluster DNS) and connects to it (kube-proxy's rules, then the
# forwarder to the apiserver on loopback). Busybox's TLS cannot talk to the apiserver: TCP only.
#   tools/k8s/check.sh DIR
set -euo pipefail
dir="${1:?usage: tools/k8s/check.sh DIR}"
# shellcheck disable=SC1091
source "$dir/env"
api() {  # api METHOD PATH [BODY]
  curl -sS --fail-with-body --cacert "$MLOPS_K8S_CA" -H "Authorization: Bearer $MLOPS_K8S_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -X "$1" "$MLOPS_K8S_API$2" ${3:+--data "$3"}
}
name="check-$(date +%s)"
t0=$(date +%s%N)
api POST /apis/batch/v1/namespaces/default/jobs "{
  \"apiVersion\": \"batch/v1\", \"kind\": \"Job\", \"metadata\": {\"name\": \"$name\"},
  \"spec\": {\"backoffLimit\": 0, \"template\": {\"spec\": {\"restartPolicy\": \"Never\",
    \"containers\": [{\"name\": \"main\", \"image\": \"docker.io/mlops-k8s/busybox:1\",
      \"imagePullPolicy\": \"Never\",
      \"command\": [\"/bin/sh\", \"-c\", \"echo hello from \$(hostname); nslookup kubernetes.default.svc.cluster.local && nc -w 3 kubernetes.default.svc.cluster.local 443 </dev/null; echo reached=\$?\"]}]}}}}" >/dev/null
for _ in $(seq 1 300); do
  status=$(api GET "/apis/batch/v1/namespaces/default/jobs/$name" |
    grep -o '"type": *"\(Complete\|Failed\)"' | head -1 || true)
  [ -n "$status" ] && break
  sleep 0.2
done
elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
pod=$(api GET "/api/v1/namespaces/default/pods?labelSelector=job-name%3D$name" |
  grep -o '"name": *"'"$name"'-[a-z0-9]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/')
logs=$(api GET "/api/v1/namespaces/default/pods/$pod/log" || true)
api DELETE "/apis/batch/v1/namespaces/default/jobs/$name?propagationPolicy=Background" >/dev/null
echo "$logs"
case "$status" in
  *Complete*) ;;
  *) echo "k8s/check: job $name did not complete ($status) in ${elapsed} ms" >&2; exit 1 ;;
esac
grep -q "hello from $name" <<<"$logs" || { echo "k8s/check: no log line" >&2; exit 1; }
grep -q "reached=0" <<<"$logs" || { echo "k8s/check: the pod did not reach the apiserver by its Service name" >&2; exit 1; }
echo "k8s/check: a Job completed in ${elapsed} ms; its pod reached the apiserver through DNS and the Service"
