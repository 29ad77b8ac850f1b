#!/usr/bin/env bash
# herald org texts: an org's answers to the carrier keywords HELP, STOP and START, set
# by the CLI, against the real binary, a fresh database in the fixture cluster and the
# real webhook of `herald serve` (signed requests). Custom texts (XML-special, a line
# break, UCS-2) are printed back, stored verbatim, and answered by `herald rules test`
# and by the webhook (TwiML) for STOP, START, HELP/INFO and a rule's opt-out action;
# another org keeps the defaults; a change applies from the next message on; the
# longest allowed text (10 segments) is still answered; --default puts texts back.
# Bad input (empty, blank, invalid UTF-8, control characters, 11 segments GSM-7 or
# UCS-2, bad options, unknown or malformed org) exits 2 or 1 with a one-line reason
# and changes nothing. Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
POST="python3 $SRC/tests/integration/test_webhook_post.py"
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-orgtexts.XXXXXX)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$dir"
  psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT

fresh_db herald_orgtexts
export HERALD_MASTER_KEY=$(master_key)
unset HERALD_ORG TWILIO_AUTH_TOKEN HERALD_WEBHOOK_INSECURE

DEF_HELP='Reply STOP to unsubscribe. Msg&data rates may apply.'
DEF_OUT='You have been unsubscribed and will receive no more messages. Reply START to resubscribe.'
DEF_IN='You have been resubscribed. Reply STOP to unsubscribe.'

TOK_A=tok_a_$RANDOM$RANDOM; ACC_A=AC0123456789abcdef0123456789abcdef; NUM_A=+15005550006
TOK_B=tok_b_$RANDOM$RANDOM; ACC_B=ACfedcba9876543210fedcba9876543210; NUM_B=+15005550007
ORG_A=$("$HERALD" org create acme --account-sid $ACC_A --auth-token "$TOK_A" --number $NUM_A 2>/dev/null | awk '/^org_id/ {print $2}')
ORG_B=$("$HERALD" org create beta --account-sid $ACC_B --auth-token "$TOK_B" --number $NUM_B 2>/dev/null | awk '/^org_id/ {print $2}')
check "two orgs" "$ORG_A/$ORG_B" '^[0-9]+/[0-9]+$'
for n in A B; do
  num=NUM_$n; org=ORG_$n
  printf '{"number": "%s", "rules": [{"name": "bye", "when": {"keywords": ["GOODBYE"]}, "actions": [{"type": "opt-out"}]},
    {"name": "rest", "when": {"any": true}, "actions": [{"type": "add-tag", "tag": "inbound"}]}]}' "${!num}" >"$dir/rules_$n.json"
  "$HERALD" rules load "$dir/rules_$n.json" --org "${!org}" >/dev/null || bad "rules load for org $n"
done

# --- the CLI ---
expect_short "a new org: the three defaults" 0 "^help	default	Reply STOP to unsubscribe\. Msg&data rates may apply\.$" "$HERALD" org texts "$ORG_A"
same "no option prints exactly three lines" "$("$HERALD" org texts "$ORG_A" | cut -f1,2 | tr '\n' ' ')" "help	default opt-out	default opt-in	default "

HELP_A='Acme help: call 555-0100 & see <acme.example>. Reply STOP to opt out.'
OUT_A=$'Acme: you are unsubscribed, no more texts.\nReply START to come back.'
IN_A='Acme: welcome back 🌸 Reply STOP to opt out.'
out=$("$HERALD" org texts "$ORG_A" --help "$HELP_A" --opt-out "$OUT_A" --opt-in "$IN_A" 2>&1); rc=$?
same "set all three: exit 0, prints them back (line break as \\n)" "$rc
$out" "0
help	custom	$HELP_A
opt-out	custom	Acme: you are unsubscribed, no more texts.\\nReply START to come back.
opt-in	custom	$IN_A"
same "stored verbatim" "$(sql "select help_text from orgs where id = $ORG_A")|$(sql "select opt_out_text from orgs where id = $ORG_A")|$(sql "select opt_in_text from orgs where id = $ORG_A")" "$HELP_A|$OUT_A|$IN_A"
same "the other org is untouched" "$(sql "select count(*) from orgs where id = $ORG_B and help_text is null and opt_out_text is null and opt_in_text is null")" 1
expect_short "other org prints the defaults" 0 "^opt-out	default	$DEF_OUT$" "$HERALD" org texts "$ORG_B"

