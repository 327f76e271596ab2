#!/usr/bin/env bash
# Starts a real single-node Kubernetes on 127.0.0.1 for the tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, a kubelet on its own containerd (runc, CNI bridge),
# kube-proxy and cluster DNS. Everything lives under one directory; every PID is recorded in
# DIR/pids; nothing leaves the machine (image pulls go to 127.0.0.1:1, pods have no default route).
#   tools/k8s/up.sh [DIR]      DIR defaults to a new /tmp/mlops-k8s.XXXXXX; prints DIR last
#   source DIR/env             KUBECONFIG, MLOPS_K8S_API, MLOPS_K8S_CA, MLOPS_K8S_ADMIN_TOKEN,
#                              MLOPS_K8S_CLIENT_TOKEN (a user with no rights until granted),
#                              MLOPS_K8S_NODE, MLOPS_K8S_BIN (kubectl, ...), MLOPS_K8S_GATEWAY
#   tools/k8s/images/...       images: `tools/k8s/load-image.sh DIR IMAGE` imports a docker image
#   tools/k8s/down.sh DIR      stops it all and cleans up
# Needs root, the binaries of tools/k8s/build.sh (built on first use) and Debian's containerd,
# runc, containernetworking-plugins and busybox-static (installed when missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$(mktemp -d /tmp/mlops-k8s.XXXXXX)}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
log() { echo "k8s/up: $*" >&2; }
started=$(date +%s%N)

if [ "$(id -u)" != 0 ]; then log "needs root (the kubelet mounts and makes cgroups)"; exit 1; fi
missing=()
for p in containerd runc containernetworking-plugins busybox-static openssl curl iptables conntrack socat; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
bin="$("$here/build.sh" | tail -1)"

# Ports (all on 127.0.0.1) and addresses.
API_PORT=${MLOPS_K8S_API_PORT:-16443}
ETCD_PORT=${MLOPS_K8S_ETCD_PORT:-12379}
node="$(hostname)"
if ! getent hosts "$node" | grep -q '^127\.'; then
  log "the node name $node must resolve to 127.0.0.1 (/etc/hosts) so pod logs stay on loopback"
  exit 1
fi
SERVICE_CIDR=10.96.0.0/24
KUBE_SVC_IP=10.96.0.1
POD_CIDR=10.244.0.0/24
GATEWAY=10.244.0.1
BRIDGE=mlk8s0
for port in "$API_PORT" "$ETCD_PORT" $((ETCD_PORT + 1)) 10248 10250 10256 10257 10259 10249; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port on 127.0.0.1 is in use (another cluster? tools/k8s/down.sh DIR)"
    exit 1
  fi
done

pids="$dir/pids"
: > "$pids"
start() {  # start NAME CMD...: runs in the background, output to DIR/logs/NAME.log
  local name="$1"
  shift
  mkdir -p "$dir/logs"
  "$@" >"$dir/logs/$name.log" 2>&1 &
  echo "$! $name" >> "$pids"
}
wait_for() {  # wait_for WHAT SECONDS CMD...
  local what="$1" limit="$2"
  shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what not ready after ${limit}s; logs in $dir/logs"
      exit 1
    fi
    sleep 0.2
  done
}

# --- PKI: one CA; the apiserver's serving cert; a client cert for apiserver -> kubelet; the
# service-account key pair; static bearer tokens for every user.
pki="$dir/pki"
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=mlops-k8s-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
sign() {  # sign NAME SUBJECT [SAN]
  local name="$1" subject="$2" san="${3:-}"
  openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$pki/$name.key" \
    -out "$pki/$name.csr" 2>/dev/null
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$pki/$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$pki/$name.ext"
  fi
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}
sign apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$KUBE_SVC_IP,IP:$GATEWAY,DNS:localhost,DNS:$node,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
sign kubelet "/CN=$node" "IP:127.0.0.1,DNS:$node,DNS:localhost"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ADMIN_TOKEN=$(token) KCM_TOKEN=$(token) SCHED_TOKEN=$(token) KUBELET_TOKEN=$(token)
PROXY_TOKEN=$(token) CLIENT_TOKEN=$(token) DNS_TOKEN=$(token)
cat > "$pki/tokens.csv" <<EOT
$ADMIN_TOKEN,admin,admin,system:masters
$KCM_TOKEN,system:kube-controller-manager,kcm
$SCHED_TOKEN,system:kube-scheduler,sched
$KUBELET_TOKEN,system:node:$node,kubelet,system:nodes
$PROXY_TOKEN,system:kube-proxy,proxy,system:node-proxier
$CLIENT_TOKEN,mlops-test-client,client
$DNS_TOKEN,mlops-k8s-coredns,coredns
EOT
kubeconfig() {  # kubeconfig NAME TOKEN
  cat > "$dir/$1.kubeconfig" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: mlops-k8s
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    token: $2
contexts:
- name: $1
  context: {cluster: mlops-k8s, user: $1, namespace: default}
current-context: $1
EOT
}
kubeconfig admin "$ADMIN_TOKEN"
kubeconfig controller-manager "$KCM_TOKEN"
kubeconfig scheduler "$SCHED_TOKEN"
kubeconfig kubelet "$KUBELET_TOKEN"
kubeconfig proxy "$PROXY_TOKEN"
kubeconfig client "$CLIENT_TOKEN"
kubeconfig coredns "$DNS_TOKEN"

