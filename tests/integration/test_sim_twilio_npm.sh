#!/usr/bin/env bash
# The official `twilio` npm client (version pinned in tests/oracle/twilio/package.json)
# against build/twilio-sim: create, fetch, list with paging, RestException codes.
# Installs node_modules on first use (needs the npm registry); skips (exit 0, "skipped")
# when node/npm or the registry are unavailable. Prints "N passed, M failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
oracle=$here/../oracle/twilio
SIM=${TWILIO_SIM_BIN:-${HERALD_BUILD_DIR:-$here/../../build}/twilio-sim}
[ -x "$SIM" ] || { echo "twilio-sim not found at $SIM" >&2; exit 1; }
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node/npm not installed: skipped"; exit 0
fi
if [ ! -d "$oracle/node_modules/twilio" ]; then
  (cd "$oracle" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
    { echo "npm install failed (no registry?): skipped"; exit 0; }
fi
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ACCT=AC0123456789abcdef0123456789abcdef
TOKEN=npmtesttoken
"$SIM" --listen 127.0.0.1:0 --account-sid "$ACCT" --auth-token "$TOKEN" --port-file "$tmp/port" --mps 1000 \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "sim did not start"; cat "$tmp/err"; exit 1; }
node "$oracle/sim_client.js" "http://127.0.0.1:$(cat "$tmp/port")" "$ACCT" "$TOKEN" | tee "$tmp/node.out"
status=${PIPESTATUS[0]}
passed=$(grep -c '^ok' "$tmp/node.out")
failed=$(grep -c '^FAIL' "$tmp/node.out")
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
