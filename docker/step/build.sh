#!/usr/bin/env bash
# The minimal step image, built FROM scratch with the local Docker engine (nothing is pulled):
#   /mlops/bin/mlops     the CLI (`mlops step run` fetches inputs, runs the step, uploads outputs)
#   /mlops/lib/          every shared library it links, and their loader (ld-linux-x86-64.so.2),
#                        so that it runs in any image: the Kubernetes executor copies /mlops into
#                        user images through an init container and starts it through the loader
#   /bin/                Debian's busybox-static (sh, cp, ...) for steps and that copy
# Usage: docker/step/build.sh [MLOPS_BINARY] [TAG]
#   defaults: build/default/tools/cli/mlops (the release build's) and mlops/step:dev
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-$root/build/default/tools/cli/mlops}"
tag="${2:-mlops/step:dev}"
[ -x "$binary" ] || { echo "step image: no mlops binary at $binary (build first)" >&2; exit 1; }
[ -x /bin/busybox ] || apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fs="$work/rootfs"
mkdir -p "$fs/mlops/bin" "$fs/mlops/lib" "$fs/bin" "$fs/tmp" "$fs/etc"
chmod 1777 "$fs/tmp"
cp "$binary" "$fs/mlops/bin/mlops"
strip --strip-debug "$fs/mlops/bin/mlops" 2>/dev/null || true
# "libx.so.1 => /lib/.../libx.so.1 (0x...)" and the loader's own line "/lib64/ld-linux... (0x...)".
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' |
  while read -r lib; do
    cp -L "$lib" "$fs/mlops/lib/$(basename "$lib")"
  done
[ -e "$fs/mlops/lib/ld-linux-x86-64.so.2" ] || { echo "step image: no loader found by ldd" >&2; exit 1; }
cp /bin/busybox "$fs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$fs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$fs/etc/passwd"
# mlops on PATH runs through the bundled loader, whatever libc the image has.
cat > "$fs/bin/mlops" <<'EOT'
#!/bin/sh
exec /mlops/lib/ld-linux-x86-64.so.2 --library-path /mlops/lib /mlops/bin/mlops "$@"
EOT
chmod 755 "$fs/bin/mlops"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["/bin/sh"]\n' > "$work/Dockerfile"
docker build -q -t "$tag" "$work" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
echo "$tag"
