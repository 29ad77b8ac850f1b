#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install packages, build twice
# (normal and ASan+UBSan), run every unit and integration test under CTest in both.
# Integration tests start their own throwaway Postgres cluster (tests/integration/pgtmp.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

status=0
run_suite() {
  local dir=$1; shift
  echo "== build $dir"
  bash scripts/build.sh "$dir" "$@"
  echo "== ctest $dir"
  (cd "$dir" && ctest -j2 --output-on-failure --timeout 600) || status=1
}

run_suite build
# -O3 sees more of gcc's flow warnings (-Wmaybe-uninitialized) than -O2: compile only.
echo "== build build-release"
bash scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release || status=1
# Sanitizers: ASan + UBSan, abort on the first report.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan -DHERALD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

if [ "$status" -ne 0 ]; then
  echo "test.sh: FAILED" >&2
fi
exit "$status"
