#!/usr/bin/env bash
# Checks `herald sms info` against Twilio's own segment calculator, the npm
# package sms-segments-calculator pinned in tests/oracle/package.json: a few
# thousand generated messages (boundaries, extension characters, emoji, ZWJ
# sequences, flags, combining marks, Smart Encoding characters), with and without
# Smart Encoding. Any difference in encoding, segments or characters fails.
# Env: HERALD_BIN (default <source>/build/herald), HERALD_ORACLE_DIR (where the
# npm package is installed; default next to HERALD_BIN), ORACLE_SEED.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
bin=${HERALD_BIN:-$src/build/herald}
dir=${HERALD_ORACLE_DIR:-$(dirname "$bin")/oracle-node}

die() { echo "test_segments_oracle: $*" >&2; exit 1; }
[ -x "$bin" ] || die "herald binary not found at $bin (set HERALD_BIN)"
command -v node >/dev/null || die "node is required (apt-get install nodejs npm)"

mkdir -p "$dir"
if ! cmp -s "$src/tests/oracle/package.json" "$dir/package.json" ||
   [ ! -f "$dir/node_modules/sms-segments-calculator/package.json" ]; then
    command -v npm >/dev/null || die "npm is required to install the calculator"
    cp "$src/tests/oracle/package.json" "$dir/package.json"
    rm -rf "$dir/node_modules" "$dir/package-lock.json"
    npm install --no-audit --no-fund --loglevel=error --prefix "$dir" >&2 ||
        die "npm install failed in $dir"
fi

NODE_PATH="$dir/node_modules" node "$src/tests/oracle/oracle.js" "$bin" "${ORACLE_RANDOM:-1200}"
