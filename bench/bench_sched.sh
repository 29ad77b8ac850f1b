#!/usr/bin/env bash
# Scheduler benchmarks against twilio-sim on loopback and a throwaway Postgres cluster.
# Prints figures (with the load average beside each, since the machine is shared);
# asserts nothing. Each mode is bounded in time.
#
#   bench_sched.sh unthrottled [N=200000]        end-to-end msgs/s, Postgres state included
#                                                 (UPLOAD=1: recipients come from a CSV upload and
#                                                 are moved into the outbox while sending)
#   bench_sched.sh throttled [RATE=50] [SECS=30] [SEGS=1]  achieved segments/s and the worst 1-s window
#   bench_sched.sh faults [N=20000]               5% 500s, 5% 429s, 1% lost responses, via serve
#   bench_sched.sh crash [N=100000] [KILLS=5]     kill -9 at random moments, restart: exactly once?
#   bench_sched.sh rss [N=500000]                 peak RSS of `campaign run` for N recipients
#
# env: HERALD_BUILD_DIR (default ./build), HERALD_TEST_PG_STATE (reuse a cluster; else one
# is started and stopped here). unthrottled also takes SCHED_PERF=FILE (perf record -a -g
# during the run only; read it with perf report -i FILE --sort comm,dso) and, when the
# cluster preloads pg_stat_statements, prints the statements that took the most time
# (PGSS_TOP=N of them, default 8; with pg_stat_statements.track = all, those inside functions too).
set -uo pipefail
mode=${1:-unthrottled}
B=${HERALD_BUILD_DIR:-$(pwd)/build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
HERALD=$B/herald
SIM=$B/twilio-sim
dir=$(mktemp -d /tmp/herald-bench.XXXXXX)
own_pg=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ "$own_pg" = 1 ] && "$SRC/tests/integration/pgtmp.sh" stop "$dir/pg.state" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

state=${HERALD_TEST_PG_STATE:-}
if [ -z "$state" ]; then
  state=$dir/pg.state
  "$SRC/tests/integration/pgtmp.sh" start "$state" >/dev/null || exit 1
  own_pg=1
fi
base=$(cut -f2 "$state")
db=bench_sched_$$
psql "$base" -qc "CREATE DATABASE $db" >/dev/null || exit 1
export DATABASE_URL="${base/dbname=postgres/dbname=$db}"
export TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef TWILIO_AUTH_TOKEN=benchtoken
export HERALD_QUIET_HOURS=off HERALD_LOG_LEVEL=error
unset HERALD_PUBLIC_URL TWILIO_API_KEY TWILIO_API_SECRET
sql() { psql "$DATABASE_URL" -XAtqc "$1"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds used so far by the cluster (postmaster, live children, and reaped ones),
# or by one process: what a run costs whatever else the machine is doing.
pgdata=$(cut -f1 "$state")/data
cpu_s() { # [PID]  (default: the Postgres cluster)
  python3 - "${1:-}" "$pgdata" <<'EOF'
import os, sys
hz = os.sysconf('SC_CLK_TCK')
def stat(pid):
    f = open('/proc/%s/stat' % pid).read()
    return f[f.rindex(')') + 2:].split()
if sys.argv[1]:
    st = stat(sys.argv[1]); print((int(st[11]) + int(st[12])) / hz); sys.exit()
pm = open(sys.argv[2] + '/postmaster.pid').readline().strip()
st = stat(pm); t = sum(int(x) for x in st[11:15])
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            st = stat(p)
        except OSError:
            continue
        if st[1] == pm:
            t += int(st[11]) + int(st[12])
print(t / hz)
EOF
}

start_sim() { # LEDGER flags...
  local l=$1; shift
  "$SIM" --listen 127.0.0.1:0 --ledger "$l" --log-level ${SIM_LOG_LEVEL:-error} --max-messages ${SIM_MAX_MESSAGES:-6000000} "$@" >"$dir/sim.out" 2>"$dir/sim.err" &
  sim_pid=$!; pids+=("$sim_pid")
  for _ in $(seq 600); do [ -s "$dir/sim.out" ] && break; sleep 0.05; done
  [ -s "$dir/sim.out" ] || { echo "twilio-sim did not start: $(cat "$dir/sim.err")"; exit 1; }
  export TWILIO_API_BASE_URL="http://$(head -1 "$dir/sim.out" | sed 's/^listening on //')"
}
stop_sim() { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }

# Creates a campaign and queues N recipients directly (the upload is benchmarked elsewhere).
campaign() { # NAME N [create flags...]   (SEGS=k in the environment: k-segment messages)
  local name=$1 n=$2; shift 2
  local id
  if [ -n "${UPLOAD:-}" ]; then
    # UPLOAD=1: through a CSV upload, so the run includes moving the recipients into the
    # outbox (herald_fill, with their contacts) as a real campaign does.
    id=$("$HERALD" campaign create --name "$name" --body "$name: hello {{first_name}}" --from +15005550006 \
         "$@" 2>/dev/null) || exit 1
    awk -v n="$n" 'BEGIN { split("212 312 415 617 206 305 512 720", a, " "); print "phone,first_name";
      for (i = 0; i < n; i++) printf "+1%s%07d,F%d\n", a[i % 8 + 1], 2000000 + int(i / 8), i }' >"$dir/upload.csv"
    "$HERALD" campaign upload "$id" "$dir/upload.csv" >"$dir/upload.out" 2>&1 || { cat "$dir/upload.out"; exit 1; }
    echo "$id"
    return
  fi
  id=$("$HERALD" campaign create --name "$name" --body "$name {{first_name}}" --from +15005550006 "$@" 2>/dev/null) || exit 1
  sql "INSERT INTO outbox (org_id, campaign_id, to_e164, body, segments, encoding)
       SELECT org_id, id, '+1' || (2000000000 + g)::text, '$name: hello friend ' || g, ${SEGS:-1}, 'GSM-7'
       FROM campaigns, generate_series(1, $n) g WHERE id = $id" >/dev/null
  sql "ANALYZE outbox" >/dev/null
  echo "$id"
}

