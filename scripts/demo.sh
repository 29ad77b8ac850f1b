#!/usr/bin/env bash
# The demo on a fresh Debian 12 machine: install packages, build, start Herald's private
# Postgres (.herald/pg), apply the schema, then show the compliance core on a sample CSV:
# E.164 normalization with reasons, segment counting, the opt-out footer, quiet hours and
# carrier keywords. Later issues extend it with campaigns, the simulator and the inbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build
H=build/herald
unset DATABASE_URL

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "private Postgres under .herald/pg"
$H db start
$H db status
step "schema migrations (a second run applies nothing)"
$H db migrate
$H db migrate

step "normalize the phone column of examples/numbers.csv (region US)"
# Column 1 of the sample is the phone number; the header row is skipped.
tail -n +2 examples/numbers.csv | cut -d, -f1 | $H phone normalize --region US | column -t -s $'\t'

step "segments, as Twilio counts them"
$H sms info "Hi Ana, our spring sale starts today: 20% off everything."
$H sms info "Hi Ana, our spring sale starts today 🌸 20% off everything."
$H sms info --smart "“Smart” quotes — and dashes… become GSM-7 with smart encoding"

step "opt-out footer on the first message to a contact"
$H sms info --footer --policy first --first "Hi Ana, our spring sale starts today: 20% off everything. See example.com/s"

step "quiet hours: 20:30 Eastern on a Florida number vs a Georgia number"
$H compliance window +13055550123 --at 2026-06-01T00:30:00Z || true
$H compliance window +14045550123 --at 2026-06-01T00:30:00Z || true

step "carrier keywords and free-text revocations"
for t in "STOP" " stop " "Start" "HELP" "please stop texting me" "I can't stop smiling"; do
  printf '%-28s ' "\"$t\""; $H compliance keyword "$t" | tr '\n' ' '; echo
done

step "done"
echo "The private cluster keeps running: 'build/herald db status', 'build/herald db stop'."
