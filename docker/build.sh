#!/usr/bin/env bash
# Builds the mlops image (docker/Dockerfile) with the local Docker engine, its base image made by
# tools/docker-base.sh when the engine lacks it (nothing is pulled here).
#   docker/build.sh [TAG]                          compiles from source (the runtime target)
#   docker/build.sh --prebuilt BUILD_DIR [TAG]     packs the binaries of a build dir (what CI does:
#                                                  the C++ compiles once, in the test build)
#   docker/build.sh --router [TAG]                 the router image (docker/router; nginx from
#                                                  Debian's package), default mlops/router:dev
# TAG defaults to mlops/mlops:dev. Prints the image's size on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prebuilt=""
router=""
if [ "${1:-}" = "--router" ]; then
  router=1
  shift
fi
if [ "${1:-}" = "--prebuilt" ]; then
  prebuilt="${2:?--prebuilt needs the build dir (e.g. build/default)}"
  shift 2
fi
tag="${1:-mlops/mlops:dev}"
[ -z "$router" ] || tag="${1:-mlops/router:dev}"
base="$("$root/tools/docker-base.sh")"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
version="$(git -C "$root" describe --tags --always 2>/dev/null || echo dev)"
source_url="$(git -C "$root" remote get-url origin 2>/dev/null || echo unknown)"
args=(--build-arg "BASE=$base" --build-arg "REVISION=$revision" --build-arg "VERSION=$version"
      --build-arg "SOURCE=$source_url" -t "$tag")
if [ -n "$router" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  docker build "${args[@]}" "$root/docker/router" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; echo "docker/build: the router image did not build" >&2; exit 1; }
elif [ -n "$prebuilt" ]; then
  # A context of its own: the Dockerfile, bin/ with the stripped programs, the demo's files.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin"
  for p in tools/server/mlops-server services/metadata/mlops-metadata \
    services/artifact/mlops-artifact services/scheduler/mlops-scheduler \
    services/monitoring/mlops-monitoring tools/cli/mlops services/scheduler/mlops-step-waiter \
    examples/mlops-example; do
    [ -x "$prebuilt/$p" ] || { echo "docker/build: no $prebuilt/$p (build first)" >&2; exit 1; }
    install -s -m 0755 "$prebuilt/$p" "$work/bin/"
  done
  mkdir -p "$work/examples"
  cp "$root/examples/pipeline.yaml" "$root/examples/register.sh" "$work/examples/"
  cp "$root/docker/Dockerfile" "$work/Dockerfile"
  docker build -q --target prebuilt "${args[@]}" "$work" >/dev/null
else
  docker build -q --target runtime "${args[@]}" -f "$root/docker/Dockerfile" "$root" >/dev/null
fi
echo "$tag $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
