#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, runs every test with ctest, then
# builds the unit tests and the fuzz targets with clang ASan+UBSan and runs them (each fuzzer
# replays its corpus and fuzzes 10 s), then the threaded unit tests with ThreadSanitizer. Exits
# non-zero on any failure.
#   tools/test.sh            everything
#   SKIP_ASAN=1 tools/test.sh  skip the ASan+UBSan pass and the fuzzers (local iteration only)
#   SKIP_FUZZ=1 tools/test.sh  skip the fuzz stage (tools/fuzz.sh --seconds 10) after ASan+UBSan
#   SKIP_TSAN=1 tools/test.sh  skip the ThreadSanitizer pass (local iteration only; CI runs it)
#   SKIP_E2E=1 tools/test.sh   skip the deployment test on docker/compose.yaml (images, Prometheus)
#   SKIP_PYTHON=1 tools/test.sh  skip the Python SDK stage (installed into a venv, pytest)
#   SKIP_UI=1 tools/test.sh    skip the web UI stage (headless Chromium + Selenium, tests/ui)
#   SKIP_K8S=1 tools/test.sh   skip the Kubernetes stage: a real single-node cluster (tools/k8s),
#                              its binaries built from the Go module proxy into a cache dir once
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

tools/bootstrap.sh

step() { echo; echo "== $* ($(( $(date +%s) - start ))s)"; }

step "format check (clang-format, Google style, 100 columns: C++ and the web UI's JavaScript)"
mapfile -t sources < <(git ls-files '*.cc' '*.h' '*.js' 2>/dev/null || find services tools tests ui -name '*.cc' -o -name '*.h' -o -name '*.js')
if [ "${#sources[@]}" -gt 0 ]; then
  clang-format --dry-run --Werror "${sources[@]}"
fi

step "configure and build (default preset)"
cmake --preset default >/dev/null
cmake --build --preset default -j2

step "ctest (default preset)"
ctest --preset default -j2 --timeout 600

if [ "${SKIP_PYTHON:-0}" != "1" ]; then
  step "Python SDK: installed into a venv over Debian's packages, pytest against real servers"
  # The install docs/python.md gives: Debian's /usr/bin/python3 (grpcio, protobuf and numpy from
  # Debian), a venv that sees them, and pip without build isolation or downloads.
  rm -rf build/default/venv
  /usr/bin/python3 -m venv --system-site-packages build/default/venv
  build/default/venv/bin/pip install --quiet --no-build-isolation --no-deps --no-index ./python
  (cd tests/python && MLOPS_BUILD_DIR="$PWD/../../build/default" \
    ../../build/default/venv/bin/python -m pytest -q -p no:cacheprovider .)
fi

if [ "${SKIP_UI:-0}" != "1" ]; then
  step "web UI: headless Chromium (Selenium) against mlops-server after the demo, 100,000 runs (tests/ui)"
  ui_packages=(chromium chromium-driver python3-selenium)
  for p in "${ui_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends "${ui_packages[@]}" >/dev/null
      break
    fi
  done
  (cd tests/ui && MLOPS_BUILD_DIR="$PWD/../../build/default" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider .)
  echo "screenshots of every page: build/default/ui-screenshots/"
fi

if [ "${SKIP_E2E:-0}" != "1" ]; then
  step "e2e: docker/compose.yaml with the images of this build (tests/e2e/compose_test.sh)"
  command -v docker-compose >/dev/null ||
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  tests/e2e/compose_test.sh build/default
fi

if [ "${SKIP_K8S:-0}" != "1" ]; then
  step "Kubernetes binaries (tools/k8s/build.sh; cached after the first run)"
  tools/k8s/build.sh >/dev/null
  step "a real single-node Kubernetes (tools/k8s/up.sh), checked"
  k8s_dir="$(mktemp -d /tmp/mlops-k8s.XXXXXX)"
  trap 'tools/k8s/down.sh "$k8s_dir" || true' EXIT
  tools/k8s/up.sh "$k8s_dir" >/dev/null
  tools/k8s/check.sh "$k8s_dir"
  step "the step image (docker/step/build.sh) loaded into that cluster"
  docker/step/build.sh build/default/tools/cli/mlops mlops/step:dev >/dev/null
  tools/k8s/load-image.sh "$k8s_dir" mlops/step:dev
  step "Kueue's CRDs and controller manager in that cluster (tools/k8s/kueue.sh)"
  tools/k8s/kueue.sh "$k8s_dir"
  step "ctest -L k8s: the Kubernetes executor and pipelines on that cluster"
  (set -a; . "$k8s_dir/env"; set +a; ctest --preset default -L '^k8s$' --output-on-failure --timeout 600)
  step "the Helm chart: lint, strict validation, install, helm test, the demo through the router, upgrade, pod loss, all-in-one (tests/e2e/chart_test.sh)"
  tests/e2e/chart_test.sh "$k8s_dir"
  tools/k8s/down.sh "$k8s_dir"
  trap - EXIT
fi

if [ "${SKIP_ASAN:-0}" != "1" ]; then
  step "clang ASan+UBSan build of the unit tests and the libFuzzer targets"
  # A build dir that g++ configured (before the fuzzers) cannot switch compilers in place.
  grep -qs 'CMAKE_CXX_COMPILER:.*clang' build/asan/CMakeCache.txt || rm -rf build/asan
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j2 --target mlops_unit_tests mlops_fuzzers
  step "ctest -L unit and threaded (asan preset)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -L '^(unit|threaded)$' -j2 --timeout 900
  if [ "${SKIP_FUZZ:-0}" != "1" ]; then
    step "fuzz: every seed corpus and regression input replayed, each target fuzzed 10 s (tools/fuzz.sh)"
    tools/fuzz.sh --seconds 10
  fi
fi

if [ "${SKIP_TSAN:-0}" != "1" ]; then
  step "ThreadSanitizer build of the threaded unit tests (-O1, no debug info)"
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j2 --target mlops_threaded_tests
  step "ctest -L threaded (tsan preset)"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tools/tsan.supp" \
    ctest --preset tsan -L '^threaded$' -j2 --timeout 900
fi

step "all tests passed"
