#!/usr/bin/env bash
# The chart's static checks on the CI cluster (tools/test.sh's Kubernetes stage): helm lint, and for
# each charts/mlops/ci/*-values.yaml the rendered manifests validated by the real API server
# (server-side dry run with strict field validation: an unknown field or a wrong type fails), with
# the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs applied first. Also proves the
# checks bite: a value the schema refuses fails `helm template`, and a manifest with an unknown
# field fails the dry run. And charts/mlops/README.md lists exactly the values of values.yaml.
# Then installs it on the cluster (split and all-in-one), runs `helm test`, the demo through the
# router, `helm upgrade`, and a pod loss (below).
#   tests/e2e/chart_test.sh DIR [BUILD_DIR]   (a cluster of tools/k8s/up.sh; default build/default)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:?usage: tests/e2e/chart_test.sh DIR}"
chart="$root/charts/mlops"
bin="$("$root/tools/k8s/build.sh" | tail -1)"
helm="$bin/helm"
kubectl() { "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" "$@"; }
fail() { echo "chart: FAILED: $*" >&2; exit 1; }
passed=0
ns="mlops-chart-check-$$"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT
kube_version="$(kubectl version -o json | sed -n 's/.*"gitVersion": "v\([^"]*\)".*/\1/p' | tail -1)"

kubectl apply --server-side -f "$(dirname "$bin")/prometheus-operator/crds" >/dev/null
for crd in servicemonitors prometheusrules; do
  kubectl wait --for condition=established --timeout=60s "crd/$crd.monitoring.coreos.com" >/dev/null
done
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

"$helm" lint --strict "$chart" >/dev/null || { "$helm" lint --strict "$chart"; fail "helm lint"; }
for values in "$chart"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  "$helm" lint --strict "$chart" -f "$values" >/dev/null || fail "helm lint -f $values"
  "$helm" template "ci-$name" "$chart" -n "$ns" --kube-version "$kube_version" \
    -f "$values" > "$work/$name.yaml"
  kubectl apply --dry-run=server --validate=strict -n "$ns" -f "$work/$name.yaml" \
    > "$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; fail "$name: the API server refused the manifests"; }
  echo "chart: ci/$name-values.yaml: $(grep -c '^kind:' "$work/$name.yaml") objects valid for the API server (strict)"
  passed=$((passed + 1))
done

# The checks bite: a misspelt value, and a field the API does not have.
if "$helm" template x "$chart" --kube-version "$kube_version" --set metadata.persistance.size=1Gi \
  >/dev/null 2>"$work/schema.err"; then
  fail "a misspelt value (metadata.persistance) was accepted"
fi
grep -q "persistance" "$work/schema.err" || fail "the schema error does not name the value"
"$helm" template x "$chart" -n "$ns" --kube-version "$kube_version" \
  --set-json 'metadata.resources={"limitz":{"cpu":"1"}}' > "$work/typo.yaml"
if kubectl apply --dry-run=server --validate=strict -n "$ns" -f "$work/typo.yaml" \
  >"$work/typo.out" 2>&1; then
  fail "a manifest with an unknown field passed the strict dry run"
fi
grep -q "limitz" "$work/typo.out" || { cat "$work/typo.out" >&2; fail "the API's error does not name the field"; }
passed=$((passed + 2))

# README.md lists every value of values.yaml, and no value that is not there.
leaves() {  # the paths of values.yaml's values (block style; the security contexts as wholes)
  awk '
    /^[[:space:]]*#/ || /^[[:space:]]*$/ || /^[[:space:]]*-/ { next }
    {
      match($0, /^ */); indent = RLENGTH; line = substr($0, indent + 1)
      if (line !~ /^[A-Za-z][A-Za-z0-9_]*:/) next
      key = substr(line, 1, index(line, ":") - 1)
      value = substr(line, index(line, ":") + 1); sub(/^ +/, "", value); sub(/ +#.*$/, "", value)
      while (depth > 0 && indents[depth] >= indent) depth--
      depth++; indents[depth] = indent; keys[depth] = key
      path = keys[1]; for (i = 2; i <= depth; i++) path = path "." keys[i]
      if (keys[1] == "podSecurityContext" || keys[1] == "securityContext") {
        if (depth == 1) print path
        next
      }
      if (value != "") print path
    }' "$chart/values.yaml" | sort
}
leaves > "$work/values.txt"
sed -n 's/^| `\([^`]*\)` |.*/\1/p' "$chart/README.md" | sort > "$work/readme.txt"
[ "$(wc -l < "$work/values.txt")" -gt 40 ] || fail "read only $(wc -l < "$work/values.txt") values"
if ! diff "$work/values.txt" "$work/readme.txt" > "$work/drift.txt"; then
  cat "$work/drift.txt" >&2
  fail "charts/mlops/README.md and values.yaml differ (< only in values.yaml, > only in README)"
fi
passed=$((passed + 1))
echo "chart: README.md lists all $(wc -l < "$work/values.txt") values"

# Installed for real, twice.
#  A. The split services (release "install"): the images of this build loaded into the node, a
#     static hostPath volume per service (this cluster has no provisioner), `helm install --wait`,
#     `helm test` (every service's /healthz and /readyz through its Service, and the CLI in a pod
#     reaching all four through the router); the demo pipeline from this host through the
#     router's one address, its steps Kubernetes Jobs in the mlops image; then `helm upgrade` to
#     changed values (sync writes on: every service's pod is replaced; TLS on at the router, from
#     a Secret made here) keeps every run, dataset and model, asked through the router over TLS;
#     the metadata pod lost (force-deleted) mid-ingestion keeps every acknowledged write; its
#     volume backed up and restored as docs/deploy.md says.
#  B. All-in-one (release "aio"): one pod, `helm install --wait`, `helm test`.
build="$(cd "${2:-$root/build/default}" && pwd)"
cli="$build/tools/cli/mlops"
example="$build/examples/mlops-example"
"$root/docker/build.sh" --prebuilt "$build" mlops/mlops:dev >/dev/null
"$root/docker/build.sh" --router mlops/router:dev >/dev/null
for image in mlops/mlops:dev mlops/router:dev; do "$root/tools/k8s/load-image.sh" "$dir" "$image"; done
h() { "$helm" --kubeconfig "$dir/admin.kubeconfig" "$@"; }
volume() {  # volume NAME CLAIM: a static hostPath volume bound to the claim CLAIM of $ns
  mkdir -p "$dir/volumes/$ns-$1"
  chmod 0777 "$dir/volumes/$ns-$1"
  kubectl apply -f - >/dev/null <<EOT
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns-$1, labels: {mlops-chart-check: "$ns"}}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $ns, name: $2}
  hostPath: {path: $dir/volumes/$ns-$1}
EOT
}
for component in metadata artifact scheduler monitoring; do
  volume "$component" "data-install-mlops-$component-0"
done
volume server data-aio-mlops-server-0
trap 'rm -rf "$work"; for r in install aio; do h uninstall "$r" -n "$ns" >/dev/null 2>&1 || true; done; kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; kubectl delete pv -l mlops-chart-check="$ns" --wait=false >/dev/null 2>&1 || true' EXIT
images=(--set image.repository=docker.io/mlops/mlops --set image.tag=dev --set image.pullPolicy=Never
  --set router.image.repository=docker.io/mlops/router --set router.image.tag=dev
  --set router.image.pullPolicy=Never
  --set scheduler.kubernetes.stepImage.repository=docker.io/mlops/step
  --set scheduler.kubernetes.stepImage.tag=dev --set scheduler.kubernetes.imagePullPolicy=Never)
helm_test() {  # helm_test RELEASE EXPECTED-LINE
  h test "$1" -n "$ns" --logs > "$work/test-$1.out" 2>&1 || { cat "$work/test-$1.out" >&2; fail "helm test $1"; }
  grep -q "$2" "$work/test-$1.out" || { cat "$work/test-$1.out" >&2; fail "helm test $1 did not say '$2'"; }
}

t0=$(date +%s)
h install install "$chart" -n "$ns" "${images[@]}" --set maintenance.gc.enabled=true \
  --set maintenance.scrub.enabled=true --wait --timeout 180s >/dev/null ||
  { kubectl -n "$ns" get pods,pvc >&2; fail "helm install did not become ready"; }
echo "chart: installed; every service ready in $(( $(date +%s) - t0 )) s"
helm_test install "router: monitoring answers"
passed=$((passed + 1))
echo "chart: helm test passed (4 services healthy and ready; the CLI in a pod reaches all four through the router)"

# The demo from this host through the router's Service (its ClusterIP, which kube-proxy routes).
router_ip=$(kubectl -n "$ns" get service install-mlops-router -o jsonpath='{.spec.clusterIP}')
mlops() {
  env -u MLOPS_METADATA_SERVER -u MLOPS_ARTIFACT_SERVER -u MLOPS_SCHEDULER_SERVER \
    -u MLOPS_MONITORING_SERVER -u MLOPS_CA MLOPS_SERVER="$router_ip:50051" "$cli" "$@"
}
# shellcheck source=tests/e2e/demo.sh
. "$root/tests/e2e/demo.sh"
t0=$(date +%s)
cached=$(run_demo)
jobs_seen=$(grep -c . < <(kubectl -n "$ns" get events --field-selector involvedObject.kind=Job -o name) || true)
[ "$jobs_seen" -gt 0 ] || fail "no Job events: the demo's steps did not run as Jobs"
echo "chart: the demo pipeline through the router (steps as Jobs) in $(( $(date +%s) - t0 )) s; demo@production registered; second run $cached steps cached"
passed=$((passed + 1))
snapshot() {  # what must survive an upgrade: runs, datasets, models, experiments
  { mlops pipeline list --max 100; mlops data list; mlops models list; mlops experiments list --all
    mlops models show demo@production; } | sed 's/  */ /g'
}
snapshot > "$work/before.txt"
[ "$(grep -c demo "$work/before.txt")" -ge 3 ] || { cat "$work/before.txt" >&2; fail "the snapshot misses the demo"; }

# helm upgrade to changed values: sync writes (every service's StatefulSet rolls: new pods on the
# same volumes) and TLS at the router from a kubernetes.io/tls Secret (a CA and a certificate for
# the router's Service names and its ClusterIP, made here; cert-manager would make the same).
pki="$work/pki"
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mlops-chart-check CA" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
sans="DNS:install-mlops-router,DNS:install-mlops-router.$ns,DNS:install-mlops-router.$ns.svc"
sans="$sans,DNS:install-mlops-router.$ns.svc.cluster.local,IP:$router_ip"
openssl req -newkey rsa:2048 -nodes -subj "/CN=install-mlops-router" -keyout "$pki/tls.key" \
  -out "$pki/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > "$pki/ext"
openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/tls.crt" 2>/dev/null
kubectl -n "$ns" create secret generic router-tls --type=kubernetes.io/tls \
  --from-file=tls.crt="$pki/tls.crt" --from-file=tls.key="$pki/tls.key" \
  --from-file=ca.crt="$pki/ca.crt" >/dev/null
before_uid=$(kubectl -n "$ns" get pod install-mlops-metadata-0 -o jsonpath='{.metadata.uid}')
t0=$(date +%s)
h upgrade install "$chart" -n "$ns" --reuse-values --set syncWrites=true --set tls.enabled=true \
  --set tls.existingSecret=router-tls --wait --timeout 180s >/dev/null ||
  { kubectl -n "$ns" get pods >&2; fail "helm upgrade did not become ready"; }
for component in metadata artifact scheduler monitoring; do
  kubectl -n "$ns" rollout status "statefulset/install-mlops-$component" --timeout=120s >/dev/null
done
after_uid=$(kubectl -n "$ns" get pod install-mlops-metadata-0 -o jsonpath='{.metadata.uid}')
[ "$before_uid" != "$after_uid" ] || fail "the upgrade did not replace the metadata pod"
kubectl -n "$ns" get statefulset install-mlops-metadata -o yaml | grep -q 'MLOPS_SYNC_WRITES' ||
  fail "the upgrade did not reach the StatefulSet"
echo "chart: helm upgrade (sync writes on, TLS on) rolled every service in $(( $(date +%s) - t0 )) s"
# Through the router over TLS only: plaintext is refused, an unknown CA is refused.
if mlops experiments list >/dev/null 2>&1; then fail "the router still speaks plaintext after tls.enabled"; fi
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=other" -keyout "$pki/other.key" \
  -out "$pki/other.crt" 2>/dev/null
if mlops --ca "$pki/other.crt" experiments list >/dev/null 2>&1; then fail "a certificate of an unknown CA was accepted"; fi
mlops() {
  env -u MLOPS_METADATA_SERVER -u MLOPS_ARTIFACT_SERVER -u MLOPS_SCHEDULER_SERVER \
    -u MLOPS_MONITORING_SERVER MLOPS_CA="$pki/ca.crt" MLOPS_SERVER="$router_ip:50051" "$cli" "$@"
}
snapshot > "$work/after.txt"
diff "$work/before.txt" "$work/after.txt" >&2 || fail "the upgrade changed what is stored (diff above)"
helm_test install "router: monitoring answers"
echo "chart: after the upgrade every run, dataset and model is there ($(wc -l < "$work/after.txt") lines, read over TLS); helm test passes over TLS"
passed=$((passed + 2))

# A pod lost while writes are acknowledged: the metadata pod force-deleted (no grace: its process
# is killed) while experiments are created through the router; the StatefulSet makes a new pod on
# the same volume. Every acknowledged creation must be there; the time until the service answers
# again through the router is the recovery time docs/deploy.md quotes.
start_writer k8s 20
old_uid=$(kubectl -n "$ns" get pod install-mlops-metadata-0 -o jsonpath='{.metadata.uid}')
t_kill=$(date +%s.%N)
kubectl -n "$ns" delete pod install-mlops-metadata-0 --grace-period=0 --force >/dev/null 2>&1
recovered=""
for _ in $(seq 1 600); do
  uid=$(kubectl -n "$ns" get pod install-mlops-metadata-0 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
  if [ -n "$uid" ] && [ "$uid" != "$old_uid" ] && mlops experiments list >/dev/null 2>&1; then
    recovered=$(date +%s.%N)
    break
  fi
  sleep 0.1
done
stop_writer
[ -n "$recovered" ] || fail "the metadata service did not come back within a minute of losing its pod"
missing=$(missing_acked)
[ "$missing" = 0 ] || fail "$missing of $acked acknowledged experiments are gone after the pod loss"
recovery=$(awk -v a="$t_kill" -v b="$recovered" 'BEGIN {printf "%.1f", b - a}')
echo "chart: metadata pod lost mid-ingestion: back through the router in $recovery s; all $acked acknowledged experiments there"
passed=$((passed + 1))

# Backup and restore as docs/deploy.md says (stopped copies): the metadata StatefulSet scaled to
# 0, its volume copied, scaled back; a later experiment; then the copy restored the same way:
# what was there at the backup is there again, the later experiment is not.
scale() {  # scale N: the metadata StatefulSet to N replicas, waiting until it is so
  kubectl -n "$ns" scale statefulset install-mlops-metadata --replicas="$1" >/dev/null
  if [ "$1" = 0 ]; then
    kubectl -n "$ns" wait --for=delete pod/install-mlops-metadata-0 --timeout=120s >/dev/null 2>&1 || true
  else
    kubectl -n "$ns" rollout status statefulset/install-mlops-metadata --timeout=120s >/dev/null
    for _ in $(seq 1 100); do mlops experiments list >/dev/null 2>&1 && break; sleep 0.2; done
  fi
}
volume_dir="$dir/volumes/$ns-metadata"
mlops experiments list --all | awk 'NR > 1 {print $2}' | sort > "$work/at-backup"
scale 0
cp -a "$volume_dir" "$work/backup"
scale 1
mlops experiments create after-the-backup >/dev/null
scale 0
find "$volume_dir" -mindepth 1 -delete
cp -a "$work/backup/." "$volume_dir/"
scale 1
mlops experiments list --all | awk 'NR > 1 {print $2}' | sort > "$work/restored"
cmp -s "$work/at-backup" "$work/restored" ||
  { diff "$work/at-backup" "$work/restored" >&2; fail "the restored volume does not hold what was backed up"; }
echo "chart: the metadata volume backed up (stopped copy) and restored: $(wc -l < "$work/restored") experiments as at the backup, the later one gone"
passed=$((passed + 1))

# The maintenance CronJobs, run once now (kubectl create job --from): scrub finds every chunk
# sound, gc (the default grace period) keeps the demo's fresh blobs; the data still reads.
for job in scrub gc; do
  kubectl -n "$ns" create job "now-$job" --from="cronjob/install-mlops-$job" >/dev/null
  kubectl -n "$ns" wait --for=condition=complete "job/now-$job" --timeout=120s >/dev/null ||
    { kubectl -n "$ns" logs "job/now-$job" >&2 || true; fail "the $job CronJob's job did not complete"; }
  kubectl -n "$ns" logs "job/now-$job" > "$work/$job.log"
done
grep -q '^checked [1-9][0-9]* chunks .*: 0 corrupt, 0 missing; 0 blobs unreadable' "$work/scrub.log" ||
  { cat "$work/scrub.log" >&2; fail "scrub did not check the demo's chunks clean"; }
mlops data list | grep -q demo-data || fail "the data is gone after the gc CronJob"
echo "chart: the gc and scrub CronJobs ran: $(tr '\n' ' ' < "$work/scrub.log" | cut -c1-100)"
passed=$((passed + 1))

# B. All-in-one, in the same namespace: its own release, volume and router, with authentication
# on (auth.*): a token file and the client token from Secrets.
token=$("$cli" auth token create --auth-token-file "$work/tokens.yaml" --subject chart-ops \
  --grant '*=admin' --operator 2>/dev/null)
kubectl -n "$ns" create secret generic aio-tokens --from-file=tokens.yaml="$work/tokens.yaml" >/dev/null
kubectl -n "$ns" create secret generic aio-client --from-literal=token="$token" >/dev/null
t0=$(date +%s)
h install aio "$chart" -n "$ns" "${images[@]}" --set allInOne.enabled=true \
  --set allInOne.persistence.size=1Gi --set networkPolicy.enabled=false \
  --set auth.tokenFileSecret=aio-tokens --set auth.clientTokenSecret=aio-client \
  --set auth.auditRetentionDays=30 --wait --timeout 180s >/dev/null ||
  { kubectl -n "$ns" get pods,pvc >&2; fail "helm install (all-in-one) did not become ready"; }
[ "$(kubectl -n "$ns" get statefulsets -l app.kubernetes.io/instance=aio -o name | wc -l)" = 1 ] ||
  fail "all-in-one made more than one StatefulSet"
helm_test aio "router: monitoring answers"
grep -q "server: healthy and ready" "$work/test-aio.out" || fail "helm test aio did not check the server"
echo "chart: all-in-one installed (one pod, authentication on) in $(( $(date +%s) - t0 )) s; helm test passes through its router with the client token"
passed=$((passed + 1))
aio_ip=$(kubectl -n "$ns" get service aio-mlops-router -o jsonpath='{.spec.clusterIP}')
aio() {  # aio TOKEN ARGS...: the CLI through the all-in-one router, presenting TOKEN ("" = none)
  local token="$1"
  shift
  env -u MLOPS_METADATA_SERVER -u MLOPS_ARTIFACT_SERVER -u MLOPS_SCHEDULER_SERVER \
    -u MLOPS_MONITORING_SERVER -u MLOPS_CA -u MLOPS_TOKEN_FILE MLOPS_TOKEN="$token" \
    MLOPS_SERVER="$aio_ip:50051" "$cli" "$@"
}
if aio "" experiments list > "$work/anonymous.out" 2>&1; then
  fail "the all-in-one server with authentication on answered a call without a token"
fi
grep -q UNAUTHENTICATED "$work/anonymous.out" || { cat "$work/anonymous.out" >&2; fail "no UNAUTHENTICATED without a token"; }
aio "$token" experiments create chart-auth >/dev/null || fail "the token of the token file was refused"
aio "$token" audit list > "$work/audit.out" || fail "audit list failed"
grep -Eq 'chart-ops +CreateExperiment +default +name=chart-auth +OK' "$work/audit.out" ||
  { cat "$work/audit.out" >&2; fail "the audit log does not show the token's subject creating chart-auth"; }
kubectl -n "$ns" get statefulset aio-mlops-server -o yaml | grep -q MLOPS_AUDIT_RETENTION_DAYS ||
  fail "auth.auditRetentionDays did not reach the server"
echo "chart: authentication on: no token is UNAUTHENTICATED through the router, the token file's token creates, the audit log names its subject"
passed=$((passed + 1))
echo "chart: $passed passed, 0 failed"
