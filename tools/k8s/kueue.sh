#!/usr/bin/env bash
# Installs Kueue v0.17.0 into a cluster of tools/k8s/up.sh, built by tools/k8s/build.sh from the
# Go module proxy: its CRDs (the module's config/components/crd/bases), its controller manager as
# a Deployment in kueue-system (a FROM-scratch image of the static binary, loaded into the node),
# with the ClusterRole the module generates for it (config/components/rbac/role.yaml). Then
# appends MLOPS_K8S_KUEUE=1 to DIR/env.
#
# Differences from Kueue's own manifests (config/default), each because of what this cluster is:
# - No admission webhooks are registered and internal certificate management is off: the API
#   server would have to call into a pod, and mlops does itself what the Job webhook would (it
#   creates its Jobs suspended, with the queue-name label). The webhook and metrics servers still
#   start, with a self-signed certificate from a Secret.
# - The CRDs carry no conversion webhook (v1beta2, the storage version, is what is used).
# - Only the batch/job integration, no visibility API server (VisibilityOnDemand off), no leader
#   election (one replica).
#   tools/k8s/kueue.sh DIR
set -euo pipefail
dir="${1:?usage: tools/k8s/kueue.sh DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
started=$(date +%s%N)
bin="$("$here/build.sh" | tail -1)"
share="$(dirname "$bin")/kueue"
image=docker.io/mlops-k8s/kueue:v0.17.0
kubectl() { "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" "$@"; }

# The image: the static binary alone.
work="$dir/kueue"
mkdir -p "$work/image"
cp "$bin/kueue" "$work/image/kueue"
printf 'FROM scratch\nCOPY kueue /kueue\nUSER 65532:65532\nENTRYPOINT ["/kueue"]\n' \
  > "$work/image/Dockerfile"
docker build -q -t "$image" "$work/image" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; echo "k8s/kueue: the image did not build" >&2; exit 1; }
"$here/load-image.sh" "$dir" "$image"

# The CRDs (server-side: the Workload CRD is too large for the last-applied annotation).
kubectl apply --server-side -f "$share/crds" >/dev/null
for crd in "$share"/crds/*.yaml; do
  name=$(basename "$crd" .yaml)
  name="${name#kueue.x-k8s.io_}.kueue.x-k8s.io"
  kubectl wait --for condition=established --timeout=60s "crd/$name" >/dev/null
done

# A serving certificate for the webhook and metrics servers (nothing calls them).
if [ ! -f "$work/tls.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=kueue-webhook-service.kueue-system.svc \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
fi
kubectl create namespace kueue-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n kueue-system create secret tls kueue-certs --cert="$work/tls.crt" \
  --key="$work/tls.key" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
sed 's/^  name: manager-role$/  name: kueue-manager-role/' "$share/role.yaml" | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<'EOT'
apiVersion: v1
kind: ServiceAccount
metadata: {name: kueue-controller-manager, namespace: kueue-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kueue-manager-rolebinding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kueue-manager-role}
subjects:
- {kind: ServiceAccount, name: kueue-controller-manager, namespace: kueue-system}
---
# As Kueue's own manifests grant (config/components/rbac/manager_secrets_role.yaml): it watches
# the Secrets of its namespace.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: kueue-manager-secrets-role, namespace: kueue-system}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list, update, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: kueue-manager-secrets-rolebinding, namespace: kueue-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: kueue-manager-secrets-role}
subjects:
- {kind: ServiceAccount, name: kueue-controller-manager, namespace: kueue-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kueue-manager-config, namespace: kueue-system}
data:
  controller_manager_config.yaml: |
    apiVersion: config.kueue.x-k8s.io/v1beta2
    kind: Configuration
    namespace: kueue-system
    health: {healthProbeBindAddress: ":8081"}
    metrics: {bindAddress: ":8443"}
    webhook: {port: 9443, certDir: /certs}
    leaderElection: {leaderElect: false}
    internalCertManagement: {enable: false}
    integrations: {frameworks: ["batch/job"]}
    featureGates: {VisibilityOnDemand: false}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kueue-controller-manager, namespace: kueue-system}
spec:
  replicas: 1
  selector: {matchLabels: {app: kueue}}
  template:
    metadata: {labels: {app: kueue}}
    spec:
      serviceAccountName: kueue-controller-manager
      containers:
      - name: manager
        image: docker.io/mlops-k8s/kueue:v0.17.0
        imagePullPolicy: Never
        args: [--config=/config/controller_manager_config.yaml, --zap-log-level=2]
        readinessProbe: {httpGet: {path: /readyz, port: 8081}, periodSeconds: 1}
        volumeMounts:
        - {name: config, mountPath: /config}
        - {name: certs, mountPath: /certs, readOnly: true}
        - {name: certs, mountPath: /etc/kueue/metrics/certs, readOnly: true}
      volumes:
      - {name: config, configMap: {name: kueue-manager-config}}
      - {name: certs, secret: {secretName: kueue-certs}}
EOT
if ! kubectl -n kueue-system rollout status deployment/kueue-controller-manager --timeout=180s >/dev/null; then
  echo "k8s/kueue: the controller manager did not become ready; its log:" >&2
  kubectl -n kueue-system logs deployment/kueue-controller-manager --tail=40 >&2 || true
  exit 1
fi
grep -q '^export MLOPS_K8S_KUEUE=' "$dir/env" || echo 'export MLOPS_K8S_KUEUE=1' >> "$dir/env"
echo "k8s/kueue: Kueue v0.17.0 ready in $(( ($(date +%s%N) - started) / 1000000 )) ms"
