#!/usr/bin/env bash
# Starts build/twilio-sim on a free loopback port and measures Messages.json creates
# per second over keep-alive with wrk, printing requests/s and latency percentiles.
#   usage: bench/twilio_sim_wrk.sh [BUILD_DIR] [SECONDS] [CONNECTIONS] [THREADS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
secs=${2:-10}
conns=${3:-64}
threads=${4:-2}
sim=${TWILIO_SIM_BIN:-$build/twilio-sim}
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export SIM_ACCOUNT=ACbench00000000000000000000000000 SIM_TOKEN=benchtoken
"$sim" --listen 127.0.0.1:0 --account-sid "$SIM_ACCOUNT" --auth-token "$SIM_TOKEN" \
  --port-file "$tmp/port" --ledger "$tmp/ledger.jsonl" --mps 1000000 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port")
echo "twilio-sim on 127.0.0.1:$port; wrk -t$threads -c$conns -d${secs}s (creates, keep-alive)"
wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$here/twilio_sim_create.lua" "http://127.0.0.1:$port" |
  grep -E '^(requests/s|latency p50|requests:)'
kill -TERM "$pid"; wait "$pid" || true; pid=
echo "ledger lines: $(wc -l <"$tmp/ledger.jsonl")"
