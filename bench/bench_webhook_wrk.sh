#!/usr/bin/env bash
# Inbound-webhook throughput and latency: signed Twilio webhooks against the real
# `herald serve`, each committed with its rule actions before the 200. Half the messages
# ask for the price: rule "price" answers in TwiML (auto-reply), tags the contact
# (add-tag) and continues to rule "rest", which opens a lead (create-lead); the other
# half only open a lead. After the run the database is checked against that mix
# (TwiML replies = price messages, events = 3 x price + 1 x other, one open lead per
# contact, tagged contacts = price senders) and the check is printed.
#
# Postgres: a private cluster with the server defaults for durability (fsync on,
# synchronous_commit on, commit_delay 0) unless FSYNC=off; the settings used are
# printed. PG_OPTS adds server options (e.g. PG_OPTS="-c commit_delay=200
# -c commit_siblings=5" for group commit); say which you used next to the figures.
#
# Drivers: DRIVER=load (default) runs bench/bench_webhook_load (C, libuv; open loop
# with LOAD_ARGS="--rate 2000", or --max); DRIVER=wrk pre-signs N requests (python) and
# runs wrk (closed loop: its latencies suffer coordinated omission).
#   usage: bench/bench_webhook_wrk.sh [BUILD_DIR]
# CPU per request is printed for herald, all of Postgres and the load generator.
# PG_LOG=FILE keeps the server's log (e.g. with PG_OPTS="-c log_min_duration_statement=15").
# STATEMENTS=1 also loads pg_stat_statements (PG_OPTS gets the preload) and prints the
# statements, nested ones too, by total time, with the time spent planning them.
#   env: DRIVER=load|wrk POOL=2 STATEMENTS= WAL_WARM=on WAL_WARM_SEGS=48 LOAD_ARGS="--max --conns 128 --duration 10"
#        DURATION=15s CONNS=64 THREADS=2 N=150000 (wrk)
set -euo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
HERALD=$BUILD/herald
DRIVER=${DRIVER:-load}
LOAD_ARGS=${LOAD_ARGS:---max --conns 128 --duration 10 --warmup 2}
DURATION=${DURATION:-15s}; CONNS=${CONNS:-64}; THREADS=${THREADS:-2}; N=${N:-150000}
dir=$(mktemp -d /tmp/herald-benchwh.XXXXXX); chmod 755 "$dir"
serve_pid=
cleanup() { [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; wait 2>/dev/null
  [ -n "${PG_LOG:-}" ] && [ -n "${pgdir:-}" ] && cp "$pgdir/postgres.log" "$PG_LOG"; bash "$SRC/tests/integration/pgtmp.sh" stop "$dir/pg.state" >/dev/null 2>&1; rm -rf "$dir"; }
trap cleanup EXIT
bash "$SRC/tests/integration/pgtmp.sh" start "$dir/pg.state" >/dev/null
pgdir=$(cut -f1 "$dir/pg.state")
pgss=
[ -n "${STATEMENTS:-}" ] && pgss="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on"
if [ "${FSYNC:-on}" = on ]; then
  # pgtmp.sh starts with fsync, synchronous_commit and full_page_writes off for tests;
  # restart with the server defaults: the bench measures durable commits.
  as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$(stat -c %U "$pgdir/data")" -- "$@"; else "$@"; fi; }
  PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
  as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null
  as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories=$pgdir/run -c max_connections=200 ${PG_OPTS:-} $pgss" start >/dev/null
fi
export DATABASE_URL=$(cut -f2 "$dir/pg.state")
sql() { psql "$DATABASE_URL" -XAtqc "$1"; }
TOKEN=benchtoken; OUR=+15005550006; ACC=AC0123456789abcdef0123456789abcdef
export HERALD_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$HERALD" org create bench --account-sid $ACC --auth-token $TOKEN --number $OUR >/dev/null 2>&1
org=$(sql "select id from orgs where name='bench'")
cat >"$dir/rules.json" <<JSON
{"number": "$OUR",
 "rules": [
  {"name": "price", "when": {"regex": "\\\\b(price|cost)\\\\b", "flags": "i"}, "continue": true,
   "actions": [{"type": "auto-reply", "body": "Prices: example.com/p"}, {"type": "add-tag", "tag": "pricing"}]},
  {"name": "rest", "when": {"any": true}, "actions": [{"type": "create-lead"}]}
 ]}
JSON
"$HERALD" rules load "$dir/rules.json" --org "$org" >/dev/null
# The rule set must really match: check it before measuring anything.
"$HERALD" rules test --org "$org" --number $OUR --body "what is the price?" | grep -q "price" \
  || { echo "bench rules do not match a price question" >&2; exit 1; }
PUB=https://hooks.bench.test
HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=$PUB HERALD_LOG_LEVEL=error HERALD_DB_POOL=${POOL:-2} \
  "$HERALD" serve --port-file "$dir/port" >/dev/null 2>"$dir/err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
PORT=$(cat "$dir/port")
echo "postgres: fsync=$(sql 'show fsync') synchronous_commit=$(sql 'show synchronous_commit')" \
     "commit_delay=$(sql 'show commit_delay') commit_siblings=$(sql 'show commit_siblings'); HERALD_DB_POOL=${POOL:-2}"

# CPU ticks used so far by a process (utime + stime; with "all", plus its reaped
# children's) and by the whole Postgres cluster (the postmaster, its reaped children such
# as autovacuum workers, and its live children): the machine is shared, so the figure to
# judge by is CPU per request, not the wall clock.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk -v all="${2:-}" '{ print $12 + $13 + (all ? $14 + $15 : 0) }'; }
pg_ticks() {
  local pm t c
  pm=$(head -1 "$pgdir/data/postmaster.pid"); t=$(ticks "$pm" all)
  for c in $(pgrep -P "$pm"); do t=$((t + $(ticks "$c" 2>/dev/null || echo 0))); done
  echo "$t"
}
# The same, by kind of Postgres process (client backends, walwriter, checkpointer, ...;
# "reaped": exited children such as autovacuum workers), "kind=ticks" words.
pg_kinds() {
  local pm c k
  pm=$(head -1 "$pgdir/data/postmaster.pid")
  echo "postmaster+reaped=$(ticks "$pm" all)"
  for c in $(pgrep -P "$pm"); do
    k=$(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | sed 's/^postgres: //; s/.*\[local\].*/backends/; s/ .*//; s/:$//')
    echo "$k=$(ticks "$c" 2>/dev/null || echo 0)"
  done | awk -F= '{ t[$1] += $2 } END { for (k in t) printf "%s=%d\n", k, t[k] }'
}
cpu_report() {  # before: "herald_ticks pg_ticks"; $2: requests
  local hz h p
  hz=$(getconf CLK_TCK); read -r h p <<<"$1"
  h=$(( $(ticks "$serve_pid") - h )); p=$(( $(pg_ticks) - p ))
  awk -v h="$h" -v p="$p" -v n="$2" -v hz="$hz" 'BEGIN { if (n > 0)
    printf "CPU per request (%d requests): herald %.0f us, postgres %.0f us (all its processes)\n", n, h * 1e6 / hz / n, p * 1e6 / hz / n }'
}
# STATEMENTS=1: pg_stat_statements (nested statements too) over the run, printed after it.
if [ -n "${STATEMENTS:-}" ]; then
  sql "create extension if not exists pg_stat_statements" && sql "select pg_stat_statements_reset()" >/dev/null
