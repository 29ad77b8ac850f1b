#!/usr/bin/env bash
# Per-org Twilio accounts, end to end: one twilio-sim serving two accounts (the
# environment's, A, and B), three orgs in a fresh database — one without credentials
# (sends as A), one with B's sid and sealed auth token (sends as B), one whose sealed
# token was made under another HERALD_MASTER_KEY (sends nothing rather than as A) —
# and `herald serve` sending their campaigns at once. The simulator's ledger records
# the account of every message; the status callbacks of B's messages are signed with
# B's token and must be accepted by serve (the org's token, opened with the master key).
# Then `herald campaign run` (the CLI path) for an org-B campaign.
# Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
SIM=${TWILIO_SIM_BIN:?TWILIO_SIM_BIN must point at twilio-sim}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-accounts.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

wait_for() { # SECONDS COMMAND...
  local t=$1; shift
  for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

fresh_db herald_accounts

A_SID=AC0123456789abcdef0123456789abcdef
A_TOKEN=tokenA_$RANDOM
B_SID=ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
B_TOKEN=tokenB_$RANDOM
KEY1=$(python3 -c 'import os; print(os.urandom(32).hex())')
KEY2=$(python3 -c 'import os; print(os.urandom(32).hex())')
export TWILIO_ACCOUNT_SID=$A_SID TWILIO_AUTH_TOKEN=$A_TOKEN HERALD_MASTER_KEY=$KEY1
export HERALD_QUIET_HOURS=off HERALD_RETRY_BASE_MS=50 HERALD_RETRY_MAX_MS=500 HERALD_LOG_LEVEL=info
unset HERALD_PUBLIC_URL TWILIO_API_KEY TWILIO_API_SECRET TWILIO_MESSAGING_SERVICE_SID TWILIO_FROM_NUMBER
FROM=+15005550006

"$SIM" --listen 127.0.0.1:0 --account-sid "$A_SID" --auth-token "$A_TOKEN" --account "$B_SID:$B_TOKEN" \
  --ledger "$dir/ledger.jsonl" --mps 100000 --sending-ms 20 --delivery-ms 100 --log-level error \
  >"$dir/sim.out" 2>"$dir/sim.err" &
pids+=($!)
for _ in $(seq 600); do [ -s "$dir/sim.out" ] && break; sleep 0.05; done
[ -s "$dir/sim.out" ] || { echo "twilio-sim did not start: $(cat "$dir/sim.err")"; exit 1; }
export TWILIO_API_BASE_URL="http://$(head -1 "$dir/sim.out" | sed 's/^listening on //')"

# The simulator keeps accounts apart: B's credentials do not open A's messages.
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$B_SID:$B_TOKEN" "$TWILIO_API_BASE_URL/2010-04-01/Accounts/$A_SID/Messages.json")
check_long "sim: B's credentials on A's account -> 404" "$code" "^404$"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$B_SID:$B_TOKEN" "$TWILIO_API_BASE_URL/2010-04-01/Accounts/$B_SID/Messages.json")
check_long "sim: B's credentials on B's account -> 200" "$code" "^200$"

"$HERALD" db migrate >/dev/null 2>>"$dir/err.log"
org_id() { awk '/^org_id/ {print $2}' <<<"$1"; }
orgA=$(org_id "$("$HERALD" org create plain 2>>"$dir/err.log")")
orgB=$(org_id "$("$HERALD" org create own --account-sid "$B_SID" --auth-token "$B_TOKEN" 2>>"$dir/err.log")")
orgC=$(org_id "$(HERALD_MASTER_KEY=$KEY2 "$HERALD" org create lockedout --account-sid "$B_SID" --auth-token "$B_TOKEN" 2>>"$dir/err.log")")
check_long "three orgs created" "$orgA $orgB $orgC" "^[0-9]+ [0-9]+ [0-9]+$"
check_long "org B's token is stored sealed, not in clear" \
  "$(sql "select position('$B_TOKEN'::bytea in twilio_auth_token_enc) from orgs where id=$orgB")" "^0$"

new_campaign() { # ORG NAME N PREFIX -> campaign id
  local org=$1 name=$2 n=$3 prefix=$4 id
  id=$(HERALD_ORG=$org "$HERALD" campaign create --name "$name" --body "$name says hi {{first_name}}" --from $FROM 2>>"$dir/err.log")
  python3 -c "
import sys
n, p = int(sys.argv[1]), sys.argv[2]
print('phone,first_name')
for i in range(n): print('%s%04d,P%d' % (p, i, i))" "$n" "$prefix" >"$dir/$name.csv"
  HERALD_ORG=$org "$HERALD" campaign upload "$id" "$dir/$name.csv" >/dev/null 2>>"$dir/err.log"
  echo "$id"
}
cA=$(new_campaign "$orgA" orgAcamp 40 +1415551)
cB=$(new_campaign "$orgB" orgBcamp 40 +1415552)
cC=$(new_campaign "$orgC" orgCcamp 10 +1415553)

# Prints "messages distinct_recipients account[,account...]" for ledger lines whose body starts with NAME.
ledger_accounts() { # NAME
  python3 - "$dir/ledger.jsonl" "$1" <<'EOF'
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
mine = [m for m in msgs if m['direction'] == 'outbound-api' and m['body'].startswith(sys.argv[2] + ' ')]
print(len(mine), len({m['to'] for m in mine}), ','.join(sorted({m['account_sid'] for m in mine})) or '-')
EOF
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HERALD_LISTEN=127.0.0.1:$port HERALD_PUBLIC_URL=http://127.0.0.1:$port "$HERALD" serve >"$dir/serve.out" 2>"$dir/serve.err" &
serve_pid=$!; pids+=("$serve_pid")
wait_for 10 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null
for c in "$cA:$orgA" "$cB:$orgB" "$cC:$orgC"; do
  HERALD_ORG=${c#*:} "$HERALD" campaign start "${c%:*}" >/dev/null 2>>"$dir/err.log"
done
delivered() { [ "$(sql "select count(*) from outbox where campaign_id in ($cA, $cB) and state = 'delivered'")" = 80 ]; }
wait_for 30 delivered
check_long "org A (no credentials) sent under the environment's account" "$(ledger_accounts orgAcamp)" "^40 40 $A_SID$"
check_long "org B sent under its own account" "$(ledger_accounts orgBcamp)" "^40 40 $B_SID$"
check_long "B's status callbacks (signed with B's token) accepted: every row delivered" \
  "$(sql "select count(*) from outbox where campaign_id = $cB and state = 'delivered'")" "^40$"
check_long "A's status callbacks accepted too" "$(sql "select count(*) from outbox where campaign_id = $cA and state = 'delivered'")" "^40$"
check_long "no callback refused" "$(curl -s "http://127.0.0.1:$port/metrics" | grep 'herald_status_callbacks_total{outcome="forbidden"}' || echo none)" '(none| 0$)'
check_long "org C (token sealed under another key) sent nothing, not even as A" "$(ledger_accounts orgCcamp)" "^0 0 -$"
check_long "org C's rows wait, not failed" "$(sql "select count(*) from outbox where campaign_id = $cC and state in ('queued', 'sending')")" "^10$"
check_long "serve says why org C does not send" "$(cat "$dir/serve.err")" "org $orgC: .*cannot be opened"
kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?
check_long "serve stops gracefully" "$rc" "^0$"

# The CLI path: campaign run of an org-B campaign uses B's account too.
cB2=$(new_campaign "$orgB" orgBrun 25 +1415554)
out=$(HERALD_ORG=$orgB "$HERALD" campaign run "$cB2" 2>&1)
check_long "campaign run (org B) completes" "$out" "completed: 25 recipients, 25 sent"
check_long "campaign run sent under B's account" "$(ledger_accounts orgBrun)" "^25 25 $B_SID$"

check_long "no sanitizer reports" "$(cat "$dir"/*.err "$dir/err.log" 2>/dev/null | grep -c 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer')" "^0$"
psql "$base" -qc "DROP DATABASE $db" >/dev/null 2>&1
summary
