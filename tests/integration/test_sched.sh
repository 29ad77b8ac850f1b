#!/usr/bin/env bash
# The scheduler end to end: the real herald binary, a fresh database in the fixture
# cluster and the real twilio-sim over loopback; the simulator's ledger is the proof
# of exactly-once. Covers: drain with every recipient once; 500/429/reset/lost-response
# faults (retries and reconciliation, no duplicates); 21610 -> suppressed with a
# 'provider' consent event; suppression re-checked at send time; terminal errors keep
# Twilio's code; pause/resume/cancel within a second; a cron run fired twice sends
# once; two processes on one campaign (no duplicates, sender rate held); kill -9 then
# restart; status callbacks through `herald serve` (forward only, signed) and the
# control API; run-due exit codes. Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
SIM=${TWILIO_SIM_BIN:?TWILIO_SIM_BIN must point at twilio-sim}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-sched.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

fresh_db herald_sched

export TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef
export TWILIO_AUTH_TOKEN=simtoken_$RANDOM
export HERALD_QUIET_HOURS=off HERALD_RETRY_BASE_MS=50 HERALD_RETRY_MAX_MS=500 HERALD_LEASE_SECONDS=6
export HERALD_LOG_LEVEL=warn
unset HERALD_PUBLIC_URL TWILIO_API_KEY TWILIO_API_SECRET TWILIO_MESSAGING_SERVICE_SID TWILIO_FROM_NUMBER
FROM=+15005550006

sim_pid=
start_sim() { # LEDGER [sim flags...]
  local ledger=$1; shift
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  "$SIM" --listen 127.0.0.1:0 --ledger "$ledger" --log-level error "$@" >"$dir/sim.out" 2>"$dir/sim.err" &
  sim_pid=$!
  pids+=("$sim_pid")
  for _ in $(seq 600); do [ -s "$dir/sim.out" ] && break; sleep 0.05; done
  [ -s "$dir/sim.out" ] || { echo "twilio-sim did not start: $(cat "$dir/sim.err")"; exit 1; }
  export TWILIO_API_BASE_URL="http://$(head -1 "$dir/sim.out" | sed 's/^listening on //')"
}
stop_sim() { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; sim_pid=; }

new_campaign() { # NAME N PREFIX [create flags...] -> campaign id
  local name=$1 n=$2 prefix=$3; shift 3
  local id
  id=$("$HERALD" campaign create --name "$name" --body "Hello {{first_name}}, news from $name" --from $FROM "$@" 2>>"$dir/err.log")
  python3 -c "
import sys
n, p = int(sys.argv[1]), sys.argv[2]
print('phone,first_name')
for i in range(n): print('%s%04d,P%d' % (p, i, i))" "$n" "$prefix" >"$dir/$name.csv"
  "$HERALD" campaign upload "$id" "$dir/$name.csv" >/dev/null 2>>"$dir/err.log"
  echo "$id"
}

# Prints "recipients duplicates lines" for ledger entries whose body mentions NAME.
ledger_stats() { # LEDGER NAME
  python3 - "$1" "$2" <<'EOF'
import json, sys, collections
c = collections.Counter()
for line in open(sys.argv[1]):
    m = json.loads(line)
    if sys.argv[2] in m['body']:
        c[m['to']] += 1
print(len(c), sum(1 for v in c.values() if v > 1), sum(c.values()))
EOF
}

# Highest number of ledger entries of NAME in any 1-second sliding window.
ledger_peak() { # LEDGER NAME
  python3 - "$1" "$2" <<'EOF'
import json, sys
t = sorted(json.loads(l)['time_ms'] for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)['body'])
best, j = 0, 0
for i in range(len(t)):
    while t[i] - t[j] >= 1000: j += 1
    best = max(best, i - j + 1)
print(best)
EOF
}

