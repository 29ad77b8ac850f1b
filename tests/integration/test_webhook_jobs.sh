#!/usr/bin/env bash
# The calls of go-to-flow, ai-assistant and trigger-automation (post-commit jobs) outlive
# the process that committed them (migration 017): a call left pending by kill -9 or by
# SIGTERM during a retry's backoff is made by the next `herald serve`, signed with the
# rule's secret, once; its event is set to "done" with one outcome event; a signed call
# whose secret left the rule set, and one pending for over a day, are given up with an
# outcome and no call; two processes sweeping the same database make each call once.
# Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
POST="python3 $SRC/tests/integration/test_webhook_post.py"
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-whjobs.XXXXXX)
pids=()
recv_pid=
hole_pid=

cleanup() {
  for p in "${pids[@]}" $recv_pid $hole_pid; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

fresh_db herald_whjobs
export HERALD_MASTER_KEY=$(master_key)
unset TWILIO_AUTH_TOKEN HERALD_WEBHOOK_INSECURE HERALD_AUTOMATION_SECRET

TOKEN=tok_$RANDOM$RANDOM
ACC=AC0123456789abcdef0123456789abcdef
OUR=+15005550006
"$HERALD" org create acme --account-sid $ACC --auth-token "$TOKEN" --number $OUR >/dev/null 2>&1 || {
  echo "org create failed"; exit 1; }
org=$(sql "select id from orgs where name='acme'")

# A port for the receiver, free now; the receiver is started on it only when wanted.
RPORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
recv_start() {
  python3 "$SRC/tests/integration/test_webhook_receiver.py" "$dir/recv.port" "$dir/recv.log" "$RPORT" 2>>"$dir/recv.err" &
  recv_pid=$!
  for _ in $(seq 100); do [ -s "$dir/recv.port" ] && break; sleep 0.1; done
}
recv_stop() { kill "$recv_pid" 2>/dev/null; wait "$recv_pid" 2>/dev/null; recv_pid=; rm -f "$dir/recv.port"; }

PUB=https://hooks.example.test
serve_start() { # NAME: starts herald serve, port in $dir/NAME.port; lease $LEASE (2) s, sweep every 0.3 s
  rm -f "$dir/$1.port"
  HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=$PUB HERALD_JOB_LEASE_S=${LEASE:-2} HERALD_JOB_SWEEP_MS=300 \
    "$HERALD" serve --port-file "$dir/$1.port" >"$dir/$1.out" 2>"$dir/$1.err" &
  pids+=($!)
  last_pid=$!
  for _ in $(seq 100); do [ -s "$dir/$1.port" ] && break; sleep 0.1; done
  URL=http://127.0.0.1:$(cat "$dir/$1.port")/connect/webhook/twilio/sms
}
sms() { # FROM BODY: a signed inbound message
  $POST "$URL" "$TOKEN" --sign-url "$PUB/connect/webhook/twilio/sms" "MessageSid=SM$(date +%s%N)$RANDOM" \
    "AccountSid=$ACC" "From=$1" "To=$OUR" "Body=$2"
}
rules() { # VERSION JSON_RULES
  sql "update rule_sets set active = false where org_id = $org and number = '$OUR' and active;
       insert into rule_sets (org_id, number, version, document) values ($org, '$OUR', $1,
       \$d\$ {\"number\": \"$OUR\", \"rules\": $2} \$d\$::jsonb)" >/dev/null
}
wait_for() { # SQL WANT: up to 15 s until the query prints WANT
  for _ in $(seq 150); do [ "$(sql "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
pending() { sql "select count(*) from conversation_events where detail->>'status' = 'pending'"; }

rules 1 "[
 {\"name\": \"auto\", \"when\": {\"keywords\": [\"AUTO\"]},
  \"actions\": [{\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:$RPORT/hook\", \"event\": \"e1\", \"secret\": \"s3cret\"}]},
 {\"name\": \"flow\", \"when\": {\"keywords\": [\"FLOWSLOW\"]},
  \"actions\": [{\"type\": \"go-to-flow\", \"flow\": \"slowflow\", \"endpoint\": \"http://127.0.0.1:$RPORT/slow\"}]},
 {\"name\": \"fail\", \"when\": {\"keywords\": [\"FAIL\"]},
  \"actions\": [{\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:$RPORT/fail\", \"event\": \"x\"}]}]"

# --- kill -9 while the call is waiting for its retry (the receiver is down) ---
serve_start a
r=$(sms +14155550201 "AUTO"); check "committed before the call: 200" "$r" "^200"
sleep 0.3
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
check "after kill -9: the call is pending" "$(pending)" "^1$"
recv_start
serve_start b
wait_for "select count(*) from conversation_events where detail->>'status' = 'done'" 1 \
  && ok "restart: the pending call is made and marked done" || bad "restart: call not done" "pending=$(pending)"
sleep 1 # more sweeps: nothing is made twice
check "trigger-automation: called once" "$(grep -c '"/hook"' "$dir/recv.log")" "^1$"
python3 - "$dir/recv.log" <<'PY' && ok "resumed call: signed with the rule's secret, payload of the message" || bad "resumed call: signature or payload"
import hashlib, hmac, json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["path"] != "/hook":
        continue
    sig = r["headers"].get("X-Herald-Signature", "")
    want = "sha256=" + hmac.new(b"s3cret", r["body"].encode(), hashlib.sha256).hexdigest()
    p = json.loads(r["body"])
    assert sig == want, (sig, want)
    assert p["event"] == "e1" and p["body"] == "AUTO" and p["from"] == "+14155550201" and p["to"] == "+15005550006", p
    assert p["message_sid"].startswith("SM") and p["message_id"] > 0
    sys.exit(0)
sys.exit(1)
PY

# The rule set above was stored with its secret in clear (as before secrets were sealed):
# `herald rules seal` seals it in place. Processes started from here on open it.
check "rules seal: the stored clear secret is sealed" "$("$HERALD" rules seal 2>&1)" '^sealed 1 secret\(s\) in 1 rule set\(s\)$'
check "rules seal: no clear secret left in the database" \
  "$(sql "select count(*) from rule_sets where document::text like '%s3cret%'")/$(sql "select count(*) from rule_sets where document::text like '%secret_sealed%'")" "^0/1$"
check "rules seal again: nothing to do" "$("$HERALD" rules seal 2>&1)" "^sealed 0 secret"
signed_with() { # FROM SECRET: the receiver got FROM's call signed with SECRET
  python3 - "$dir/recv.log" "$1" "$2" <<'PY'
import hashlib, hmac, json, sys
calls = [json.loads(l) for l in open(sys.argv[1])]
calls = [r for r in calls if json.loads(r["body"]).get("from") == sys.argv[2]]
want = "sha256=" + hmac.new(sys.argv[3].encode(), calls[0]["body"].encode(), hashlib.sha256).hexdigest() if calls else None
sys.exit(0 if len(calls) == 1 and calls[0]["headers"].get("X-Herald-Signature") == want else 1)
PY
}

# --- kill -9 while the call is in flight (the flow endpoint takes 5 s) ---
sms +14155550202 "FLOWSLOW" >/dev/null
sleep 0.5
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
check "after kill -9 mid-call: pending" "$(pending)" "^1$"
serve_start c
wait_for "select count(*) from conversation_events where detail->>'status' = 'done'" 2 \
  && ok "restart: the interrupted call is made again and marked done" || bad "restart: interrupted call not done" "pending=$(pending)"
check "interrupted call: made twice (at least once)" "$(grep -c '"/slow"' "$dir/recv.log")" "^2$"
check "flow payload names the flow" "$(grep '"/slow"' "$dir/recv.log" | tail -1)" 'slowflow'
check "one outcome per call" "$(sql "select string_agg(action || ':' || (detail->>'status'), ',' order by action) from conversation_events where detail ? 'attempts'")" \
  "^go-to-flow:delivered,trigger-automation:delivered$"
check "the pending events are done" "$(sql "select string_agg(action || ':' || (detail->>'status'), ',' order by action) from conversation_events where detail ? 'lease_until'")" \
  "^go-to-flow:done,trigger-automation:done$"
check "the log names the resumed calls, not the numbers" "$(cat "$dir/b.err" "$dir/c.err" | grep -c 'resuming the call')/$(cat "$dir"/*.err | grep -c '14155550201')" "^2/0$"

# --- a call made in the same process is not made again by its own sweeps ---
sms +14155550203 "AUTO" >/dev/null
wait_for "select count(*) from conversation_events where detail->>'status' = 'done'" 3 \
  && ok "post-commit call recorded done" || bad "post-commit call not done"
sleep 1
check "post-commit call: made once" "$(grep -c '14155550203' "$dir/recv.log")" "^1$"
signed_with +14155550203 s3cret && ok "post-commit call: signed with the sealed secret, opened" \
  || bad "post-commit call: signature" "$(grep 14155550203 "$dir/recv.log" | head -c 400)"

# --- SIGTERM during a retry's backoff: the next process makes the call ---
sms +14155550204 "FAIL" >/dev/null
sleep 0.2 # first attempt answered 500: waiting 0.5 s for the second
kill -TERM "$last_pid"; wait "$last_pid" 2>/dev/null; rc=$?
check "SIGTERM during a backoff: exit 0" "$rc" "^0$"
check "after SIGTERM during backoff: pending" "$(pending)" "^1$"
# A clean stop hands the call to the next sweep at once: a lease already run out, so a
# process with a 300 s lease makes it now, not in five minutes.
check "SIGTERM: the pending call's lease released" \
  "$(sql "select ((detail->>'lease_until')::timestamptz < now())::text from conversation_events where detail->>'status' = 'pending'")" "^true$"
check "SIGTERM: the log says so" "$(grep -c 'stop: 1 unmade calls handed to the next sweep' "$dir/c.err")" "^1$"
n_before=$(grep -c '"/fail"' "$dir/recv.log")
LEASE=300 serve_start c
wait_for "select count(*) from conversation_events where action = 'trigger-automation' and detail->>'status' = 'failed'" 1 \
  && ok "SIGTERM: the call made again at once (300 s lease), its retries run out, recorded failed" || bad "SIGTERM: not resumed"
check "SIGTERM: four more attempts" "$(($(grep -c '"/fail"' "$dir/recv.log") - n_before))" "^4$"
check "nothing left pending" "$(pending)" "^0$"

# --- a stop whose release gets no answer waits 2 s, says so and exits ---
# The events table locked: the release's UPDATE waits, the stop does not wait for it.
sms +14155550215 "FAIL" >/dev/null
sleep 0.2 # first attempt answered 500: in its backoff
psql "$DATABASE_URL" -XAtqc "BEGIN; LOCK TABLE conversation_events IN EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;" \
  >/dev/null &
lock_pid=$!
for _ in $(seq 100); do [ "$(sql "select count(*) from pg_stat_activity where wait_event = 'PgSleep'")" = 1 ] && break
  sleep 0.05; done
kill -TERM "$last_pid"; wait "$last_pid" 2>/dev/null; rc=$?
kill -0 "$lock_pid" 2>/dev/null && held=yes || held=no
check "stop with the release blocked: exit 0 while the table is still locked" "$rc/$held" "^0/yes$"
check "stop with the release blocked: the log says the calls keep their lease" \
  "$(grep -c 'stop: 1 unmade calls keep their lease (no answer from the database in time)' "$dir/c.err")" "^1$"
wait "$lock_pid"
LEASE=2 serve_start c
wait_for "select count(*) from conversation_events where action = 'trigger-automation' and detail->>'status' = 'failed'" 2 \
  && ok "stop with the release blocked: the call is made again after its lease" || bad "blocked release: not resumed"
check "nothing left pending" "$(pending)" "^0$"

# --- a resumed call opens the rule's sealed secret; under another master key it is given up ---
recv_stop
sms +14155550206 "AUTO" >/dev/null
sleep 0.2
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
recv_start
serve_start c
wait_for "select count(*) from conversation_events e join messages m on m.id = e.message_id where m.body = 'AUTO' and e.detail->>'status' = 'done'" 3 \
  && ok "sealed secret: the pending call is made" || bad "sealed secret: call not done" "pending=$(pending)"
signed_with +14155550206 s3cret && ok "sealed secret: the resumed call is signed with it" \
  || bad "sealed secret: resumed call's signature" "$(grep 14155550206 "$dir/recv.log" | head -c 400)"
recv_stop
sms +14155550207 "AUTO" >/dev/null
sleep 0.2
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
recv_start
n_hook=$(grep -c '"/hook"' "$dir/recv.log")
HERALD_MASTER_KEY=$(master_key) serve_start h
wait_for "select count(*) from conversation_events where detail->>'status' = 'pending'" 0 \
  && ok "another master key: nothing left pending" || bad "another master key: still pending"
check "another master key: failed with the reason" \
  "$(sql "select detail->>'status' || ': ' || (detail->>'error') from conversation_events where detail->>'error' like '%does not open%'")" \
  "^failed: its signing secret does not open under HERALD_MASTER_KEY$"
check "another master key: no call made" "$(($(grep -c '"/hook"' "$dir/recv.log") - n_hook))" "^0$"
kill -TERM "$last_pid"; wait "$last_pid" 2>/dev/null
serve_start d0

# --- given up: the rule's secret is gone; pending for more than a day ---
recv_stop
sms +14155550205 "AUTO" >/dev/null
sleep 0.2
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
rules 2 "[{\"name\": \"other\", \"when\": {\"any\": true}, \"actions\": [{\"type\": \"add-tag\", \"tag\": \"x\"}]}]"
sql "insert into conversation_events (org_id, conversation_id, message_id, rule_name, action, detail, created_at)
     select org_id, conversation_id, id, 'flow', 'go-to-flow',
            '{\"status\": \"pending\", \"flow\": \"old\", \"endpoint\": \"http://127.0.0.1:$RPORT/flow\"}', now() - interval '2 days'
       from messages where body = 'FLOWSLOW'" >/dev/null
recv_start
n_hook=$(grep -c '"/hook"' "$dir/recv.log"); n_flow=$(grep -c '"/flow"' "$dir/recv.log")
serve_start d
wait_for "select count(*) from conversation_events where detail->>'status' = 'pending'" 0 \
  && ok "given-up calls leave nothing pending" || bad "given up: still pending"
check "secret gone: failed with the reason" "$(sql "select detail->>'status' || ': ' || (detail->>'error') from conversation_events where action = 'trigger-automation' and detail->>'error' like '%no longer%'")" \
  "^failed: its signing secret is no longer in the number's rule set$"
check "over a day old: expired" "$(sql "select detail->>'status' from conversation_events where action = 'go-to-flow' and detail ? 'error'")" "^expired$"
sleep 0.5
check "given up: no call made" "$(($(grep -c '"/hook"' "$dir/recv.log") - n_hook))/$(($(grep -c '"/flow"' "$dir/recv.log") - n_flow))" "^0/0$"
kill -TERM "$last_pid"; wait "$last_pid" 2>/dev/null; rc=$?
check "SIGTERM after the sweeps: exit 0" "$rc" "^0$"

# --- two processes sweep the same database: each call once ---
rules 3 "[{\"name\": \"auto\", \"when\": {\"keywords\": [\"AUTO\"]},
  \"actions\": [{\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:$RPORT/hook2\", \"event\": \"e2\"}]}]"
recv_stop
# A listener that never answers: every call stays in flight until the process dies.
# SO_REUSEADDR: the receiver's closed connections on the port are still in TIME_WAIT.
python3 -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $RPORT)); s.listen(128); time.sleep(120)" &
hole_pid=$!
sleep 0.3
serve_start e
for i in $(seq 10 29); do sms +141555503$i "AUTO" >/dev/null & done
wait_for "select count(*) from messages m join conversations v on v.id = m.conversation_id where v.contact_e164 like '+141555503%'" 20 || true
sleep 0.3
kill -9 "$last_pid"; wait "$last_pid" 2>/dev/null
kill "$hole_pid"; wait "$hole_pid" 2>/dev/null
check "20 calls pending" "$(pending)" "^20$"

# --- a clean stop releases the calls it claimed, by event: here all 20, in flight ---
python3 -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $RPORT)); s.listen(128); time.sleep(120)" &
hole_pid=$!
LEASE=5 serve_start s
wait_for "select count(*) from conversation_events where detail->>'status' = 'pending' and detail ? 'lease_until'" 20 \
  && ok "a sweep claimed the 20 calls" || bad "the 20 calls not claimed" "$(sql "select count(*) from conversation_events where detail ? 'lease_until'")"
sleep 0.3
kill -TERM "$last_pid"; wait "$last_pid" 2>/dev/null; rc=$?
check "SIGTERM with claimed calls in flight: exit 0" "$rc" "^0$"
check "SIGTERM: the claimed calls' leases released (5 s lease, checked at once)" \
  "$(sql "select count(*) from conversation_events where detail->>'status' = 'pending' and (detail->>'lease_until')::timestamptz < now()")" "^20$"
check "SIGTERM: the log counts them" "$(grep -c 'stop: 20 unmade calls handed to the next sweep' "$dir/s.err")" "^1$"
kill "$hole_pid"; wait "$hole_pid" 2>/dev/null
recv_start
serve_start f; serve_start g
wait_for "select count(*) from conversation_events where action = 'trigger-automation' and detail->>'status' = 'delivered' and detail ? 'attempts' and detail->>'http_status' = '200'" 23 \
  && ok "two sweeping processes: every call delivered" || bad "two processes: not all delivered" "pending=$(pending)"
sleep 1
check "two sweeping processes: each call made once" "$(grep '"/hook2"' "$dir/recv.log" | python3 -c "
import json, sys
ids = [json.loads(json.loads(l)['body'])['message_id'] for l in sys.stdin]
print(len(ids), len(set(ids)))")" "^20 20$"

kill -TERM "${pids[-1]}" "${pids[-2]}"; wait "${pids[-1]}"; rc1=$?; wait "${pids[-2]}"; rc2=$?
check "both sweeping processes: exit 0 on SIGTERM" "$rc1/$rc2" "^0/0$"

summary