ledger_check() { # LEDGER NAME -> "recipients duplicates lines first_ms last_ms"
  python3 - "$1" "$2" <<'EOF'
import json, sys, collections
c = collections.Counter(); t0 = t1 = None
for line in open(sys.argv[1]):
    m = json.loads(line)
    if not m['body'].startswith(sys.argv[2] + ':'): continue
    c[m['to']] += 1
    t = m['time_ms']; t0 = t if t0 is None else min(t0, t); t1 = t if t1 is None else max(t1, t)
print(len(c), sum(1 for v in c.values() if v > 1), sum(c.values()), t0 or 0, t1 or 0)
EOF
}

case "$mode" in
unthrottled)
  n=${2:-200000}
  start_sim "$dir/l.jsonl" --mps 10000000
  id=$(campaign unthr "$n")
  pgss=$(sql "SELECT count(*) FROM pg_settings WHERE name = 'shared_preload_libraries' AND setting LIKE '%pg_stat_statements%'")
  if [ "$pgss" = 1 ]; then
    sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
    sql "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  if [ -n "${SCHED_PERF:-}" ]; then
    perf record -a -g -F 499 -o "$SCHED_PERF" >/dev/null 2>"$dir/perf.err" &
    perf_pid=$!
    sleep 1
  fi
  l0=$(load)
  pg0=$(cpu_s); sim0=$(cpu_s "$sim_pid")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$dir/rss" "$HERALD" campaign run "$id" --quiet >/dev/null 2>"$dir/run.err"
  t1=$(date +%s.%N)
  pg1=$(cpu_s); sim1=$(cpu_s "$sim_pid")
  [ -n "${SCHED_PERF:-}" ] && { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null; }
  read -r rss_kb cpu_u cpu_sys <"$dir/rss"
  echo "$rss_kb" >"$dir/rss"
  python3 - "$n" "$cpu_u" "$cpu_sys" "$pg0" "$pg1" "$sim0" "$sim1" <<'EOF'
import sys
n = int(sys.argv[1]); h = float(sys.argv[2]) + float(sys.argv[3])
pg = float(sys.argv[5]) - float(sys.argv[4]); sim = float(sys.argv[7]) - float(sys.argv[6])
us = lambda x: x * 1e6 / n
tot = us(h) + us(pg) + us(sim)
print(f"  CPU per message: herald {us(h):.1f} us, Postgres {us(pg):.1f} us, twilio-sim {us(sim):.1f} us; "
      f"total {tot:.1f} us = at most {2e6 / tot:.0f} msg/s on 2 idle cores")
