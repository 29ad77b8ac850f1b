#!/usr/bin/env bash
# The webhook when things go wrong: Postgres down (503 so Twilio retries, logged, and
# nothing answered 200; the pool reconnects when Postgres is back), and graceful
# shutdown on SIGTERM finishing a request that is in flight (held by a table lock).
# Uses a cluster of its own (it stops it) and HERALD_WEBHOOK_INSECURE=1, whose start-up
# warning is checked too. Then pacing: a batch held back while another is in flight
# goes once the gap is over, even when the other is blocked.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
POST="python3 $SRC/tests/integration/test_webhook_post.py"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-whres.XXXXXX)
chmod 755 "$dir"
serve_pid=
lock_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill -9 "$serve_pid" 2>/dev/null
  [ -n "$lock_pid" ] && kill "$lock_pid" 2>/dev/null
  bash "$SRC/tests/integration/pgtmp.sh" stop "$dir/pg.state" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

bash "$SRC/tests/integration/pgtmp.sh" start "$dir/pg.state" >/dev/null || { echo "cannot start postgres"; exit 1; }
pgdir=$(cut -f1 "$dir/pg.state")
export DATABASE_URL=$(cut -f2 "$dir/pg.state")
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$(stat -c %U "$pgdir/data")" -- "$@"; else "$@"; fi; }
"$HERALD" org create res --number +15005550006 >/dev/null 2>&1 || { echo "org create failed"; exit 1; }

HERALD_WEBHOOK_INSECURE=1 HERALD_LISTEN=127.0.0.1:0 "$HERALD" serve --port-file "$dir/port" >"$dir/out" 2>"$dir/err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
URL=http://127.0.0.1:$(cat "$dir/port")/connect/webhook/twilio/sms
check_short "insecure switch logs a warning at start" "$(cat "$dir/err")" "HERALD_WEBHOOK_INSECURE=1: webhook signatures are NOT checked"
sms() { $POST "$URL" x --no-sig "MessageSid=$1" From=+14155550100 To=+15005550006 "Body=$2"; }
check_short "insecure mode: unsigned message accepted" "$(sms SMok1 hi)" "^200"

# The throwaway cluster commits asynchronously (synchronous_commit=off): flush what the
# setup committed before the crash, or a loaded machine can lose the org with the crash.
sql "CHECKPOINT" >/dev/null
as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1
r=$(sms SMdown1 "while down")
check_short "Postgres down: 503" "$r" "^503"
r=$(sms SMdown2 "while down again")
check_short "Postgres still down: 503 again" "$r" "^503"
check_short "Postgres down: logged" "$(cat "$dir/err")" "not stored .*503"
as_owner "$PGBIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 30 \
  -o "-c listen_addresses='' -c unix_socket_directories=$pgdir/run -c fsync=off" start >/dev/null
r=
for _ in $(seq 60); do r=$(sms SMdown1 "while down"); grep -q '^200' <<<"$r" && break; sleep 0.2; done
check_short "Postgres back: Twilio's retry is stored" "$r" "^200"
check_short "the 503 requests were not stored, the retry once" "$(sql "select count(*) from messages where message_sid like 'SMdown%'")" "^1$"

# Graceful shutdown: hold a lock so the next webhook waits inside its transaction.
psql "$DATABASE_URL" -XAtqc "BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" >/dev/null &
lock_pid=$!
# Poll instead of sleeping a fixed time: on a loaded machine the clients start slowly.
held="select count(*) from pg_locks l join pg_class c on c.oid = l.relation
      where c.relname = 'messages' and l.mode = 'ExclusiveLock' and l.granted"
for _ in $(seq 100); do [ "$(sql "$held")" = 1 ] && break; sleep 0.05; done
sms SMinflight "in flight" >"$dir/inflight" &
post_pid=$!
# SIGTERM only once the webhook's transaction is really waiting on that lock.
waiting="select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
for _ in $(seq 150); do [ "$(sql "$waiting")" -ge 1 ] && break; sleep 0.05; done
check_short "SIGTERM: a webhook is in flight (waiting on the lock)" "$(sql "$waiting")" "^[1-9]"
kill -TERM "$serve_pid"
wait "$post_pid"
wait "$serve_pid"; rc=$?; serve_pid=
wait "$lock_pid" 2>/dev/null; lock_pid=
check_short "SIGTERM: the in-flight request finished with 200" "$(cat "$dir/inflight")" "^200"
check_short "SIGTERM: it was stored" "$(sql "select count(*) from messages where message_sid='SMinflight'")" "^1$"
check_short "SIGTERM: exit 0" "$rc" "^0$"

