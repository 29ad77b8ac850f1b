#!/usr/bin/env bash
# The webhook's two batched statements, counted in CPU instructions instead of time:
# herald_inbound_context_batch() (as herald prepares it) and herald_inbound_apply_batch()
# run in a single-user Postgres under valgrind (cachegrind, no cache simulation), so
# the figures do not depend on what else the machine is doing. Each figure is the
# difference between a run of 10 + CALLS calls and a run of 10, divided by CALLS: the
# backend's start and its first calls (plan making, PL/pgSQL compilation) cancel out.
#
# The documents are the bench's mix (bench_webhook_wrk.sh): every other message asks
# for the price (a TwiML reply, add-tag, create-lead), the others only open a lead;
# every message comes from a new contact.
#   usage: bench/bench_webhook_sql.sh [BUILD_DIR]    (needs valgrind)
#   env: SIZES="1:100 30:20" (messages per batch : calls measured)
set -euo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
HERALD=$BUILD/herald
SIZES=${SIZES:-1:100 30:20}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
command -v valgrind >/dev/null || { echo "bench_webhook_sql: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d /tmp/herald-benchsql.XXXXXX); chmod 755 "$dir"
cleanup() { bash "$SRC/tests/integration/pgtmp.sh" stop "$dir/pg.state" >/dev/null 2>&1; rm -rf "$dir"; }
trap cleanup EXIT
bash "$SRC/tests/integration/pgtmp.sh" start "$dir/pg.state" >/dev/null
pgdir=$(cut -f1 "$dir/pg.state"); data=$pgdir/data; owner=$(stat -c %U "$data")
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }
base=$(cut -f2 "$dir/pg.state")
pg_start() {
  as_owner "$PGBIN/pg_ctl" -D "$data" -l "$pgdir/postgres.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories=$pgdir/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
}
pg_stop() { as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null; }

# A fresh database with the migrations, an org and `count` batches of n documents.
setup() { # N COUNT
  psql "$base" -XAtqc "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" >/dev/null
  url=${base/dbname=postgres/dbname=bench}
  DATABASE_URL=$url "$HERALD" db migrate >/dev/null
  DATABASE_URL=$url HERALD_MASTER_KEY=$(printf '0%.0s' $(seq 64)) "$HERALD" org create bench \
    --account-sid AC0123456789abcdef0123456789abcdef --auth-token benchtoken --number +15005550006 >/dev/null
  psql "$url" -Xq -v ON_ERROR_STOP=1 -v n="$1" -v count="$2" <<'SQL'
CREATE TABLE bench_batches (id int PRIMARY KEY, d jsonb);
INSERT INTO bench_batches
SELECT b, jsonb_agg(CASE WHEN s % 2 = 0 THEN
         jsonb_build_object('to', '+15005550006', 'sid', 'SMbench' || s, 'body', 'what is the price?',
           'from', '+1415' || lpad(s::text, 7, '0'), 'media', '[]'::jsonb, 'org_id', 1,
           'twiml', '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Prices: example.com/p</Message></Response>',
           'reply', 'Prices: example.com/p', 'tags', '{"pricing"}',
           'actions', '[{"op": "none", "rule": "price", "action": "auto-reply", "detail": {"mode": "twiml", "rule": "price", "text": "Prices: example.com/p", "type": "auto-reply", "source": "rule", "rule_index": 0, "action_index": 0}},
                        {"op": "twiml", "body": "Prices: example.com/p"},
                        {"op": "add_tag", "tag": "pricing", "rule": "price", "action": "add-tag", "detail": {"tag": "pricing", "rule": "price", "type": "add-tag", "source": "rule", "rule_index": 0, "action_index": 1}},
                        {"op": "create_lead", "rule": "rest", "action": "create-lead", "detail": {"rule": "rest", "type": "create-lead", "source": "rule", "rule_index": 1, "action_index": 0}, "source": "rest"}]'::jsonb)
       ELSE
         jsonb_build_object('to', '+15005550006', 'sid', 'SMbench' || s, 'body', 'hello there',
           'from', '+1415' || lpad(s::text, 7, '0'), 'media', '[]'::jsonb, 'org_id', 1,
           'twiml', '<?xml version="1.0" encoding="UTF-8"?><Response/>',
           'actions', '[{"op": "create_lead", "rule": "rest", "action": "create-lead", "detail": {"rule": "rest", "type": "create-lead", "source": "rule", "rule_index": 1, "action_index": 0}, "source": "rest"}]'::jsonb)
       END ORDER BY s)
  FROM generate_series(1, :count) b, generate_series((b - 1) * :n + 1, b * :n) s
 GROUP BY b;
VACUUM ANALYZE;
SQL
}

# Instructions of a single-user backend running lines FIRST..FIRST+COUNT-1 of a file of
# statements, after a preamble.
instructions() { # FILE FIRST COUNT PREAMBLE
  local s=$dir/single.sql
  { [ -n "$4" ] && printf '%s;\n\n' "$4"; sed -n "$2,$(($2 + $3 - 1))p" "$1" | sed 's/$/;\n/'; } >"$s"
  chmod 644 "$s"
  as_owner valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$PGBIN/postgres" --single -j -D "$data" -c autovacuum=off bench <"$s" 2>&1 >/dev/null \
    | sed -n 's/.*I *refs: *//p' | tr -d ','
}
per_call() { # FILE CALLS PREAMBLE -> instructions per call, in thousands
  local a b
  a=$(instructions "$1" 1 10 "$3"); b=$(instructions "$1" 11 $(($2 + 10)) "$3")
  echo $(((b - a) / $2 / 1000))
}

prep="PREPARE ctx(text[], text[], text[], text[]) AS SELECT idx, org_id, auth_token_enc, help_text, opt_out_text,
 opt_in_text, dup_message_id, dup_twiml, form_state::text, contact_tags::text, contact_attrs::text, suppressed,
 rules_version FROM herald_inbound_context_batch(\$1::text[], \$2::text[], \$3::text[], \$4::text[])"
printf '%-9s %-7s %14s %14s %16s %16s\n' messages calls "apply kIr" "apply kIr/msg" "context kIr" "context kIr/msg"
for size in $SIZES; do
  n=${size%%:*}; calls=${size##*:}
  setup "$n" $((calls + 20))
  psql "$url" -XAtqc "SELECT format('SELECT herald_inbound_apply_batch(d) IS NOT NULL FROM bench_batches WHERE id = %s', id)
                        FROM bench_batches ORDER BY id" >"$dir/apply.sql"
  psql "$url" -XAtqc "SELECT format('EXECUTE ctx(%L, %L, %L, %L)', array_agg(e->>'to'), array_agg(e->>'from'),
                               array_agg(e->>'sid'), array_agg('AC0123456789abcdef0123456789abcdef'::text))
                        FROM bench_batches b, jsonb_array_elements(b.d) e GROUP BY b.id ORDER BY b.id" >"$dir/ctx.sql"
  pg_stop
  ctx=$(per_call "$dir/ctx.sql" "$calls" "$prep")   # first: read-only, the database as set up
  apply=$(per_call "$dir/apply.sql" "$calls" "")
  pg_start
  printf '%-9s %-7s %14s %14s %16s %16s\n' "$n" "$calls" "$apply" $((apply / n)) "$ctx" $((ctx / n))
done
