#!/usr/bin/env bash
# herald campaign create / upload / rejects / status, run as the real binary against a
# fresh database in the fixture cluster: validation of create, a normal upload (counts,
# rejects with row numbers and reasons, outbox and contacts rows), idempotency, dry run,
# duplicates across uploads, stdin, then every bad input of issue 4 — each must give a
# clear error or per-row rejects and never a half-queued campaign — and a kill -9 and a
# Ctrl-C in the middle of the database work. Prints "N passed, M failed".
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?run through ctest (HERALD_TEST_PG_STATE)}
DATA=${HERALD_TEST_DATA_DIR:-$(dirname "$0")/../data}/csv
PSQL=${PSQL:-psql}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-upload.XXXXXX)
base=$(cut -f2 "$STATE")
dbname="herald_upload_$$"

cleanup() {
  rm -rf "$dir"
  "$PSQL" "$base" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1
}
trap cleanup EXIT

"$PSQL" "$base" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1
"$PSQL" "$base" -qc "CREATE DATABASE $dbname" >/dev/null || { echo "cannot create database"; exit 1; }
export DATABASE_URL="${base/dbname=postgres/dbname=$dbname}"
unset HERALD_ORG
sql() { "$PSQL" "$DATABASE_URL" -Atc "$1"; }
# fill CAMPAIGN: move all its recipients into the outbox, as the scheduler does while sending.
fill() { while [ "$(sql "SELECT herald_fill($1, 1000)")" != 0 ]; do :; done; }
# state: recipients + outbox rows, upload rows and reject rows of a campaign, as one string.
state() { sql "SELECT (SELECT count(*) FROM campaign_recipients r JOIN campaign_uploads u ON u.id = r.upload_id
    WHERE u.campaign_id = $1) + (SELECT count(*) FROM outbox WHERE campaign_id = $1) || '/' ||
  (SELECT count(*) FROM campaign_uploads WHERE campaign_id = $1) || '/' ||
  (SELECT count(*) FROM campaign_rejects WHERE campaign_id = $1)"; }

# ---- create: validation ----
C=("$HERALD" campaign create --name t)
expect_short "create: no body" 2 "body is required" "${C[@]}" --from +14155550100
expect_short "create: no sender" 2 "exactly one sender" "${C[@]}" --body hi
expect_short "create: two senders" 2 "exactly one sender" "${C[@]}" --body hi --from +14155550100 \
  --messaging-service MG0123456789abcdef0123456789abcdef
expect_short "create: bad E.164" 2 "E.164" "${C[@]}" --body hi --from 4155550100
expect_short "create: bad MG sid" 2 "MG followed by 32" "${C[@]}" --body hi --messaging-service MG123
expect_short "create: body over 1600" 2 "limit is 1600" "${C[@]}" --from +14155550100 --body "$(head -c 1601 /dev/zero | tr '\0' a)"
expect_short "create: unclosed template" 2 "not closed" "${C[@]}" --from +14155550100 --body "Hi {{name"
expect_short "create: bad cron" 2 "cron" "${C[@]}" --from +14155550100 --body hi --cron "61 * * * *" --tz America/New_York
expect_short "create: cron with 4 fields" 2 "5 fields" "${C[@]}" --from +14155550100 --body hi --cron "0 9 * *" --tz America/New_York
expect_short "create: cron without tz" 2 "needs --tz" "${C[@]}" --from +14155550100 --body hi --cron "0 9 * * 1-5"
expect_short "create: bad tz" 2 "unknown time zone" "${C[@]}" --from +14155550100 --body hi --tz Mars/Base
expect_short "create: bad region" 2 "unknown region" "${C[@]}" --from +14155550100 --body hi --region QQ
expect_short "create: bad quiet hours" 2 "HH:MM-HH:MM" "${C[@]}" --from +14155550100 --body hi --quiet-hours 21:00-09:00
expect_short "create: bad footer policy" 2 "first, always or never" "${C[@]}" --from +14155550100 --body hi --footer-policy sometimes
expect_short "create: footer without opt-out" 2 "opt-out language" "${C[@]}" --from +14155550100 --body hi --footer "Thanks"
expect_short "create: bad rate" 2 "--rate" "${C[@]}" --from +14155550100 --body hi --rate -3
expect_short "create: bad default" 2 "FIELD=VALUE" "${C[@]}" --from +14155550100 --body hi --default novalue
expect_short "create: cron ok" 0 "^[0-9]+$" "${C[@]}" --messaging-service MG0123456789abcdef0123456789abcdef --body hi \
  --cron "0 9 * * mon-fri" --tz America/New_York --quiet-hours 09:00-20:00 --footer-policy always --price-per-segment 0.01