# --- herald rules test answers with the org's texts ---
# reply ORG BODY: the text of the carrier (or rule) action's reply, from rules test --json.
reply() {
  "$HERALD" rules test --org "$1" --number "$2" --body "$3" --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("|".join(a.get("text") or "" for a in d["actions"] if a.get("text")))'
}
same "rules test: STOP answers the org's opt-out text" "$(reply "$ORG_A" $NUM_A STOP)" "$OUT_A"
same "rules test: stop in any case" "$(reply "$ORG_A" $NUM_A " Stop ")" "$OUT_A"
same "rules test: UNSUBSCRIBE (STOP family)" "$(reply "$ORG_A" $NUM_A UNSUBSCRIBE)" "$OUT_A"
same "rules test: a free-text opt-out" "$(reply "$ORG_A" $NUM_A "please stop texting me")" "$OUT_A"
same "rules test: START answers the org's opt-in text" "$(reply "$ORG_A" $NUM_A START)" "$IN_A"
same "rules test: UNSTOP (START family)" "$(reply "$ORG_A" $NUM_A unstop)" "$IN_A"
same "rules test: HELP answers the org's help text" "$(reply "$ORG_A" $NUM_A HELP)" "$HELP_A"
same "rules test: INFO too" "$(reply "$ORG_A" $NUM_A info)" "$HELP_A"
same "rules test: a rule's opt-out action uses the org's text" "$(reply "$ORG_A" $NUM_A goodbye)" "$OUT_A"
expect_short "rules test: text output names the carrier keyword" 0 "help \(carrier keyword HELP\): reply \"Acme help: call 555-0100 & see <acme\.example>\." \
  "$HERALD" rules test --org "$ORG_A" --number $NUM_A --body HELP
same "rules test, other org: STOP default" "$(reply "$ORG_B" $NUM_B STOP)" "$DEF_OUT"
same "rules test, other org: START default" "$(reply "$ORG_B" $NUM_B START)" "$DEF_IN"
same "rules test, other org: HELP default" "$(reply "$ORG_B" $NUM_B HELP)" "$DEF_HELP"

# --- the webhook answers with the org's texts ---
HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=https://hooks.example.test \
  "$HERALD" serve --port-file "$dir/port" >"$dir/serve.out" 2>"$dir/serve.err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
URL=http://127.0.0.1:$(cat "$dir/port")/connect/webhook/twilio/sms
SURL=https://hooks.example.test/connect/webhook/twilio/sms
sms() { # A|B FROM BODY: a signed inbound message to the org's number, with a fresh MessageSid
  local tok=TOK_$1 acc=ACC_$1 num=NUM_$1
  $POST "$URL" "${!tok}" --sign-url "$SURL" "MessageSid=SM$(date +%s%N)$RANDOM" "AccountSid=${!acc}" "From=$2" "To=${!num}" "Body=$3"
}
# twiml TEXT: the TwiML answer carrying exactly one message, TEXT XML-escaped.
twiml() {
  python3 -c 'import sys; from xml.sax.saxutils import escape
print("200\t<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>%s</Message></Response>"
      % escape(sys.argv[1], {"\"": "&quot;"}))' "$1"
}
same "webhook: HELP answers the org's help text (XML-escaped)" "$(sms A +14155550101 HELP)" "$(twiml "$HELP_A")"
same "webhook: INFO too" "$(sms A +14155550101 info)" "$(twiml "$HELP_A")"
same "webhook: STOP answers the org's opt-out text" "$(sms A +14155550102 STOP)" "$(twiml "$OUT_A")"
same "webhook: STOP suppressed the contact" "$(sql "select count(*) from suppression where org_id = $ORG_A and e164 = '+14155550102'")" 1
same "webhook: START answers the org's opt-in text" "$(sms A +14155550102 START)" "$(twiml "$IN_A")"
same "webhook: a free-text opt-out" "$(sms A +14155550103 "please stop texting me")" "$(twiml "$OUT_A")"
same "webhook: a free-text opt-out's consent event keeps the phrase" \
  "$(sql "select kind || '|' || keyword from consent_events where org_id = $ORG_A and e164 = '+14155550103'")" "opt_out|please stop texting me"