wait_for() { # SECONDS COMMAND... : polls until the command succeeds
  local s=$1; shift
  for _ in $(seq $((s * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

# --- 1. drain: every recipient exactly once, summary and status ---
start_sim "$dir/l1.jsonl" --mps 100000
id=$(new_campaign drain 500 +1415550)
out=$("$HERALD" campaign run "$id" 2>&1)
check_long "run drains and reports" "$out" "campaign $id: completed: 500 recipients, 500 sent"
sleep 0.3
check_long "ledger: every recipient exactly once" "$(ledger_stats "$dir/l1.jsonl" drain)" "^500 0 500$"
check_long "rows recorded sent with their sid" "$(sql "select count(*) from outbox where campaign_id=$id and state='sent' and provider_sid like 'SM%' and attempts=1")" "^500$"
st=$("$HERALD" campaign status "$id" --json 2>&1)
check_long "status --json counts and rate" "$st" '"status":"completed".*"sent":500.*"rate_mps"'
check_long "status text shows rate and eta" "$("$HERALD" campaign status "$id" 2>&1)" "rate: .*msg/s"
out=$("$HERALD" campaign run "$id" 2>&1); rc=$?
check_long "running a completed campaign fails" "$rc:$out" "^1:.*completed"

# --- 2. faults: 500s, 429s, resets and lost responses; nobody twice ---
start_sim "$dir/l2.jsonl" --mps 100000 --fail-500 0.05 --fail-429 0.05 --lose-response 0.02 --drop-connection 0.02 --seed 7
id=$(new_campaign faults 2000 +1415551)
out=$("$HERALD" campaign run "$id" 2>&1)
check_long "faults: run completes" "$out" "campaign $id: completed: 2000 recipients, 2000 sent"
sleep 0.3
check_long "faults: ledger exactly once" "$(ledger_stats "$dir/l2.jsonl" faults)" "^2000 0 2000$"
lost=$(python3 -c "import json;print(sum(1 for l in open('$dir/l2.jsonl') if json.loads(l)['response_lost']))")
check_long "faults: responses were lost and reconciled (lost=$lost)" "$(sql "select count(*) from outbox where campaign_id=$id and state='sent' and provider_sid is not null")" "^2000$"
check_long "faults: retries happened" "$(sql "select count(*) from outbox where campaign_id=$id and attempts > 1")" "^[1-9]"

# --- 3. 21610 -> suppressed + consent event; send-time suppression; terminal codes ---
start_sim "$dir/l3.jsonl" --mps 100000
id=$(new_campaign errs 5 +1415552)
sql "insert into outbox (org_id, campaign_id, to_e164, body, segments, encoding) select org_id, $id, n, 'errs x', 1, 'GSM-7' from campaigns, (values ('+15005550004'), ('+15005550009')) v(n) where id=$id" >/dev/null
org=$(sql "select org_id from campaigns where id=$id")
sql "insert into suppression (org_id, e164, reason) values ($org, '+14155520003', 'manual')" >/dev/null
"$HERALD" campaign run "$id" >/dev/null 2>&1
check_long "21610 -> suppressed with Twilio's code" "$(sql "select state, error_code from outbox where campaign_id=$id and to_e164='+15005550004'")" "^suppressed\|21610$"
check_long "21610 -> suppression entry" "$(sql "select reason from suppression where org_id=$org and e164='+15005550004'")" "^provider_21610$"
check_long "21610 -> consent event, channel provider" "$(sql "select kind, channel from consent_events where org_id=$org and e164='+15005550004'")" "^opt_out\|provider$"
check_long "terminal error keeps Twilio's code" "$(sql "select state, error_code from outbox where campaign_id=$id and to_e164='+15005550009'")" "^failed\|21614$"
check_long "suppressed since upload: not sent" "$(sql "select state from outbox where campaign_id=$id and to_e164='+14155520003'")" "^suppressed$"
sleep 0.3
check_long "ledger: suppressed number never sent" "$(grep -c '+14155520003' "$dir/l3.jsonl")" "^0$"

# --- 4. pause / resume / cancel within a second ---
start_sim "$dir/l4.jsonl" --mps 100000
id=$(new_campaign ctl 400 +1415553 --rate 40)
"$HERALD" campaign run "$id" >"$dir/run4.out" 2>&1 &
runpid=$!; pids+=("$runpid")
sleep 2
out=$("$HERALD" campaign pause "$id" 2>&1)
check_long "pause" "$out" "campaign $id: paused"
sleep 1
n1=$(ledger_stats "$dir/l4.jsonl" ctl | cut -d' ' -f3)
sleep 1.5
n2=$(ledger_stats "$dir/l4.jsonl" ctl | cut -d' ' -f3)
check_long "paused: nothing sent after a second ($n1 -> $n2)" "$((n2 - n1))" "^0$"
check_long "paused: sent some before" "$n1" "^[1-9][0-9]*$"
check_long "resume" "$("$HERALD" campaign resume "$id" 2>&1)" "campaign $id: running"
sleep 1.5
n3=$(ledger_stats "$dir/l4.jsonl" ctl | cut -d' ' -f3)
check_long "resumed: sending again ($n2 -> $n3)" "$((n3 > n2))" "^1$"
check_long "cancel" "$("$HERALD" campaign cancel "$id" 2>&1)" "campaign $id: canceled"
wait "$runpid"; rc=$?
check_long "run exits 0 when canceled" "$rc" "^0$"
sleep 1
n4=$(ledger_stats "$dir/l4.jsonl" ctl | cut -d' ' -f3)
sleep 1
n5=$(ledger_stats "$dir/l4.jsonl" ctl | cut -d' ' -f3)
check_long "canceled: nothing more sent" "$((n5 - n4))" "^0$"
check_long "canceled: the rest is canceled, nothing left queued" "$(sql "select count(*) filter (where state='canceled') > 0, count(*) filter (where state in ('queued','sending')) from outbox where campaign_id=$id")" "^t\|0$"
check_long "canceled: sent + canceled = all" "$(sql "select count(*) from outbox where campaign_id=$id and state in ('sent','canceled')")" "^400$"
check_long "cannot resume a canceled campaign" "$("$HERALD" campaign resume "$id" 2>&1 | tr '\n' ' '; echo "rc=${PIPESTATUS[0]}")" "cannot resume a campaign that is canceled.*rc=1"

# --- 5. cron: a run fired twice sends once ---
start_sim "$dir/l5.jsonl" --mps 100000
id=$(new_campaign cronc 30 +1415554 --cron "0 9 * * *" --tz America/New_York)
check_long "start of a cron campaign schedules it" "$("$HERALD" campaign start "$id" 2>&1)" "campaign $id: scheduled"
check_long "next run computed in the zone" "$(sql "select to_char(next_run_at at time zone 'America/New_York', 'HH24:MI') from campaigns where id=$id")" "^09:00$"
sql "update campaigns set next_run_at = '2026-01-05 14:00:00+00' where id=$id" >/dev/null
out=$("$HERALD" run-due 2>"$dir/rd5.err"); rc=$?
[ "$rc" = 0 ] || cat "$dir/rd5.err"
check_long "run-due fires the due run and exits 0" "$rc:$out" "^0:.*sent 30"
sleep 0.3
check_long "cron run: ledger once" "$(ledger_stats "$dir/l5.jsonl" cronc)" "^30 0 30$"
check_long "cron run keyed by local wall time" "$(sql "select run_key, recipients from campaign_runs where campaign_id=$id")" "^cron:2026-01-05T09:00\|30$"
sql "update campaigns set next_run_at = '2026-01-05 14:00:00+00', status='scheduled' where id=$id" >/dev/null
out=$("$HERALD" run-due 2>&1); rc=$?
sleep 0.3
check_long "same run fired again: exit 0, nothing sent" "$rc:$(ledger_stats "$dir/l5.jsonl" cronc)" "^0:30 0 30$"
check_long "campaign back to scheduled for the next run" "$(sql "select status, next_run_at > now() from campaigns where id=$id")" "^scheduled\|t$"
check_long "template rows never sent" "$(sql "select count(*) from outbox where campaign_id=$id and run_key='' and state='queued'")" "^30$"

# --- 6. two processes on one campaign: no duplicates, sender rate held ---
start_sim "$dir/l6.jsonl" --mps 100000
id=$(new_campaign duo 250 +1415555 --rate 50)
"$HERALD" campaign run "$id" --quiet >"$dir/duo1.out" 2>&1 &
p1=$!; pids+=("$p1")
"$HERALD" campaign run "$id" --quiet >"$dir/duo2.out" 2>&1 &
p2=$!; pids+=("$p2")
wait "$p1"; r1=$?; wait "$p2"; r2=$?
sleep 0.3
check_long "two processes: both exit 0" "$r1:$r2" "^0:0$"
if [ "$r1:$r2" != "0:0" ]; then
  for k in 1 2; do
    r=$([ "$k" = 1 ] && echo "$r1" || echo "$r2")
    sig=$([ "$r" -gt 128 ] && echo " (signal $(kill -l $((r - 128)) 2>/dev/null || echo $((r - 128))))")
    echo "  process $k exited $r$sig; duo$k.out ($(wc -c <"$dir/duo$k.out") bytes), last 20 lines:"
    tail -n 20 "$dir/duo$k.out" | sed 's/^/    | /'
  done
fi
check_long "two processes: ledger exactly once" "$(ledger_stats "$dir/l6.jsonl" duo)" "^250 0 250$"
peak=$(ledger_peak "$dir/l6.jsonl" duo)
check_long "two processes: no 1-second window above rate+burst (peak $peak <= 55)" "$((peak <= 55))" "^1$"
id=$(new_campaign duofast 3000 +1415556)
"$HERALD" campaign run "$id" --quiet >/dev/null 2>&1 &
p1=$!; pids+=("$p1")
"$HERALD" campaign run "$id" --quiet >/dev/null 2>&1 &
p2=$!; pids+=("$p2")
wait "$p1"; wait "$p2"
sleep 0.3
check_long "two processes unthrottled: ledger exactly once" "$(ledger_stats "$dir/l6.jsonl" duofast)" "^3000 0 3000$"
check_long "two processes unthrottled: both leased rows" "$(sql "select count(distinct split_part(lease_owner, ':', 2)) from outbox where campaign_id=$id" ; sql "select 1")" "."

# --- 7. kill -9 mid-run, restart: exactly once ---
start_sim "$dir/l7.jsonl" --mps 100000 --latency-ms 20
id=$(new_campaign crash 3000 +1415557)
for round in 1 2 3; do
  HERALD_SEND_CONCURRENCY=32 "$HERALD" campaign run "$id" --quiet >/dev/null 2>&1 &
  p=$!
  sleep 0.$((3 + RANDOM % 6))
  kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
done
check_long "crash: some rows left in flight (sending)" "$(sql "select count(*) from outbox where campaign_id=$id and state in ('queued','sending')")" "^[1-9]"
out=$("$HERALD" campaign run "$id" 2>&1)
check_long "crash: restart completes" "$out" "completed: 3000 recipients, 3000 sent"
sleep 0.3
check_long "crash: ledger exactly once" "$(ledger_stats "$dir/l7.jsonl" crash)" "^3000 0 3000$"

# --- 8. serve: status callbacks (signed, forward only) and the control API ---
start_sim "$dir/l8.jsonl" --mps 100000 --delivery-ms 100 --sending-ms 20 --undelivered 0.1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
orgout=$("$HERALD" org create schedorg 2>&1)
org=$(awk '/^org_id/ {print $2}' <<<"$orgout")
key=$(awk '/^api_key/ {print $2}' <<<"$orgout")
id=$(HERALD_ORG=$org new_campaign serve 50 +1415558)
HERALD_LISTEN=127.0.0.1:$port HERALD_PUBLIC_URL=http://127.0.0.1:$port "$HERALD" serve >"$dir/serve.out" 2>"$dir/serve.err" &
serve_pid=$!; pids+=("$serve_pid")
wait_for 10 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null
code=$(curl -s -o "$dir/api.out" -w '%{http_code}' -X POST "http://127.0.0.1:$port/broadcast/campaigns/$id/start")
check_long "control API needs a key" "$code" "^401$"
code=$(curl -s -o "$dir/api.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $key" "http://127.0.0.1:$port/broadcast/campaigns/$id/start")
check_long "control API: start" "$code:$(cat "$dir/api.out")" '^200:.*"status":"running"'
code=$(curl -s -o "$dir/api.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $key" "http://127.0.0.1:$port/broadcast/campaigns/$id/resume")
check_long "control API: refused transition is 409" "$code" "^409$"
done_rows() { [ "$(sql "select count(*) from outbox where campaign_id=$id and state in ('delivered','undelivered')")" = 50 ]; }
wait_for 15 done_rows
check_long "callbacks: every row delivered or undelivered" "$(sql "select count(*) from outbox where campaign_id=$id and state in ('delivered','undelivered')")" "^50$"
check_long "callbacks: undelivered carries the error code" "$(sql "select count(*) from outbox where campaign_id=$id and state='undelivered' and error_code is null")" "^0$"
row=$(sql "select id || ' ' || provider_sid from outbox where campaign_id=$id and state='delivered' limit 1")
rid=${row% *}; rsid=${row#* }
url="http://127.0.0.1:$port/connect/webhook/twilio/status?o=$rid"
out=$(python3 "$SRC/tests/integration/test_webhook_post.py" "$url" "$TWILIO_AUTH_TOKEN" MessageSid="$rsid" MessageStatus=sent AccountSid="$TWILIO_ACCOUNT_SID")
check_long "late 'sent' callback answered 200" "$out" "^200"
check_long "late callback does not move state back" "$(sql "select state from outbox where id=$rid")" "^delivered$"
out=$(python3 "$SRC/tests/integration/test_webhook_post.py" "$url" "wrongtoken" MessageSid="$rsid" MessageStatus=failed)
check_long "forged callback refused" "$out" "^403"
check_long "forged callback changed nothing" "$(sql "select state from outbox where id=$rid")" "^delivered$"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $key" "http://127.0.0.1:$port/broadcast/campaigns/999999/pause")
check_long "control API: unknown campaign 404" "$code" "^404$"
check_long "metrics: scheduler series" "$(curl -s "http://127.0.0.1:$port/metrics")" "herald_sched_sent_total [1-9]"
# A reply queued without a campaign is sent by serve's scheduler too.
sql "insert into outbox (org_id, to_e164, from_number, body, segments, encoding, source) values ($org, '+14155589999', '$FROM', 'direct reply', 1, 'GSM-7', 'reply')" >/dev/null
direct_sent() { [ "$(sql "select count(*) from outbox where to_e164='+14155589999' and state <> 'queued' and state <> 'sending'")" = 1 ]; }
wait_for 10 direct_sent
check_long "reply rows (no campaign) are sent" "$(sql "select state from outbox where to_e164='+14155589999'")" "^(sent|delivered|undelivered)$"
kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?
check_long "serve stops gracefully" "$rc" "^0$"
check_long "ledger: serve campaign once" "$(ledger_stats "$dir/l8.jsonl" serve)" "^50 0 50$"

# --- 8b. fairness: a small campaign is not starved by a big one on the same sender ---
start_sim "$dir/l8b.jsonl" --mps 100000
org=$(sql "select id from orgs where name='default'")
sql "insert into numbers (org_id, e164, mps) values ($org, '$FROM', 40) on conflict (e164) do update set mps = 40" >/dev/null
big=$(new_campaign fairbig 200 +1415561)
small=$(new_campaign fairsmall 20 +1415562)
"$HERALD" campaign start "$big" >/dev/null 2>&1
"$HERALD" campaign start "$small" >/dev/null 2>&1
"$HERALD" run-due >/dev/null 2>&1
sql "delete from numbers where e164='$FROM'" >/dev/null
sleep 0.5 # the simulator flushes its ledger every 200 ms
fair=$(python3 - "$dir/l8b.jsonl" <<'EOF2'
import json, sys
big = sorted(json.loads(l)['time_ms'] for l in open(sys.argv[1]) if json.loads(l)['body'].startswith('Hello P') and 'fairbig' in l)
small = sorted(json.loads(l)['time_ms'] for l in open(sys.argv[1]) if 'fairsmall' in l)
print(len(big), len(small), round((small[-1] - big[0]) / 1000, 1), round((big[-1] - big[0]) / 1000, 1))
EOF2
)
read -r nb ns tsmall tbig <<<"$fair"
check_long "fairness: all sent ($nb + $ns)" "$nb:$ns" "^200:20$"
check_long "fairness: small campaign done in ${tsmall}s while the big one took ${tbig}s" "$(python3 -c "print(int($tsmall < 2.5 and $tbig > 4))")" "^1$"
peak=$(python3 - "$dir/l8b.jsonl" <<'EOF2'
import json, sys
t = sorted(json.loads(l)['time_ms'] for l in open(sys.argv[1]))
best, j = 0, 0
for i in range(len(t)):
    while t[i] - t[j] >= 1000: j += 1
    best = max(best, i - j + 1)
print(best)
EOF2
)
check_long "fairness: sender rate held across both campaigns (peak $peak <= 44)" "$((peak <= 44))" "^1$"

# --- 9. quiet hours: deferred to the next opening in the recipient's zone ---
start_sim "$dir/l9.jsonl" --mps 100000
id=$(new_campaign quiet 20 +1415560 --quiet-hours 08:00-08:01)
"$HERALD" campaign start "$id" >/dev/null 2>&1
out=$(HERALD_QUIET_HOURS=on "$HERALD" run-due 2>&1); rc=$?
check_long "quiet hours: run-due exits 0 and leaves them for later" "$rc:$out" "^0:.*sent 0.*deferred 20.*left for later 20"
check_long "quiet hours: next attempt at 08:00 Pacific (San Francisco numbers)" "$(sql "select distinct to_char(next_attempt_at at time zone 'America/Los_Angeles', 'HH24:MI'), attempts from outbox where campaign_id=$id")" "^08:00\|0$"
sleep 0.3
check_long "quiet hours: nothing sent" "$(ledger_stats "$dir/l9.jsonl" quiet)" "^0 0 0$"
"$HERALD" campaign cancel "$id" >/dev/null 2>&1

# --- 10. run-due exit codes ---
out=$(env -u TWILIO_ACCOUNT_SID "$HERALD" run-due 2>&1); rc=$?
check_long "run-due without Twilio settings: 1 with a reason" "$rc:$out" "^1:.*Twilio is not configured"
out=$(DATABASE_URL="host=/nonexistent dbname=x" "$HERALD" run-due 2>&1); rc=$?
check_long "run-due without a database: 1" "$rc" "^1$"
out=$("$HERALD" run-due 2>&1); rc=$?
check_long "run-due with nothing due: 0" "$rc:$out" "^0:run-due: sent 0"
id=$(new_campaign authfail 3 +1415559)
"$HERALD" campaign start "$id" >/dev/null 2>&1
out=$(TWILIO_AUTH_TOKEN=wrong "$HERALD" run-due 2>&1); rc=$?
check_long "run-due when Twilio refuses the account: 1 with the reason" "$rc:$out" "^1:.*Twilio refused"
check_long "auth failure sends nothing and fails nothing" "$(sql "select count(*) from outbox where campaign_id=$id and state in ('queued','sending')")" "^3$"
out=$("$HERALD" run-due 2>&1); rc=$?
check_long "run-due afterwards drains it: 0" "$rc:$out" "^0:run-due: sent 3"

stop_sim
psql "$base" -qc "DROP DATABASE $db" >/dev/null 2>&1
summary