cid=$("$HERALD" campaign create --name main --body "Hi {{first_name}}, {{city}} deals today" --from +14155550100 \
  --default city=our --rate 10 2>/dev/null)
if [[ "$cid" =~ ^[0-9]+$ ]]; then ok "create prints the id ($cid)"; else bad "create prints the id" "$cid"; exit 1; fi
expect_short "unknown verb" 2 "unknown subcommand" "$HERALD" campaign frobnicate
"$HERALD" campaign start 999999 >/dev/null 2>&1
rc=$?
[ "$rc" -le 2 ] && ok "campaign start answers (exit $rc)" || bad "campaign start answers" "exit $rc"

# ---- a normal upload ----
sql "INSERT INTO suppression (org_id, e164, reason) SELECT id, '+14155550104', 'opt_out' FROM orgs WHERE name = 'default'" >/dev/null
cat >"$dir/a.csv" <<'EOF'
phone,first_name,city,tags,timezone
(415) 555-0101,Ann,Paris,"vip,new",
+1 415 555 0102,Bob,,,America/Los_Angeles
415.555.0101,Dup,,,
12345,Short,,,
,Nobody,,,
+1 415 555 0104,Sup,,,
4155550105,,,,
"4155550106","Quoted, Name","Rome",x;y,
4155550107,Eve,,,Mars/Olympus
EOF
expect_short "upload: summary" 0 "accepted: 3" "$HERALD" campaign upload "$cid" "$dir/a.csv"
got=$(sql "SELECT count(*) || '/' || (SELECT count(*) FROM outbox WHERE campaign_id = $cid) || '/' ||
  (SELECT total || ',' || filled FROM campaign_fill WHERE campaign_id = $cid)
  FROM campaign_recipients r JOIN campaign_uploads u ON u.id = r.upload_id WHERE u.campaign_id = $cid")
[ "$got" = "3/0/3,0" ] && ok "upload stores 3 recipients; the outbox is filled while sending" \
  || bad "upload stores 3 recipients; the outbox is filled while sending" "$got"
expect_short "status before the fill: 3 queued" 0 '"queued":3' "$HERALD" campaign status "$cid" --json
fill "$cid"
got=$(sql "SELECT count(*) FROM outbox WHERE campaign_id = $cid AND state = 'queued'")
[ "$got" = 3 ] && ok "3 rows queued" || bad "3 rows queued" "$got"
got=$(sql "SELECT total || ',' || filled FROM campaign_fill WHERE campaign_id = $cid")
[ "$got" = "3,3" ] && ok "fill cursor at the end" || bad "fill cursor at the end" "$got"
[ "$(sql "SELECT herald_fill($cid, 1000)")" = 0 ] && ok "fill again: nothing left" || bad "fill again: nothing left" "?"
expect_short "status answers" 0 "queued" "$HERALD" campaign status "$cid" --json
out=$("$HERALD" campaign rejects "$cid")
for want in "row 4: duplicate: duplicate of row 2" "row 5: invalid_number: too_short" "row 6: missing_phone" \
            "row 7: suppressed" "row 8: missing_field: missing field first_name" "row 10: invalid_timezone"; do
  grep -qF "$want" <<<"$out" && ok "rejects: $want" || bad "rejects: $want" "$out"
done
out=$("$HERALD" campaign rejects "$cid" --csv)
head -1 <<<"$out" | grep -q '^upload,row,raw_value,reason,detail$' && ok "rejects --csv header" || bad "rejects --csv header" "$out"
grep -q ',5,12345,invalid_number,too_short$' <<<"$out" && ok "rejects --csv row" || bad "rejects --csv row" "$out"
got=$(sql "SELECT body FROM outbox WHERE campaign_id = $cid AND to_e164 = '+14155550101'")
[ "$got" = $'Hi Ann, Paris deals today\nReply STOP to opt out' ] && ok "body rendered with the first-message footer" \
  || bad "body rendered with the first-message footer" "$got"
got=$(sql "SELECT body FROM outbox WHERE campaign_id = $cid AND to_e164 = '+14155550102'")
[ "$got" = $'Hi Bob, our deals today\nReply STOP to opt out' ] && ok "campaign default for a blank field" \
  || bad "campaign default for a blank field" "$got"
got=$(sql "SELECT tags::text || ' ' || attributes::text FROM contacts WHERE e164 = '+14155550106'")
[ "$got" = '{x,y} {"city": "Rome", "first_name": "Quoted, Name"}' ] && ok "contact tags and attributes" \
  || bad "contact tags and attributes" "$got"
got=$(sql "SELECT timezone FROM outbox WHERE to_e164 = '+14155550102'")
[ "$got" = "America/Los_Angeles" ] && ok "row timezone kept" || bad "row timezone kept" "$got"
got=$(sql "SELECT count(*) FROM outbox WHERE to_e164 = '+14155550104'")
[ "$got" = 0 ] && ok "suppressed number not queued" || bad "suppressed number not queued" "$got"

# ---- idempotency, dry run, duplicates across uploads, stdin ----
before=$(state "$cid")
expect_short "same file again: says so" 0 "already uploaded" "$HERALD" campaign upload "$cid" "$dir/a.csv"
[ "$(state "$cid")" = "$before" ] && ok "same file again: nothing changed" || bad "same file again: nothing changed" "$(state "$cid")"
printf 'phone,first_name\n4155550102,Bob\n4155550108,New\n' >"$dir/b.csv"
expect_short "dry run" 0 "dry run: nothing queued" "$HERALD" campaign upload "$cid" "$dir/b.csv" --dry-run
[ "$(state "$cid")" = "$before" ] && ok "dry run: nothing changed" || bad "dry run: nothing changed" "$(state "$cid")"
expect_short "second file: cross-upload duplicate" 0 "duplicate: 1" "$HERALD" campaign upload "$cid" - <"$dir/b.csv"
"$HERALD" campaign rejects "$cid" | grep -q "duplicate of row 3 of upload" && ok "cross-upload duplicate names the row" \
  || bad "cross-upload duplicate names the row" "$("$HERALD" campaign rejects "$cid")"
fill "$cid"
got=$(sql "SELECT body FROM outbox WHERE campaign_id = $cid AND to_e164 = '+14155550108'")
[ "$got" = $'Hi New, our deals today\nReply STOP to opt out' ] && ok "stdin upload queued" || bad "stdin upload queued" "$got"
expect_short "upload: unknown campaign" 1 "no campaign" "$HERALD" campaign upload 999999 "$dir/b.csv"
expect_short "upload: missing file" 1 "No such file" "$HERALD" campaign upload "$cid" "$dir/nope.csv"
expect_short "upload: usage" 2 "usage" "$HERALD" campaign upload "$cid"

# ---- bad input: each a clear error, or per-row rejects; never a half-queued campaign ----
bid=$("$HERALD" campaign create --name bad --body "Hi {{first_name}}" --default first_name=there --from +14155550100)
# fatal NAME FILE PATTERN: exit 1 with PATTERN, and the campaign untouched.
fatal() {
  local before
  before=$(state "$bid")
  expect_short "bad input: $1" 1 "$3" "$HERALD" campaign upload "$bid" "$2"
  [ "$(state "$bid")" = "$before" ] && ok "bad input: $1: nothing queued" || bad "bad input: $1: nothing queued" "$(state "$bid")"
}
: >"$dir/empty.csv"
fatal "empty file" "$dir/empty.csv" "empty"
printf 'phone,first_name\r\n' >"$dir/header.csv"
fatal "header only" "$dir/header.csv" "no data rows"
printf 'name,email\nAnn,a@example.com\n' >"$dir/nophone.csv"
fatal "no phone column" "$dir/nophone.csv" "no phone column"
printf 'phone,first_name\n4155550101,"Ann\n4155550102,Bob\n' >"$dir/quote.csv"
fatal "unterminated quote" "$dir/quote.csv" "unterminated quoted field"
{ printf 'phone,first_name\n4155550101,"'; head -c 10485760 /dev/zero | tr '\0' x; printf '"\n'; } >"$dir/bigfield.csv"
fatal "10 MB field" "$dir/bigfield.csv" "row 2 .*longer than 1048576 bytes"
{ printf 'phone'; for i in $(seq 1 100000); do printf ',c%d' "$i"; done; printf '\n4155550101\n'; } >"$dir/wide.csv"
fatal "100k columns" "$dir/wide.csv" "more than 1024 columns"
cp "$DATA/not_csv.png" "$dir/image.png"
fatal "PNG file" "$dir/image.png" "is this a CSV file"
cp "$DATA/not_csv.json" "$dir/data.json"
fatal "JSON file" "$dir/data.json" "is this a CSV file|no phone column"

# perrow NAME FILE WANT_ACCEPTED REJECT_PATTERN: exit 0, per-row rejects with row numbers.
perrow() {
  local out
  expect_short "bad input: $1" 0 "accepted: $3" "$HERALD" campaign upload "$bid" "$2"
  out=$("$HERALD" campaign rejects "$bid")
  grep -Eq -- "$4" <<<"$out" && ok "bad input: $1: reject $4" || bad "bad input: $1: reject $4" "$out"
}
printf 'phone,first_name\n4155550201,A\000nn\n4155550202,Bob\n' >"$dir/nul.csv"
perrow "NUL bytes" "$dir/nul.csv" 1 "row 2: invalid_text: column first_name: NUL byte"
printf 'phone,first_name\n4155550203,Bob\n4155550204,\xff\xfeBad\n' >"$dir/utf8.csv"
perrow "invalid UTF-8" "$dir/utf8.csv" 1 "row 3: invalid_text: column first_name: not valid UTF-8"
cp "$DATA/latin1.csv" "$dir/latin1.csv"
perrow "Latin-1 file" "$dir/latin1.csv" 1 "row 2: invalid_text: .*Latin-1"
printf 'phone,first_name\r4155550207,Cr\r4155550208,Only\r' >"$dir/cr.csv"
perrow "CR-only line ends" "$dir/cr.csv" 2 "."
printf 'phone,first_name\n4155550209,Ann,extra,fields\n' >"$dir/extra.csv"
perrow "more fields than the header" "$dir/extra.csv" 0 "row 2: malformed_row"
fill "$bid"
got=$(sql "SELECT to_e164 FROM outbox WHERE campaign_id = $bid AND to_e164 IN ('+14155550207', '+14155550208') ORDER BY 1" | tr '\n' ' ')
[ "$got" = "+14155550207 +14155550208 " ] && ok "CR-only rows queued" || bad "CR-only rows queued" "$got"

# ---- a crash or Ctrl-C in the middle leaves all or nothing ----
kid=$("$HERALD" campaign create --name kill --body "Hello {{first_name}}" --from +14155550100)
awk 'BEGIN { print "phone,first_name"; for (i = 0; i < 400000; i++) printf "+1415%07d,N%d\n", 2000000 + i, i }' >"$dir/big.csv"
for sig in KILL INT; do
  before=$(state "$kid")
  # A non-interactive shell starts background jobs with SIGINT ignored; undo that.
  env --default-signal=INT "$HERALD" campaign upload "$kid" "$dir/big.csv" >"$dir/kill.out" 2>"$dir/kill.err" &
  pid=$!
  # Wait for the database stage (the COPY has started), then interrupt.
  for _ in $(seq 1 300); do
    n=$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$dbname' AND state = 'active' AND query LIKE 'COPY campaign_recipients%'")
    [ "$n" != 0 ] && break
    sleep 0.1
  done
  sleep 0.05
  kill -s "$sig" "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  sleep 0.5
  if [ "$rc" -eq 0 ]; then
    bad "SIG$sig mid-upload" "the upload finished before the signal; machine too fast for this test?"
  elif [ "$(state "$kid")" = "$before" ]; then
    ok "SIG$sig mid-upload: nothing queued (exit $rc)"
  else
    bad "SIG$sig mid-upload: nothing queued" "$(state "$kid") vs $before"
  fi
done

# ---- existing contacts: merged, not duplicated; deletes of parents reach the outbox ----
mid=$("$HERALD" campaign create --name merge --body "Hi {{first_name}}" --from +14155550100)
printf 'phone,first_name,tags\n+14155550106,Quoted Name,"z,x"\n+14155550999,New,\n' >"$dir/merge.csv"
expect_short "upload to a second campaign" 0 "accepted: 2" "$HERALD" campaign upload "$mid" "$dir/merge.csv"
fill "$mid"
got=$(sql "SELECT count(*) || ' ' || tags::text || ' ' || (attributes->>'first_name') FROM contacts
  WHERE e164 = '+14155550106' GROUP BY tags, attributes")
[ "$got" = "1 {x,y,z} Quoted Name" ] && ok "existing contact: tags added, attributes updated" \
  || bad "existing contact: tags added, attributes updated" "$got"
got=$(sql "SELECT count(*) FROM outbox o JOIN contacts c ON c.id = o.contact_id AND c.e164 = o.to_e164
  WHERE o.campaign_id = $mid")
[ "$got" = 2 ] && ok "outbox rows point at their contacts" || bad "outbox rows point at their contacts" "$got"
sql "DELETE FROM contacts WHERE e164 IN ('+14155550106', '+14155550999')" >/dev/null
got=$(sql "SELECT count(*) || '/' || count(contact_id) FROM outbox WHERE to_e164 IN ('+14155550106', '+14155550999')")
[ "$got" = "3/0" ] && ok "deleting contacts clears outbox.contact_id, keeps the rows" \
  || bad "deleting contacts clears outbox.contact_id, keeps the rows" "$got"
sql "DELETE FROM campaigns WHERE id = $mid" >/dev/null
[ "$(state "$mid")" = "0/0/0" ] && ok "deleting a campaign deletes its outbox rows" \
  || bad "deleting a campaign deletes its outbox rows" "$(state "$mid")"
got=$(sql "SELECT (SELECT count(*) FROM campaign_recipients) || '/' || (SELECT count(*) FROM campaign_rejects)")
sql "DELETE FROM campaigns WHERE id = $bid" >/dev/null
got2=$(sql "SELECT (SELECT count(*) FROM campaign_recipients) || '/' || (SELECT count(*) FROM campaign_rejects)")
[ "$got" != "$got2" ] && [ "$(state "$bid")" = "0/0/0" ] && ok "deleting a campaign deletes its recipients and rejects" \
  || bad "deleting a campaign deletes its recipients and rejects" "$got -> $got2, $(state "$bid")"
sql "DELETE FROM orgs" >/dev/null
got=$(sql "SELECT count(*) FROM outbox")
[ "$got" = 0 ] && ok "deleting the org deletes its outbox rows" || bad "deleting the org deletes its outbox rows" "$got"
got=$(sql "SELECT count(*) FROM contacts")
[ "$got" = 0 ] && ok "deleting the org deletes its contacts" || bad "deleting the org deletes its contacts" "$got"
got=$(sql "INSERT INTO outbox (org_id, to_e164, body, segments, encoding, state) VALUES (1, '+14155550100', 'x', 1, 'GSM-7', 'bogus')" 2>&1)
case "$got" in *outbox_state_check*) ok "unknown outbox state refused" ;; *) bad "unknown outbox state refused" "$got" ;; esac

summary