fi
# WAL segments ready for reuse, as on a server that has run a while (WAL_WARM=off: none).
# A fresh cluster has none: each 16 MB segment the run fills is then created by writing
# zeros and fsyncing it, by the backend that needs it (a 10-20 ms stall every few
# seconds here), which a running server does only when its WAL outgrows what its
# checkpoints recycle. Filling WAL_WARM_SEGS segments and a checkpoint recycles them.
if [ "${WAL_WARM:-on}" = on ]; then
  for _ in $(seq "${WAL_WARM_SEGS:-48}"); do sql "select txid_current()" >/dev/null; sql "select pg_switch_wal()" >/dev/null; done
  sql "checkpoint"
fi
wal_ready() { sql "select count(*) from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$' and name > pg_walfile_name(pg_current_wal_lsn())"; }
echo "WAL: $(wal_ready) segments ready for reuse before the run (WAL_WARM=${WAL_WARM:-on})"
wal_before=$(sql "select pg_current_wal_lsn()")
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }  # NAME: an unlabelled one
# Time the hypervisor gave the machine's CPUs to others (steal, /proc/stat), in ticks: a
# run with much of it measured a slower machine, not a slower build.
steal() { awk '/^cpu / { print $9 }' /proc/stat; }
steal_before=$(steal)
cpu_before="$(ticks "$serve_pid") $(pg_ticks)"
kinds_before=$(pg_kinds)
batches_before=$(metric herald_webhook_batches_total); paced_before=$(metric herald_webhook_batches_paced_total)
paced_before=${paced_before:-0} # a build without pacing
msgs_before=$(sql "select count(*) from messages where direction = 'inbound'")