EOF
  if [ "$pgss" = 1 ]; then
    echo "  Postgres statements by total time (pg_stat_statements, this database):"
    psql "$DATABASE_URL" -XAtqF' | ' -c "SELECT round(total_exec_time)::text || ' ms', calls, round((total_exec_time * 1000 / GREATEST($n, 1))::numeric, 1)::text || ' us/msg', left(regexp_replace(query, '\s+', ' ', 'g'), 90)
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()
       ORDER BY total_exec_time DESC LIMIT ${PGSS_TOP:-8}" | sed 's/^/    /'
  fi
  sleep 0.5
  read -r rec dup lines f l <<<"$(ledger_check "$dir/l.jsonl" unthr)"
  left=$(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND state <> 'sent'")
  python3 - "$n" "$t0" "$t1" "$f" "$l" "$(cat "$dir/rss")" "$rec" "$dup" "$left" "$l0" "$(load)" <<'EOF'
import sys
n, t0, t1, f, l, rss, rec, dup, left = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8], sys.argv[9]
print(f"unthrottled: {n} recipients in {t1-t0:.1f} s end to end (process start to every row recorded in Postgres) = {n/(t1-t0):.0f} msg/s")
print(f"  provider side (first to last ledger entry): {(l-f)/1000:.1f} s = {n/max((l-f)/1000,0.001):.0f} msg/s")
print(f"  ledger: {rec} recipients, {dup} duplicates; rows not 'sent': {left}; peak RSS {rss/1024:.1f} MB")
print(f"  load average before: {sys.argv[10]}  after: {sys.argv[11]}")
EOF
  ;;
throttled)
  rate=${2:-50}; secs=${3:-30}; export SEGS=${4:-1}
  n=$(python3 -c "print(int($rate * ($secs + 8) / $SEGS))")
  start_sim "$dir/l.jsonl" --mps 10000000
  id=$(campaign "thr$rate" "$n" --rate "$rate")
  l0=$(load)
  "$HERALD" campaign run "$id" --quiet >/dev/null 2>"$dir/run.err" &
  rp=$!; pids+=("$rp")
  sleep $((secs + 4))
  kill -TERM "$rp"; wait "$rp" 2>/dev/null
  sleep 0.5
  python3 - "$dir/l.jsonl" "thr$rate" "$rate" "$secs" "$l0" "$(load)" "$SEGS" <<'EOF'
import json, sys, collections
name, rate, secs = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
segs = int(sys.argv[7])
# Each ledger entry stands for its segments (the outbox says segs; the bucket charges that).
t = sorted(x for l in open(sys.argv[1]) if json.loads(l)['body'].startswith(name + ':') for x in [json.loads(l)['time_ms']] * segs)
c = collections.Counter(json.loads(l)['to'] for l in open(sys.argv[1]) if json.loads(l)['body'].startswith(name + ':'))
t0 = t[0]
inwin = [x for x in t if t0 <= x < t0 + secs * 1000]
achieved = len(inwin) / secs
best, j = 0, 0
for i in range(len(t)):
    while t[i] - t[j] >= 1000: j += 1
    best = max(best, i - j + 1)
burst = max(1, rate / 10)
# steady state: skip the first second (the bucket starts full with one burst)
steady = [x for x in t if t0 + 1000 <= x < t0 + 1000 + (secs - 1) * 1000]
print(f"throttled {rate:g} seg/s ({segs}-segment messages): {len(inwin)} segments in the first {secs} s = {achieved:.2f}/s ({(achieved/rate-1)*100:+.2f}% incl. the initial burst of {burst:g}); "
      f"steady state {len(steady)/(secs-1):.2f}/s ({(len(steady)/(secs-1)/rate-1)*100:+.2f}%)")
print(f"  worst 1-second sliding window: {best} (limit rate+burst = {rate+burst:g}); duplicates: {sum(1 for v in c.values() if v > 1)}")
print(f"  load average before: {sys.argv[5]}  after: {sys.argv[6]}")
EOF
  ;;
