#!/usr/bin/env bash
# Builds the libFuzzer drivers (tests/fuzz/fuzz_*.c) with clang into build-fuzz/ and runs
# each for SECONDS (default 60). A crash leaves its input in build-fuzz/fuzz/ and fails.
#   usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DHERALD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" >/dev/null
status=0
for f in build-fuzz/fuzz/fuzz_*; do
  name=$(basename "$f")
  corpus=build-fuzz/corpus-$name
  mkdir -p "$corpus"
  seeds=tests/fuzz/seeds/$name
  [ -d "$seeds" ] || seeds=
  echo "== $name for ${secs}s"
  if ! (cd build-fuzz/fuzz && "./$name" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
          "../corpus-$name" ${seeds:+"../../$seeds"} 2>"$name.log"); then
    tail -40 "build-fuzz/fuzz/$name.log"; status=1
  else
    grep -E 'stat::number_of_executed_units|Done' "build-fuzz/fuzz/$name.log" | tail -2
  fi
done
exit "$status"
