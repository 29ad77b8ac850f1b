#!/usr/bin/env bash
# Inbound-webhook throughput: signed Twilio webhooks against the real `herald serve`,
# each committed with its rule actions (auto-reply TwiML + add-tag + create-lead) before
# the 200. Starts a private Postgres (fsync on unless FSYNC=off), pre-signs N requests
# with unique MessageSids (python), and drives them with wrk; prints wrk's figures, the
# number of messages stored and the load average.
#   usage: bench/bench_webhook_wrk.sh [BUILD_DIR] (env: DURATION=15s CONNS=64 THREADS=2 N=150000)
set -euo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
HERALD=$BUILD/herald
DURATION=${DURATION:-15s}; CONNS=${CONNS:-64}; THREADS=${THREADS:-2}; N=${N:-150000}
dir=$(mktemp -d /tmp/herald-benchwh.XXXXXX); chmod 755 "$dir"
serve_pid=
cleanup() { [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; wait 2>/dev/null; bash "$SRC/tests/integration/pgtmp.sh" stop "$dir/pg.state" >/dev/null 2>&1; rm -rf "$dir"; }
trap cleanup EXIT
bash "$SRC/tests/integration/pgtmp.sh" start "$dir/pg.state" >/dev/null
pgdir=$(cut -f1 "$dir/pg.state")
if [ "${FSYNC:-on}" = on ]; then
  # pgtmp.sh starts with fsync off for tests; the bench measures durable commits.
  as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$(stat -c %U "$pgdir/data")" -- "$@"; else "$@"; fi; }
  PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
  as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null
  as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories=$pgdir/run -c max_connections=200" start >/dev/null
fi
export DATABASE_URL=$(cut -f2 "$dir/pg.state")
TOKEN=benchtoken; OUR=+15005550006
export HERALD_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$HERALD" org create bench --account-sid AC0123456789abcdef0123456789abcdef --auth-token $TOKEN --number $OUR >/dev/null 2>&1
org=$(psql "$DATABASE_URL" -XAtqc "select id from orgs where name='bench'")
psql "$DATABASE_URL" -XAtqc "insert into rule_sets (org_id, number, version, document) values ($org, '$OUR', 1, '{\"number\": \"$OUR\", \"rules\": [{\"name\": \"price\", \"when\": {\"regex\": \"\\\\\\\\b(price|cost)\\\\\\\\b\", \"flags\": \"i\"}, \"actions\": [{\"type\": \"auto-reply\", \"body\": \"Prices: example.com/p\"}, {\"type\": \"add-tag\", \"tag\": \"pricing\"}]}, {\"name\": \"rest\", \"when\": {\"any\": true}, \"actions\": [{\"type\": \"create-lead\"}]}]}'::jsonb)" >/dev/null
PUB=https://hooks.bench.test
HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=$PUB HERALD_LOG_LEVEL=error HERALD_DB_POOL=${POOL:-8} \
  "$HERALD" serve --port-file "$dir/port" >/dev/null 2>"$dir/err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
PORT=$(cat "$dir/port")
python3 - "$dir/reqs.txt" "$N" "$TOKEN" "$PUB/connect/webhook/twilio/sms" "$OUR" <<'PY'
import base64, hashlib, hmac, sys, urllib.parse
out, n, token, url, our = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4], sys.argv[5]
with open(out, "w") as f:
    pass
    for i in range(n):
        p = {"AccountSid": "AC0123456789abcdef0123456789abcdef", "MessageSid": "SMb%030d" % i,
             "From": "+1415%07d" % (i % 100000), "To": our, "NumMedia": "0",
             "Body": "what is the price?" if i % 2 else "hello there"}
        data = url + "".join(k + p[k] for k in sorted(p))
        sig = base64.b64encode(hmac.new(token, data.encode(), hashlib.sha1).digest()).decode()
        f.write("%s %s\n" % (sig, urllib.parse.urlencode(p)))
PY
cat >"$dir/wh.lua" <<LUA
reqs = {}
for line in io.lines("$dir/reqs.txt") do
  local sig, body = line:match("^(%S+) (.*)$")
  reqs[#reqs + 1] = {body, sig}
end
local counter = 0
local nthreads = 0
setup = function(thread) thread:set("tid", nthreads); nthreads = nthreads + 1 end
init = function() counter = tid or 0 end
request = function()
  local r = reqs[(counter % #reqs) + 1]
  counter = counter + $THREADS
  return wrk.format("POST", "/connect/webhook/twilio/sms",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = r[2]}, r[1])
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms\n", latency:percentile(50)/1000, latency:percentile(99)/1000, latency:percentile(99.9)/1000))
end
LUA
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$dir/wh.lua" "http://127.0.0.1:$PORT" | grep -v "^  *[0-9.]*%" 
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "messages stored: $(psql "$DATABASE_URL" -XAtqc "select count(*) from messages where direction='inbound'")," \
     "events: $(psql "$DATABASE_URL" -XAtqc "select count(*) from conversation_events")," \
     "fsync: $(psql "$DATABASE_URL" -XAtqc "show fsync")"
