#!/usr/bin/env bash
# Builds the CI cluster's two base images with the local Docker engine (nothing is pulled) and
# saves them as tarballs for `ctr images import`:
#   mlops-k8s/pause:1    the pod sandbox (pause.c, static)
#   mlops-k8s/busybox:1  Debian's busybox-static with its applets, for test steps
# Usage: tools/k8s/images/build.sh OUT_DIR   (writes OUT_DIR/pause.tar and OUT_DIR/busybox.tar)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/pause"
cc -static -O2 -o "$work/pause/pause" "$here/pause.c"
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' > "$work/pause/Dockerfile"
docker build -q -t mlops-k8s/pause:1 "$work/pause" >/dev/null

mkdir -p "$work/busybox/rootfs/bin" "$work/busybox/rootfs/tmp" "$work/busybox/rootfs/etc"
cp /bin/busybox "$work/busybox/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/busybox/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/busybox/rootfs/etc/passwd"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["/bin/sh"]\n' > "$work/busybox/Dockerfile"
docker build -q -t mlops-k8s/busybox:1 "$work/busybox" >/dev/null

docker save -o "$out/pause.tar" mlops-k8s/pause:1
docker save -o "$out/busybox.tar" mlops-k8s/busybox:1
