#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package that the build, the tests and the demo need.
# Safe to run again: when every package is already installed it does nothing.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ make pkg-config ccache git ca-certificates
  protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libprotoc-dev libabsl-dev
  librocksdb-dev libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev libcivetweb-dev
  libyaml-cpp-dev libssl-dev libcurl4-openssl-dev zlib1g-dev
  clang libclang-rt-14-dev libfuzzer-14-dev libjwt-dev
  prometheus clang-format curl openssl procps python3 restic graphviz libjs-chart.js libjs-d3
  python3-grpcio python3-protobuf python3-pytest python3-numpy python3-sklearn python3-venv
  python3-pip python3-setuptools
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "bootstrap: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    {
      echo "bootstrap: ${#missing[@]} Debian packages are missing and installing them needs root."
      echo "Run this as root, then run the command again:"
      echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
      echo "(or run tools/bootstrap.sh as root: su -c tools/bootstrap.sh)"
    } >&2
    exit 1
  fi
fi
echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done"
