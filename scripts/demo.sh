#!/usr/bin/env bash
# The demo, on a fresh Debian 12 machine (as root): installs packages, builds, then runs
# Herald end to end on loopback with its private Postgres (.herald/pg) and the Twilio
# simulator: an org, routing rules, a campaign uploaded from CSV and sent under a rate
# limit, handsets that reply (one says STOP), an injected inbound SMS that a rule answers,
# and an inbox query. Everything it starts is stopped at the end; the cluster stays up
# ('build/herald db stop' stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
# HERALD_BUILD_DIR=DIR uses binaries already built there instead of building build/.
if [ -z "${HERALD_BUILD_DIR:-}" ]; then
  bash scripts/install-deps.sh
  bash scripts/build.sh build
fi
B=$(cd "${HERALD_BUILD_DIR:-build}" && pwd)
H=$B/herald
SIM=$B/twilio-sim
unset DATABASE_URL
work=$(mktemp -d /tmp/herald-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_port() { for _ in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "demo: $2 did not start" >&2; exit 1; }

ACCOUNT=AC00000000000000000000000000000001
TOKEN=demo_auth_token_0123456789abcdef
FROM=+15005550006
export HERALD_MASTER_KEY=$(printf '%064d' 0)   # demo only: encrypts the stored auth token
export HERALD_LOG_LEVEL=warn

step "private Postgres under .herald/pg, schema migrated"
$H db start
$H db migrate

step "the compliance core on its own"
tail -n +2 examples/campaign.csv | cut -d, -f1 | $H phone normalize --region US | column -t -s $'\t'
$H sms info "Hi Ada, spring sale today 🌸 20% off everything."
$H compliance window +13055550123 --at 2026-06-01T00:30:00Z | grep -E '^(zone_reason|rule|status|next_open_local):'

step "Twilio simulator on 127.0.0.1 with three handsets that reply"
$SIM --listen 127.0.0.1:0 --port-file "$work/sim.port" --account-sid $ACCOUNT --auth-token $TOKEN \
     --ledger "$work/ledger.jsonl" --mps 10 --delivery-ms 300 \
     --inbound-url "http://127.0.0.1:18080/connect/webhook/twilio/sms" \
     --handset "+14155550101,delay=200,reply=What is the price?" \
     --handset "+12125550103,stop=1,delay=300" \
     --handset "+16465550104,delay=400,reply=Sounds good" >"$work/sim.log" 2>&1 &
pids+=($!)
wait_port "$work/sim.port" twilio-sim
SIM_URL=http://127.0.0.1:$(cat "$work/sim.port")
echo "twilio-sim at $SIM_URL"

step "an org with the simulator's credentials and number, and its routing rules"
$H org create "Demo Co" --account-sid $ACCOUNT --auth-token $TOKEN --number $FROM | tee "$work/org.txt"
ORG=$(awk '/^org_id/{print $2}' "$work/org.txt")
API_KEY=$(awk '/^api_key/{print $2}' "$work/org.txt")
$H rules load examples/rules.json --org "$ORG"

step "herald serve: webhooks, API and scheduler on 127.0.0.1:18080"
export TWILIO_ACCOUNT_SID=$ACCOUNT TWILIO_AUTH_TOKEN=$TOKEN TWILIO_API_BASE_URL=$SIM_URL
export HERALD_PUBLIC_URL=http://127.0.0.1:18080 HERALD_LISTEN=127.0.0.1:18080
$H serve --port-file "$work/serve.port" >"$work/serve.log" 2>&1 &
pids+=($!)
wait_port "$work/serve.port" "herald serve"

step "a campaign from examples/campaign.csv (one invalid number, one duplicate)"
# Quiet hours hold each message until 08:00-21:00 in the recipient's time zone, so at
# night a real campaign waits for the morning. To run at any hour, the demo fills the
# CSV's optional timezone column with a zone where it is about noon right now.
offset=$(( 12 - 10#$(date -u +%H) ))
if [ "$offset" -ge 0 ]; then tz="Etc/GMT-$offset"; else tz="Etc/GMT+$(( -offset ))"; fi
awk -v tz="$tz" -F, 'NR == 1 { print $0 ",timezone"; next } { print $0 "," tz }' \
    examples/campaign.csv >"$work/campaign.csv"
echo "recipients pinned to $tz (local time now: $(TZ=$tz date +%H:%M))"
CID=$($H campaign create --org "$ORG" --name "Spring sale" --from $FROM --rate 5 \
      --body "Hi {{first_name}}, the spring sale is on in {{city}}: 20% off today.")
echo "campaign $CID"
$H campaign upload "$CID" "$work/campaign.csv" --org "$ORG"
$H campaign rejects "$CID" --org "$ORG"

step "send it (5 segments/s) and wait for the handsets' replies"
$H campaign run "$CID" --org "$ORG"
sleep 2
$H campaign status "$CID" --org "$ORG"

step "an inbound SMS injected through the simulator"
$SIM inject --sim "$SIM_URL" --from +13125550105 --to $FROM --body "JOIN"
sleep 1

step "the inbox: conversations, newest first"
$H inbox conversations --org "$ORG"
step "the same over the CRM API"
curl -s -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:18080/crm/inbox/conversations?limit=3" | head -c 600; echo

step "what the simulator accepted (its ledger)"
wc -l < "$work/ledger.jsonl" | xargs echo "messages accepted:"
echo "logs: $work"
