#!/usr/bin/env bash
# Builds the binaries of the CI cluster from the Go module proxy into a cache dir that later runs
# on the same machine reuse: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy and kubectl (Kubernetes v1.37.2), etcd (v3.7.3), CoreDNS (v1.14.7) and Kueue's
# controller manager (v0.17.0, whose CRDs tools/k8s/kueue.sh applies from the same module), helm
# (v3.21.4) and the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs (v0.85.0).
# Nothing of theirs is committed.
#   tools/k8s/build.sh          prints the bin dir on its last line
#   MLOPS_K8S_CACHE=DIR         where (default ${XDG_CACHE_HOME:-~/.cache}/mlops/k8s)
# A fresh machine takes ~20 minutes on 2 cores (Kubernetes ~11, Kueue ~7, helm ~2); a warm cache
# returns at once.
set -euo pipefail

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
COREDNS_VERSION=v1.14.7
KUEUE_VERSION=v0.17.0
HELM_VERSION=v3.21.4
PROMETHEUS_OPERATOR_VERSION=v0.85.0
cache="${MLOPS_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops/k8s}"
bin="$cache/$K8S_VERSION/bin"
programs=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
command -v go >/dev/null || { echo "k8s/build: go is not installed (/usr/local/go/bin)" >&2; exit 1; }

have_all=1
for p in "${programs[@]}" etcd coredns kueue; do [ -x "$bin/$p" ] || have_all=0; done
[ -f "$cache/$K8S_VERSION/kueue/role.yaml" ] || have_all=0
[ -x "$bin/helm" ] || have_all=0
[ -f "$cache/$K8S_VERSION/prometheus-operator/crds/monitoring.coreos.com_servicemonitors.yaml" ] || have_all=0
if [ "$have_all" = 1 ]; then echo "$bin"; exit 0; fi
mkdir -p "$bin"

# Kubernetes: `go install k8s.io/kubernetes/cmd/...` is refused (its go.mod has replace
# directives), so a scratch module requires it and maps each staging module to its published
# version.
if ! [ -x "$bin/kubectl" ] || ! [ -x "$bin/kube-apiserver" ] || ! [ -x "$bin/kubelet" ] ||
   ! [ -x "$bin/kube-proxy" ] || ! [ -x "$bin/kube-scheduler" ] ||
   ! [ -x "$bin/kube-controller-manager" ]; then
  mod="$cache/$K8S_VERSION/module"
  mkdir -p "$mod"
  cd "$mod"
  [ -f go.mod ] || go mod init mlops.local/k8s-build >/dev/null 2>&1
  go mod download "k8s.io/kubernetes@$K8S_VERSION"
  upstream="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/go.mod"
  # Every `k8s.io/X => ./staging/...` of Kubernetes' own go.mod, except unpublished samples.
  awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$upstream" | grep -v '^k8s.io/sample-' |
    while read -r module; do
      go mod edit -replace "$module=$module@$STAGING_VERSION"
    done
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  tools=()
  for p in "${programs[@]}"; do tools+=("k8s.io/kubernetes/cmd/$p@$K8S_VERSION"); done
  go get -tool "${tools[@]}"
  version_flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  done
  pkgs=()
  for p in "${programs[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$p"); done
  go build -trimpath -ldflags "-s -w$version_flags" -o "$bin/" "${pkgs[@]}"
fi

# etcd and CoreDNS: `go install` is refused for modules with replace directives, so each is a tool
# of a scratch module of its own.
tool_build() {  # tool_build NAME PACKAGE VERSION
  local name="$1" package="$2" version="$3" mod="$cache/$1-$3"
  [ -x "$bin/$name" ] && return 0
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init "mlops.local/$name-build" >/dev/null 2>&1
    go get -tool "$package@$version"
    go build -trimpath -ldflags "-s -w" -o "$bin/$name" "$package"
  )
}
tool_build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
tool_build coredns github.com/coredns/coredns "$COREDNS_VERSION"
# Kueue static (CGO off): its image is the binary alone (tools/k8s/kueue.sh). Its CRDs and the
# ClusterRole its controller needs come from the same module, kept next to the binaries.
CGO_ENABLED=0 tool_build kueue sigs.k8s.io/kueue/cmd/kueue "$KUEUE_VERSION"
share="$cache/$K8S_VERSION/kueue"
if ! [ -f "$share/role.yaml" ]; then
  src="$(cd "$cache/kueue-$KUEUE_VERSION" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
  mkdir -p "$share/crds"
  cp "$src"/config/components/crd/bases/*.yaml "$share/crds/"
  cp "$src/config/components/rbac/role.yaml" "$share/role.yaml"
  chmod -R u+w "$share"
fi
# helm, for the chart's tests (charts/mlops), and the Prometheus Operator's CRDs (ServiceMonitor,
# PrometheusRule) that the chart's manifests are validated against.
tool_build helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
crds="$cache/$K8S_VERSION/prometheus-operator/crds"
if ! [ -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ]; then
  src="$(cd "$cache/kueue-$KUEUE_VERSION" &&
    go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  mkdir -p "$crds"
  cp "$src"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$crds/"
  chmod -R u+w "$crds"
fi
for p in "${programs[@]}" etcd coredns kueue helm; do
  [ -x "$bin/$p" ] || { echo "k8s/build: $p was not built" >&2; exit 1; }
done
echo "$bin"
