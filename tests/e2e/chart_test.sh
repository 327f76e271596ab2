#!/usr/bin/env bash
# The chart's static checks on the CI cluster (tools/test.sh's Kubernetes stage): helm lint, and for
# each charts/mlops/ci/*-values.yaml the rendered manifests validated by the real API server
# (server-side dry run with strict field validation: an unknown field or a wrong type fails), with
# the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs applied first. Also proves the
# checks bite: a value the schema refuses fails `helm template`, and a manifest with an unknown
# field fails the dry run. And charts/mlops/README.md lists exactly the values of values.yaml.
# Then installs it on the cluster and runs `helm test`.
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

# Installed for real: the image of this build loaded into the node, a static hostPath volume per
# service (this cluster has no provisioner), `helm install --wait` until every service is ready,
# then `helm test` (every service's /healthz and /readyz through its Service).
build="${2:-$root/build/default}"
"$root/docker/build.sh" --prebuilt "$build" mlops/mlops:dev >/dev/null
"$root/tools/k8s/load-image.sh" "$dir" mlops/mlops:dev
for component in metadata artifact scheduler monitoring; do
  mkdir -p "$dir/volumes/$ns-$component"
  chmod 0777 "$dir/volumes/$ns-$component"
  kubectl apply -f - >/dev/null <<EOT
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns-$component, labels: {mlops-chart-check: "$ns"}}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $ns, name: data-install-mlops-$component-0}
  hostPath: {path: $dir/volumes/$ns-$component}
EOT
done
trap 'rm -rf "$work"; "$helm" --kubeconfig "$dir/admin.kubeconfig" uninstall install -n "$ns" >/dev/null 2>&1 || true; kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; kubectl delete pv -l mlops-chart-check="$ns" --wait=false >/dev/null 2>&1 || true' EXIT
t0=$(date +%s)
"$helm" --kubeconfig "$dir/admin.kubeconfig" install install "$chart" -n "$ns" --set image.repository=docker.io/mlops/mlops \
  --set image.tag=dev --set image.pullPolicy=Never --wait --timeout 180s >/dev/null ||
  { kubectl -n "$ns" get pods,pvc >&2; fail "helm install did not become ready"; }
echo "chart: installed; every service ready in $(( $(date +%s) - t0 )) s"
"$helm" --kubeconfig "$dir/admin.kubeconfig" test install -n "$ns" --logs > "$work/test.out" 2>&1 ||
  { cat "$work/test.out" >&2; fail "helm test"; }
grep -q "monitoring: healthy and ready" "$work/test.out" || { cat "$work/test.out" >&2; fail "helm test said nothing"; }
passed=$((passed + 1))
echo "chart: helm test passed (4 services healthy and ready through their Services)"
echo "chart: $passed passed, 0 failed"
