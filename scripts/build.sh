#!/usr/bin/env bash
# Configures and builds Herald.  usage: scripts/build.sh [BUILD_DIR [extra cmake args...]]
# Default BUILD_DIR is build/ (binaries: build/herald). Warnings are errors here.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}; shift || true
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERALD_WERROR=ON "$@" >"$dir.cmake.log" 2>&1 \
    || { cat "$dir.cmake.log" >&2; exit 1; }
  rm -f "$dir.cmake.log"
fi
set +e
cmake --build "$dir" -j"$(nproc)" 2>&1 | grep -Ev '^\[ *[0-9]+%\] (Building|Linking|Built|Embedding|Generating)'
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
