#!/usr/bin/env bash
# Imports an image of the local Docker engine into the containerd of a cluster of tools/k8s/up.sh
# (its pods use it with imagePullPolicy Never or IfNotPresent: nothing is pulled).
# Usage: tools/k8s/load-image.sh DIR IMAGE
set -euo pipefail
dir="$1"
image="$2"
docker save "$image" | ctr -a "$dir/containerd/containerd.sock" -n k8s.io images import - >/dev/null
