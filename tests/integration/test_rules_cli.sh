#!/usr/bin/env bash
# herald rules load|list|test against the real binary and a real Postgres (the fixture
# cluster; this test makes its own database in it): load prints the version, a reload
# swaps the active version, a bad file is refused with "FILE: path: reason" and changes
# nothing, list shows the versions, test dry-runs without writing, bad usage exits 2.
# Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?HERALD_TEST_PG_STATE must name the fixture cluster state file}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PSQL=${PSQL:-psql}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-rulescli.XXXXXX)
base=$(cut -f2 "$STATE")
dbname=rules_cli_$$
"$PSQL" "$base" -qc "CREATE DATABASE $dbname" >/dev/null || { echo "FAIL - create database"; exit 1; }
export DATABASE_URL="${base/dbname=postgres/dbname=$dbname}"
unset HERALD_ORG

cleanup() {
  "$PSQL" "$base" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

sql() { "$PSQL" "$DATABASE_URL" -Atqc "$1"; }

cp "$SRC/examples/rules.json" "$dir/v1.json"
cat >"$dir/v2.json" <<'JSON'
{"number": "+15005550006",
 "rules": [
   {"name": "hours", "when": {"keywords": ["HOURS", "horário"]}, "actions": [{"type": "auto-reply", "body": "Open 9-5, {{first_name|friend}}"}]},
   {"name": "join", "when": {"keywords": ["JOIN"]},
    "actions": [{"type": "fill-form", "form": "signup",
                 "fields": [{"name": "email", "prompt": "Your email?", "pattern": "^\\S+@\\S+$"},
                            {"name": "zip", "prompt": "ZIP?", "pattern": "^[0-9]{5}$", "error": "Five digits please."}],
                 "done": "Thanks!"}]},
   {"name": "evil", "when": {"regex": "^(a+)+$"}, "actions": [{"type": "auto-reply", "body": "never"}]},
   {"name": "rest", "when": {"any": true}, "actions": [{"type": "create-lead"}, {"type": "add-tag", "tag": "inbound"}]}
 ]}
JSON
cat >"$dir/bad.json" <<'JSON'
{"number": "+15005550006",
 "rules": [
   {"name": "a", "when": {"keywords": ["A"]}, "actions": [{"type": "opt-in"}]},
   {"name": "b", "when": {"any": true}, "actions": [{"type": "auto-replay", "body": "x"}]}
 ]}
JSON
cat >"$dir/badregex.json" <<'JSON'
{"number": "+15005550006", "rules": [{"name": "a", "when": {"regex": "(abc|de"}, "actions": [{"type": "opt-in"}]}]}
JSON
printf '{"number": "+15005550006", "rules": [' >"$dir/syntax.json"

# --- load ---
expect "load v1 prints version 1" 0 '^loaded \+15005550006 version 1 \(4 rules\)$' "$HERALD" rules load "$dir/v1.json"
expect "test on v1: price rule" 0 'matched rule 1 "price"' "$HERALD" rules test --number +15005550006 --body "what's the PRICE?"
expect "load v2 prints version 2" 0 '^loaded \+15005550006 version 2 \(4 rules\)$' "$HERALD" rules load "$dir/v2.json"
[ "$(sql "select version from rule_sets where active and number = '+15005550006'")" = 2 ] \
  && ok "v2 is the only active version" || bad "v2 is the only active version" "$(sql 'select version, active from rule_sets')"
[ "$(sql "select count(*) from rule_sets where active")" = 1 ] && ok "one active row" || bad "one active row"
expect "test after reload uses v2" 0 'rules for \+15005550006, version 2' "$HERALD" rules test --number +15005550006 --body "price"
expect "v2: accent-insensitive keyword" 0 'matched rule 0 "hours"' "$HERALD" rules test --number +15005550006 --body "HORARIO"
expect "v2: merge default" 0 'reply "Open 9-5, friend"' "$HERALD" rules test --number +15005550006 --body "hours?"

# --- a bad file changes nothing ---
expect "bad action: FILE: path: reason, exit 1" 1 "^$dir/bad.json: rules\[1\]\.actions\[0\]\.type: unknown action \"auto-replay\"$" \
  "$HERALD" rules load "$dir/bad.json"
expect "bad regex with offset" 1 "^$dir/badregex.json: rules\[0\]\.when\.regex: missing closing parenthesis at offset 7$" \
  "$HERALD" rules load "$dir/badregex.json"
expect "bad JSON with line and column" 1 "^$dir/syntax.json: line 1, column [0-9]+: " "$HERALD" rules load "$dir/syntax.json"
expect "missing file" 1 "cannot read" "$HERALD" rules load "$dir/nope.json"
[ "$(sql "select count(*) || ':' || max(version) from rule_sets")" = "2:2" ] \
  && ok "bad files inserted nothing" || bad "bad files inserted nothing" "$(sql 'select version, active from rule_sets')"

# --- list ---
expect "list shows both versions" 0 '\+15005550006 +1 no +4' "$HERALD" rules list
expect "list marks v2 active" 0 '\+15005550006 +2 yes +4' "$HERALD" rules list --number +15005550006
expect "list --json" 0 '^\{"data":\[\{"number":"\+15005550006","version":1,"active":false,"rules":4,' "$HERALD" rules list --json
expect "list other number: header only" 0 '^NUMBER' "$HERALD" rules list --number +14155550100

# --- test: carrier keywords, forms, hostile input, no side effects ---
org=$(sql "select id from orgs where name = 'default'")
sql "insert into contacts (org_id, e164, tags, attributes) values ($org, '+14155550123', '{vip}', '{\"first_name\": \"Ana\", \"age\": 41}')"
sql "insert into contacts (org_id, e164, attributes) values ($org, '+14155550124', '{\"first_name\": \"Bo\"}')"
sql "insert into conversations (org_id, our_number, contact_e164, form_state) values ($org, '+15005550006', '+14155550123', '{\"form\": \"signup\", \"step\": 1}')"
before=$(sql "select (select count(*) from conversation_events) || '/' || (select count(*) from leads) || '/' || (select count(*) from suppression) || '/' || (select count(*) from outbox) || '/' || (select md5(string_agg(c::text, '')) from contacts c) || '/' || (select md5(string_agg(v::text, '')) from conversations v)")
expect "STOP beats rules" 0 'carrier keyword: opt-out \(STOP\)' "$HERALD" rules test --number +15005550006 --body "STOP"
sql "update orgs set help_text = 'Acme help: 555-0100' where id = $org"
expect "HELP uses the org's text" 0 'help \(carrier keyword HELP\): reply "Acme help: 555-0100"' \
  "$HERALD" rules test --number +15005550006 --body "help" --from +14155550123
expect "merge field from the contact" 0 'reply "Open 9-5, Bo"' "$HERALD" rules test --number +15005550006 --body "Hours" --from +14155550124
expect "unknown contact: merge default" 0 'reply "Open 9-5, friend"' "$HERALD" rules test --number +15005550006 --body "Hours" --from +19995550000
expect "form in progress: bad answer re-prompts" 0 'form-reprompt \[zip\]: reply "Five digits please. ZIP\?"' \
  "$HERALD" rules test --number +15005550006 --body "hours" --from +14155550123
expect "form in progress: good answer finishes" 0 'form-answer \[zip\] store zip="94107": reply "Thanks!"' \
  "$HERALD" rules test --number +15005550006 --body " 94107 " --from +14155550123
expect "form in progress: STOP still wins and clears it" 0 'form state: cleared' \
  "$HERALD" rules test --number +15005550006 --body "Stop" --from +14155550123
expect "catastrophic regex reports the limit" 0 'hit the match limit' \
  "$HERALD" rules test --number +15005550006 --body "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
expect "SQL-looking body is only text" 0 'matched rule 3 "rest"' \
  "$HERALD" rules test --number +15005550006 --body "'; DROP TABLE rule_sets; --"
expect "invalid UTF-8 body" 0 'not valid UTF-8' "$HERALD" rules test --number +15005550006 --body $'JOIN \xff\xfe'
expect "test --json" 0 '"matched":\[\{"index":1,"name":"join"\}\].*"form":\{"op":"set","form":"signup","step":0\}' \
  "$HERALD" rules test --number +15005550006 --body "Jóin" --json
after=$(sql "select (select count(*) from conversation_events) || '/' || (select count(*) from leads) || '/' || (select count(*) from suppression) || '/' || (select count(*) from outbox) || '/' || (select md5(string_agg(c::text, '')) from contacts c) || '/' || (select md5(string_agg(v::text, '')) from conversations v)")
[ "$before" = "$after" ] && ok "rules test wrote nothing" || bad "rules test wrote nothing" "$before vs $after"
[ "$(sql "select count(*) from rule_sets where version = 2 and active")" = 1 ] && ok "still v2 after tests" || bad "still v2 after tests"
expect "no rules for another number" 1 'no active rules for \+14155550100' "$HERALD" rules test --number +14155550100 --body hi

# --- org isolation: another org's load does not touch the default org's set ---
org2=$(sql "insert into orgs (name) values ('other') returning id")
expect "load for --org" 0 'version 1 ' "$HERALD" rules load "$dir/v1.json" --org "$org2"
expect "default org still on v2" 0 'version 2' "$HERALD" rules test --number +15005550006 --body hi
expect "other org on its v1" 0 'version 1' "$HERALD" rules test --number +15005550006 --body hi --org "$org2"

# --- trigger-automation secrets: stored sealed under HERALD_MASTER_KEY, never in clear ---
cat >"$dir/signed.json" <<'JSON'
{"number": "+15005550007", "rules": [{"name": "auto", "when": {"any": true},
  "actions": [{"type": "trigger-automation", "url": "http://127.0.0.1:9/hook", "event": "e", "secret": "hunter2-signing"}]}]}
JSON
expect "a secret without HERALD_MASTER_KEY: refused" 1 \
  "^$dir/signed.json: rules\[0\]\.actions\[0\]: HERALD_MASTER_KEY is not set: refusing to store a trigger-automation secret in clear" \
  env -u HERALD_MASTER_KEY "$HERALD" rules load "$dir/signed.json"
expect "a malformed HERALD_MASTER_KEY: refused" 1 "HERALD_MASTER_KEY: expected 32 bytes" \
  env HERALD_MASTER_KEY=nothex "$HERALD" rules load "$dir/signed.json"
[ "$(sql "select count(*) from rule_sets where number = '+15005550007'")" = 0 ] && ok "refused: nothing stored" \
  || bad "refused: nothing stored"
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
expect "a secret with HERALD_MASTER_KEY: loaded" 0 '^loaded \+15005550007 version 1' \
  env HERALD_MASTER_KEY="$KEY" "$HERALD" rules load "$dir/signed.json"
check_sealed=$(sql "select (document::text like '%hunter2%')::text || '/' || (document #>> '{rules,0,actions,0,secret_sealed}' ~ '^[0-9a-f]{92}$')::text
                      || '/' || (document #> '{rules,0,actions,0}' ? 'secret')::text from rule_sets where number = '+15005550007'")
[ "$check_sealed" = "false/true/false" ] && ok "stored sealed: no clear secret in the row" || bad "stored sealed" "$check_sealed"
expect "rules test opens it: signed" 0 '"type":"trigger-automation".*"signed":true' \
  env HERALD_MASTER_KEY="$KEY" "$HERALD" rules test --number +15005550007 --body hi --json
expect "rules test without the key: still signed (a dry run signs nothing)" 0 '"signed":true' \
  env -u HERALD_MASTER_KEY "$HERALD" rules test --number +15005550007 --body hi --json
out=$(env HERALD_MASTER_KEY="$KEY" "$HERALD" rules test --number +15005550007 --body hi 2>&1;
      env HERALD_MASTER_KEY="$KEY" "$HERALD" rules test --number +15005550007 --body hi --json 2>&1)
grep -q hunter2 <<<"$out" && bad "rules test prints no secret" "$out" || ok "rules test prints no secret"
expect "under another key: the stored set does not open" 1 'does not open under HERALD_MASTER_KEY' \
  env HERALD_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$HERALD" rules test --number +15005550007 --body hi
sealed=$(sql "select document::text from rule_sets where number = '+15005550007'")
printf '%s' "$sealed" >"$dir/replay.json"
expect "a file may not carry secret_sealed itself" 1 'unknown field "secret_sealed"' \
  env HERALD_MASTER_KEY="$KEY" "$HERALD" rules load "$dir/replay.json"
# A set stored with its secret in clear (before sealing existed): rules seal, every org.
sql "insert into rule_sets (org_id, number, version, document) values ($org2, '+15005550008', 1,
     '{\"number\": \"+15005550008\", \"rules\": [{\"name\": \"a\", \"when\": {\"any\": true}, \"actions\": [{\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:9/x\", \"event\": \"e\", \"secret\": \"old-clear-secret\"}]}]}')" >/dev/null
expect "rules seal without the key: refused" 1 'HERALD_MASTER_KEY is not set' env -u HERALD_MASTER_KEY "$HERALD" rules seal
expect "rules seal: the clear one sealed" 0 '^sealed 1 secret\(s\) in 1 rule set\(s\)$' env HERALD_MASTER_KEY="$KEY" "$HERALD" rules seal
[ "$(sql "select count(*) from rule_sets where document::text like '%old-clear-secret%'")" = 0 ] && ok "rules seal: no clear secret left" \
  || bad "rules seal: no clear secret left"
expect "rules seal again: nothing to do" 0 '^sealed 0 secret' env HERALD_MASTER_KEY="$KEY" "$HERALD" rules seal
expect "the sealed old set still compiles" 0 '"signed":true' \
  env HERALD_MASTER_KEY="$KEY" "$HERALD" rules test --number +15005550008 --body hi --json --org "$org2"
expect "rules seal takes no arguments" 2 'seal takes no arguments' "$HERALD" rules seal --org "$org2"

# --- usage ---
expect "no subcommand: usage, exit 2" 2 'usage: herald rules' "$HERALD" rules
expect "unknown subcommand" 2 "unknown subcommand 'frob'" "$HERALD" rules frob
expect "load without file" 2 'load needs FILE.json' "$HERALD" rules load
expect "test without --body" 2 'test needs --number E164 and --body TEXT' "$HERALD" rules test --number +15005550006
expect "dangling option" 2 "incomplete argument '--number'" "$HERALD" rules list --number

summary