same "webhook: STOP's consent event keeps the keyword" \
  "$(sql "select keyword from consent_events where org_id = $ORG_A and e164 = '+14155550102' and kind = 'opt_out'")" "STOP"
same "webhook: a rule's opt-out action" "$(sms A +14155550104 GOODBYE)" "$(twiml "$OUT_A")"
same "webhook, other org: HELP default" "$(sms B +14155550101 HELP)" "$(twiml "$DEF_HELP")"
same "webhook, other org: STOP default" "$(sms B +14155550102 STOP)" "$(twiml "$DEF_OUT")"
same "webhook, other org: START default" "$(sms B +14155550102 START)" "$(twiml "$DEF_IN")"

# A change applies from the next message on; the longest allowed texts are answered whole.
expect_short "change the help text while serve runs" 0 "^help	custom	Acme v2$" "$HERALD" org texts "$ORG_A" --help "Acme v2"
same "webhook: the next HELP has the new text" "$(sms A +14155550105 HELP)" "$(twiml "Acme v2")"
max=$(printf 'x%.0s' $(seq 1530))
expect_short "10 GSM-7 segments (1530 characters) are allowed" 0 "^help	custom	x{1530}$" "$HERALD" org texts "$ORG_A" --help "$max"
same "webhook: a 10-segment help text is answered whole" "$(sms A +14155550106 HELP)" "$(twiml "$max")"
maxu=$(printf 'ж%.0s' $(seq 670))
expect_short "10 UCS-2 segments (670 characters) are allowed" 0 "^opt-in	custom	(ж){670}$" "$HERALD" org texts "$ORG_A" --opt-in "$maxu"
same "webhook: a 10-segment UCS-2 opt-in text is answered whole" "$(sms A +14155550102 STOP >/dev/null; sms A +14155550102 START)" "$(twiml "$maxu")"
sqlish="Acme'); DROP TABLE orgs; -- \$1 \\x00"
same "SQL-looking text is only text (a backslash printed as \\\\)" "$("$HERALD" org texts "$ORG_A" --help "$sqlish" | head -1)" "help	custom	${sqlish//\\/\\\\}"
same "SQL-looking text stored verbatim, orgs intact" "$(sql "select help_text from orgs where id = $ORG_A")/$(sql "select count(*) from orgs")" "$sqlish/2"

# --- back to the defaults ---
expect_short "--default help" 0 "^help	default	$DEF_HELP$" "$HERALD" org texts "$ORG_A" --default help
same "--default help: NULL in the database, the others kept" "$(sql "select (help_text is null)::text || '/' || (opt_out_text = \$t\$$OUT_A\$t\$)::text from orgs where id = $ORG_A")" "true/true"
same "webhook: HELP back to the default" "$(sms A +14155550107 HELP)" "$(twiml "$DEF_HELP")"
expect_short "set one, reset another in one call" 0 "^help	custom	Acme v3" "$HERALD" org texts "$ORG_A" --help "Acme v3" --default opt-out
same "webhook: the reset opt-out text is the default again" "$(sms A +14155550108 STOP)" "$(twiml "$DEF_OUT")"
expect_short "--default all" 0 "^opt-in	default	$DEF_IN$" "$HERALD" org texts "$ORG_A" --default all
same "--default all: all NULL" "$(sql "select count(*) from orgs where id = $ORG_A and help_text is null and opt_out_text is null and opt_in_text is null")" 1
same "rules test: defaults again" "$(reply "$ORG_A" $NUM_A HELP)|$(reply "$ORG_A" $NUM_A START)" "$DEF_HELP|$DEF_IN"
# A text stored empty by SQL (the command never stores one) counts as unset, as rules test reads it.
sql "update orgs set opt_out_text = '' where id = $ORG_A" >/dev/null
same "empty text in the database: rules test answers the default" "$(reply "$ORG_A" $NUM_A STOP)" "$DEF_OUT"
same "empty text in the database: the webhook answers the default" "$(sms A +14155550109 STOP)" "$(twiml "$DEF_OUT")"
sql "update orgs set opt_out_text = NULL where id = $ORG_A" >/dev/null