# Pacing (HERALD_WEBHOOK_BATCH_GAP_US): a batch that could go while another of its kind
# is in flight waits at most the gap, however long the other takes. With a 1 s gap and a
# contact row locked, A's write waits on the lock; B (another contact) is written while A
# still waits, once the gap since A's write has passed. Four connections and one sweep
# (at 1 s, then hourly): the round robin gives A's read and write and B's read and write
# a connection each.
# A setting out of range (or not a number) stops serve at once with one line and exit 1.
for bad in HERALD_WEBHOOK_BATCH_GAP_US=1000001 HERALD_WEBHOOK_BATCH_GAP_US=-1 HERALD_DB_POOL=0 HERALD_DB_POOL=4x \
           HERALD_DB_POOL=33 HERALD_MAX_UPLOADS=65 HERALD_JOB_LEASE_S=five; do
  r=$(env "$bad" HERALD_LISTEN=127.0.0.1:0 timeout 10 "$HERALD" serve 2>&1); rc=$?
  check_short "serve refuses $bad" "$rc: $r" "^1: herald: ${bad%%=*}: expected [0-9]+\.\.[0-9]+$"
done
HERALD_WEBHOOK_BATCH_GAP_US=1000000 HERALD_DB_POOL=4 HERALD_JOB_SWEEP_MS=3600000 HERALD_WEBHOOK_INSECURE=1 \
  HERALD_LISTEN=127.0.0.1:0 "$HERALD" serve --port-file "$dir/port2" >"$dir/out2" 2>"$dir/err2" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port2" ] && break; sleep 0.1; done
URL=http://127.0.0.1:$(cat "$dir/port2")/connect/webhook/twilio/sms
sleep 1.2 # the first sweep, at 1 s, takes a connection of the round robin
from() { $POST "$URL" x --no-sig "MessageSid=$1" "From=$2" To=+15005550006 "Body=$3"; }
check_short "paced: a first message makes the contact" "$(from SMpace0 +14155550171 hello)" "^200"
psql "$DATABASE_URL" -XAtqc "BEGIN; SELECT 1 FROM contacts WHERE e164 = '+14155550171' FOR UPDATE;
  SELECT pg_sleep(6); COMMIT;" >/dev/null &
lock_pid=$!
# A must not be sent before the row is locked.
for _ in $(seq 100); do [ "$(sql "select count(*) from pg_stat_activity where wait_event = 'PgSleep'")" = 1 ] && break
  sleep 0.05; done
rowlock="select count(*) from pg_locks where locktype = 'transactionid' and not granted"
from SMpaceA +14155550171 "held by the lock" >"$dir/paceA" &
a_pid=$!
for _ in $(seq 150); do [ "$(sql "$rowlock")" -ge 1 ] && break; sleep 0.05; done
check_short "paced: A's write waits on the locked contact" "$(sql "$rowlock")" "^[1-9]"
check_short "paced: B is answered while A's batch is in flight" "$(timeout 4 $POST "$URL" x --no-sig MessageSid=SMpaceB \
  From=+14155550172 To=+15005550006 Body=free)" "^200"
check_short "paced: B is stored, A not yet" \
  "$(sql "select string_agg(message_sid, ',' order by message_sid) from messages where message_sid in ('SMpaceA', 'SMpaceB')")" "^SMpaceB$"
check_short "paced: B's write was held back (the metric counts it)" \
  "$(curl -s "http://127.0.0.1:$(cat "$dir/port2")/metrics" | grep '^herald_webhook_batches_paced_total')" " [1-9][0-9]*$"
wait "$a_pid"
wait "$lock_pid" 2>/dev/null; lock_pid=
check_short "paced: A is answered once the lock goes" "$(cat "$dir/paceA")" "^200"
check_short "paced: both stored" "$(sql "select count(*) from messages where message_sid in ('SMpaceA', 'SMpaceB')")" "^2$"
kill -TERM "$serve_pid"; wait "$serve_pid"; serve_pid=

summary