faults)
  n=${2:-20000}
  start_sim "$dir/l.jsonl" --mps 10000000 --fail-500 0.05 --fail-429 0.05 --lose-response 0.01 --seed 42 \
    --delivery-ms 200 --sending-ms 20
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  id=$(campaign faults "$n")
  l0=$(load)
  HERALD_RETRY_BASE_MS=200 HERALD_RETRY_MAX_MS=3000 HERALD_LISTEN=127.0.0.1:$port HERALD_PUBLIC_URL=http://127.0.0.1:$port \
    "$HERALD" serve >/dev/null 2>"$dir/serve.err" &
  sp=$!; pids+=("$sp")
  sleep 1
  t0=$(date +%s)
  "$HERALD" campaign start "$id" >/dev/null
  for _ in $(seq 240); do
    left=$(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND state IN ('queued','sending')")
    [ "$left" = 0 ] && break
    sleep 1
  done
  t1=$(date +%s)
  # Then give the status callbacks (delivered/undelivered) up to 30 s to arrive.
  for _ in $(seq 30); do
    [ "$(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND state = 'sent'")" = 0 ] && break
    sleep 1
  done
  left=$(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND state IN ('queued','sending','sent')")
  kill -0 "$sim_pid" 2>/dev/null || echo "  twilio-sim died: $(tail -3 "$dir/sim.err")"
  simstats=$(curl -s "$TWILIO_API_BASE_URL/sim/stats")
  kill -TERM "$sp"; wait "$sp" 2>/dev/null
  read -r rec dup lines f l <<<"$(ledger_check "$dir/l.jsonl" faults)"
  echo "faults (5% 500, 5% 429, 1% lost response), $n recipients through herald serve: all sent or terminal in $((t1 - t0)) s"
  echo "  final states: $(sql "SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM outbox WHERE campaign_id=$id GROUP BY 1 ORDER BY 1) s")"
  echo "  not final (queued/sending/sent): $left; ledger: $rec recipients, $dup duplicates, $lines lines"
  echo "  retried rows: $(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND attempts > 1"); lost responses in ledger: $(grep -c '"response_lost":true' "$dir/l.jsonl")"
  echo "  simulator webhooks: $(echo "$simstats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(", ".join("%s %s" % (k, d.get(k)) for k in ("callbacks_delivered", "callback_retries", "callbacks_dropped", "callback_errors", "callbacks_waiting")))' 2>/dev/null)"
  echo "  load average before: $l0  after: $(load)"
  ;;
crash)
  n=${2:-100000}; kills=${3:-5}
  start_sim "$dir/l.jsonl" --mps 10000000 --latency-ms 5
  id=$(campaign crash "$n")
  l0=$(load)
  export HERALD_LEASE_SECONDS=5
  for k in $(seq "$kills"); do
    "$HERALD" campaign run "$id" --quiet >/dev/null 2>>"$dir/run.err" &
    p=$!
    d=$(python3 -c "import random; print(round(random.uniform(0.5, 4.0), 2))")
    sleep "$d"
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
    echo "  kill -9 #$k after ${d}s: $(sql "SELECT count(*) FILTER (WHERE state='sent') || ' sent, ' || count(*) FILTER (WHERE state='sending') || ' sending (in flight or unknown)' FROM outbox WHERE campaign_id=$id")"
  done
  t0=$(date +%s)
  "$HERALD" campaign run "$id" --quiet >/dev/null 2>>"$dir/run.err"
  t1=$(date +%s)
  sleep 0.5
  read -r rec dup lines f l <<<"$(ledger_check "$dir/l.jsonl" crash)"
  echo "crash: $kills x kill -9 during a $n-recipient campaign, then a final run ($((t1 - t0)) s)"
  echo "  ledger: $rec recipients, $dup duplicates, $lines lines (want $n $n 0 $n); rows sent: $(sql "SELECT count(*) FROM outbox WHERE campaign_id=$id AND state='sent'")"
  echo "  reconciled after restarts (rows that were in flight): see run.err; load average before: $l0  after: $(load)"
  ;;
rss)
  n=${2:-500000}
  start_sim "$dir/l.jsonl" --mps 10000000
  id=$(campaign rss "$n")
  l0=$(load)
  /usr/bin/time -f "%M %e" -o "$dir/rss" "$HERALD" campaign run "$id" --quiet >/dev/null 2>"$dir/run.err"
  read -r kb secs <"$dir/rss"
  echo "rss: campaign run of $n recipients: peak RSS $((kb / 1024)) MB in $secs s; load average before: $l0  after: $(load)"
  ;;
*)
  sed -n '2,14p' "$0"; exit 2 ;;
esac
psql "$base" -qc "DROP DATABASE $db" >/dev/null 2>&1