# --- the pods' bridge, made here so the host side exists before any pod: the host is 10.244.0.1
# on it. Everything of ours listens on 127.0.0.1; tools/k8s/expose.sh forwards a port to
# 10.244.0.1 for the pods (the apiserver below, the mlops services under test).
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  ip addr add "$GATEWAY/24" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
# Pod to pod across the bridge: bridged frames pass the iptables FORWARD chain here
# (bridge-nf-call-iptables), whose policy the Docker engine sets to DROP.
iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
  iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT

# --- etcd
start etcd "$bin/etcd" --name mlops-k8s --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "mlops-k8s=http://127.0.0.1:$((ETCD_PORT + 1))" \
  --unsafe-no-fsync --quota-backend-bytes=$((1 << 30))
wait_for etcd 20 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# --- control plane
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --endpoint-reconciler-type=none \
  --kubelet-preferred-address-types=Hostname \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --allow-privileged=true --profiling=false
api() { curl -sf --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT$1"; }
wait_for kube-apiserver 60 api /readyz
"$here/expose.sh" "$dir" "$API_PORT"
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
  --controllers='*,-node-ipam-controller' --profiling=false
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false
wait_for kube-controller-manager 30 curl -sfk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 30 curl -sfk https://127.0.0.1:10259/healthz

kubectl() { "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" "$@"; }
# The `kubernetes` Service gets no endpoints from the apiserver here (its reconciler refuses a
# loopback address): the script gives it the apiserver as pods reach it.
kubectl apply -f - >/dev/null <<EOT
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-mlops
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes}
addressType: IPv4
endpoints:
- addresses: [$GATEWAY]
ports:
- {name: https, port: $API_PORT, protocol: TCP}
EOT

# --- containerd (its own instance, state under DIR) with CNI and no registry
ctrd="$dir/containerd"
mkdir -p "$ctrd/certs.d/_default" "$ctrd/certs.d/docker.io" "$dir/cni"
for d in _default docker.io; do
  printf 'server = "http://127.0.0.1:1"\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n' \
    > "$ctrd/certs.d/$d/hosts.toml"
done
cat > "$ctrd/config.toml" <<EOT
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
[grpc]
  address = "$ctrd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/mlops-k8s/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$ctrd/certs.d"
EOT
# Pods on a bridge with the host as 10.244.0.1 and no default route (only the Service range goes
# through the host, where kube-proxy translates it): they reach each other, the Services and what
# expose.sh forwards, nothing beyond.
cat > "$dir/cni/10-mlops.conflist" <<EOT
{"cniVersion": "1.0.0", "name": "mlops-k8s", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": false,
   "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]],
            "routes": [{"dst": "$SERVICE_CIDR"}], "dataDir": "$dir/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOT
start containerd containerd --config "$ctrd/config.toml"
ctr() { command ctr -a "$ctrd/containerd.sock" -n k8s.io "$@"; }
wait_for containerd 20 ctr version
images="$dir/images"
"$here/images/build.sh" "$images"
ctr images import "$images/pause.tar" >/dev/null
ctr images import "$images/busybox.tar" >/dev/null

# --- kubelet
mkdir -p "$dir/kubelet" "$dir/manifests"
cat > "$dir/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$ctrd/containerd.sock
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$GATEWAY]
resolvConf: /etc/resolv.conf
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
podPidsLimit: -1
staticPodPath: $dir/manifests
EOT
start kubelet "$bin/kubelet" --config="$dir/kubelet.yaml" \
  --kubeconfig="$dir/kubelet.kubeconfig" --root-dir="$dir/kubelet" \
  --hostname-override="$node"
node_ready() {
  kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' |
    grep -q True
}
wait_for "node $node" 60 node_ready

# --- kube-proxy (iptables) and the `kubernetes` Service's endpoints
cat > "$dir/proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/proxy.kubeconfig}
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
hostnameOverride: $node
conntrack: {maxPerCore: 0}
EOT
start kube-proxy "$bin/kube-proxy" --config="$dir/proxy.yaml"

# --- cluster DNS: CoreDNS on the host, bound to 10.244.0.1:53 where pods look (the kubelet's
# clusterDNS), answering cluster.local from the API and nothing else (no forward plugin: other
# names are refused, no query leaves the machine).
kubectl apply -f - >/dev/null <<EOT
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: mlops-k8s-coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mlops-k8s-coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: mlops-k8s-coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: mlops-k8s-coredns}
EOT
cat > "$dir/Corefile" <<EOT
.:53 {
    bind $GATEWAY
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOT
start coredns "$bin/coredns" -conf "$dir/Corefile" -dns.port 53
wait_for "cluster DNS" 20 bash -c "grep -q 'CoreDNS-' '$dir/logs/coredns.log'"

# Every process still running (a component that exits after starting is a failed start).
while read -r pid name; do
  kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) exited; see $dir/logs/$name.log"; exit 1; }
done < "$pids"
log "up in $(( ($(date +%s%N) - started) / 1000000 )) ms: $dir"
cat > "$dir/env" <<EOT
export KUBECONFIG=$dir/admin.kubeconfig
export MLOPS_K8S_DIR=$dir
export MLOPS_K8S_API=https://127.0.0.1:$API_PORT
export MLOPS_K8S_CA=$pki/ca.crt
export MLOPS_K8S_ADMIN_TOKEN=$ADMIN_TOKEN
export MLOPS_K8S_CLIENT_TOKEN=$CLIENT_TOKEN
export MLOPS_K8S_NODE=$node
export MLOPS_K8S_BIN=$bin
export MLOPS_K8S_GATEWAY=$GATEWAY
export MLOPS_K8S_CONTAINERD=$ctrd/containerd.sock
EOT
echo "$dir"