# --- bad input: exit 2 (or 1 for an org that does not exist), one line on stderr, nothing changed ---
"$HERALD" org texts "$ORG_A" --help "Keep me" --opt-out "Keep me too" >/dev/null
row() { sql "select md5(row(help_text, opt_out_text, opt_in_text)::text) from orgs order by id" | tr '\n' ' '; }
before=$(row)
expect_short "empty text: exit 2, points at --default" 2 "^herald: org texts: --help: empty text \(to go back to the default: --default help\)$" \
  "$HERALD" org texts "$ORG_A" --help ""
expect_short "blank text: exit 2" 2 "^herald: org texts: --opt-out: empty text" "$HERALD" org texts "$ORG_A" --opt-out $' \n\t '
expect_short "invalid UTF-8: exit 2" 2 "^herald: org texts: --opt-in: not valid UTF-8$" "$HERALD" org texts "$ORG_A" --opt-in $'caf\xe9 ok'
expect_short "overlong UTF-8: exit 2" 2 "not valid UTF-8" "$HERALD" org texts "$ORG_A" --help $'\xc0\xafetc'
expect_short "control character: exit 2" 2 "^herald: org texts: --help: control character at byte 4 \(only line breaks are allowed\)$" \
  "$HERALD" org texts "$ORG_A" --help $'Acme\x1b[31m'
expect_short "C1 control character: exit 2" 2 "control character at byte 1 " "$HERALD" org texts "$ORG_A" --help $'A\xc2\x85B'
expect_short "11 GSM-7 segments: exit 2 with the count" 2 "^herald: org texts: --help: 11 SMS segments \(GSM-7, 1531 characters\); at most 10 are allowed$" \
  "$HERALD" org texts "$ORG_A" --help "${max}y"
expect_short "11 UCS-2 segments: exit 2 with the count" 2 "^herald: org texts: --opt-in: 11 SMS segments \(UCS-2, 671 characters\); at most 10 are allowed$" \
  "$HERALD" org texts "$ORG_A" --opt-in "${maxu}ж"
expect_short "one bad text of two: exit 2" 2 "--opt-out: empty text" "$HERALD" org texts "$ORG_A" --help "fine" --opt-out ""
expect_short "a text given twice: exit 2" 2 "^herald: org texts: the help text is given more than once$" \
  "$HERALD" org texts "$ORG_A" --help a --help b
expect_short "set and reset one text: exit 2" 2 "the opt-in text is given more than once" "$HERALD" org texts "$ORG_A" --opt-in a --default all
expect_short "--default of an unknown text: exit 2" 2 "^herald: org texts: --default takes help, opt-out, opt-in or all, not 'stop'$" \
  "$HERALD" org texts "$ORG_A" --default stop
expect_short "an option without its value: usage, exit 2" 2 "^usage: herald org" "$HERALD" org texts "$ORG_A" --help
expect_short "an unknown option: usage, exit 2" 2 "herald org texts ORG_ID" "$HERALD" org texts "$ORG_A" --stop "x"
expect_short "no org id: usage, exit 2" 2 "^usage: herald org" "$HERALD" org texts
expect_short "a malformed org id: usage, exit 2" 2 "^usage: herald org" "$HERALD" org texts "1 or 1=1" --help x
expect_short "an empty org id: usage, exit 2" 2 "^usage: herald org" "$HERALD" org texts "" --help x
expect_short "an org that does not exist: exit 1" 1 "^herald: org 99999999 does not exist$" "$HERALD" org texts 99999999 --help x
same "bad input changed nothing" "$(row)" "$before"
same "webhook: still the texts set before the bad input" "$(sms A +14155550109 HELP)" "$(twiml "Keep me")"
expect_short "org key with an empty org id: usage, exit 2" 2 "^usage: herald org" "$HERALD" org key ""
same "... and creates no default org" "$(sql "select count(*) from orgs where name = 'default'")" 0

kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?; serve_pid=
same "serve exits 0 on SIGTERM" "$rc" 0
if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error' "$dir/serve.err"; then bad "no sanitizer reports" "$(grep -E 'Sanitizer|runtime error' "$dir/serve.err" | head -5)"; else ok "no sanitizer reports"; fi
summary