if [ "$DRIVER" = load ]; then
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  "$BUILD/bench/bench_webhook_load" --port "$PORT" --token $TOKEN --public-url $PUB --to $OUR --account $ACC \
    $LOAD_ARGS || true
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
else
python3 - "$dir/reqs.txt" "$N" "$TOKEN" "$PUB/connect/webhook/twilio/sms" "$OUR" <<'PY'
import base64, hashlib, hmac, sys, urllib.parse
out, n, token, url, our = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4], sys.argv[5]
with open(out, "w") as f:
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
fi

# What the database holds must be what the rules say.
sleep 0.5
if [ -n "${STATEMENTS:-}" ]; then
  psql "$DATABASE_URL" -XqP pager=off -c "select calls, round(total_exec_time::numeric / calls * 1000) as us_per_call,
    round(total_plan_time::numeric / calls * 1000) as plan_us, plans,
    round(max_exec_time::numeric, 1) as max_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90) as query
    from pg_stat_statements where calls > 0 order by total_exec_time desc limit 20"
fi
n=$(( $(sql "select count(*) from messages where direction = 'inbound'") - msgs_before ))
cpu_report "$cpu_before" "$n"
awk -v t="$(( $(steal) - steal_before ))" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "CPU stolen by the hypervisor during the run: %.2f s (both cores)\n", t / hz }'
awk -v b="$(sql "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_before')")" -v n="$n" -v left="$(wal_ready)" \
  'BEGIN { if (n > 0) printf "WAL: %.1f MB written, %.0f bytes per request; %d segments still ready\n", b / 1048576, b / n, left }'
{ echo "$kinds_before" | sed 's/^/0 /'; pg_kinds | sed 's/^/1 /'; } | awk -v n="$n" -v hz="$(getconf CLK_TCK)" '
  { split($2, a, "="); if ($1 == 0) b[a[1]] = a[2]; else e[a[1]] = a[2] }
  END { if (n > 0) { printf "postgres by process (us per request):"
        for (k in e) printf " %s %.0f", k, (e[k] - b[k]) * 1e6 / hz / n; printf "\n" } }'
# Each message takes part in one context batch and one apply batch: the CPU per message
# depends on how many share them.
awk -v b="$(( $(metric herald_webhook_batches_total) - batches_before ))" -v n="$n" \
  -v p="$(( $(metric herald_webhook_batches_paced_total) - paced_before ))" \
  'BEGIN { if (b > 0) printf "batched statements: %d, %.1f messages each; %d held back (HERALD_WEBHOOK_BATCH_GAP_US)\n", b, 2 * n / b, p }'
read -r inbound price twiml <<<"$(sql "select count(*) filter (where direction = 'inbound'),
  count(*) filter (where direction = 'inbound' and body ~* '\\m(price|cost)\\M'),
  count(*) filter (where direction = 'outbound' and status = 'twiml') from messages" | tr '|' ' ')"
events=$(sql "select count(*) from conversation_events")
leads=$(sql "select count(*) from leads where status = 'open'")
contacts=$(sql "select count(*) from contacts")
tagged=$(sql "select count(*) from contacts where 'pricing' = any (tags)")
price_senders=$(sql "select count(distinct c.contact_e164) from messages m join conversations c on c.id = m.conversation_id
  where m.direction = 'inbound' and m.body ~* '\\m(price|cost)\\M'")
want_events=$((3 * price + (inbound - price)))
echo "stored: $inbound messages ($price price questions), $twiml TwiML replies, $events events, $leads open leads," \
     "$contacts contacts, $tagged tagged"
if [ "$price" -gt 0 ] && [ "$twiml" -eq "$price" ] && [ "$events" -eq "$want_events" ] && [ "$leads" -eq "$contacts" ] \
   && [ "$tagged" -eq "$price_senders" ]; then
  echo "database check: ok (every message has its rule actions)"
else
  echo "database check: MISMATCH (want $price TwiML replies, $want_events events, $contacts leads, $price_senders tagged)"
  exit 1
fi
