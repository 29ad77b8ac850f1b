#!/usr/bin/env bash
# The broadcast API of `herald serve` (issue 4), with curl over 127.0.0.1 against the
# real binary and a fresh database: POST /broadcast/campaigns (every field, aliases,
# every validation error naming its field, nothing stored on error), the streamed CSV
# upload POST /broadcast/campaigns/{id}/recipients (exact summary counts, a repeat is
# already_uploaded and queues nothing twice, dry_run, 415, 413 declared and while
# streaming, empty / header-only / no phone column / unterminated quote as 4xx JSON
# with nothing queued, a 3.4 MB upload sent slowly while /healthz keeps answering
# promptly, chunked transfer encoding, clients that vanish mid-body, the cap on uploads
# in progress), tenant isolation
# on every endpoint (start/pause/resume/cancel of another org's campaign are 404 and
# change nothing), and GET /broadcast/campaigns/{id}/rejects paginated and as CSV.
# Ends with a SIGTERM that must exit 0 (under ASan: no leaks).
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?run through ctest (HERALD_TEST_PG_STATE)}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-apibc.XXXXXX)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$dir"
  psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT

fresh_db herald_apibc
unset HERALD_ORG

A=$("$HERALD" org create alpha 2>/dev/null)
B=$("$HERALD" org create beta 2>/dev/null)
ORG_A=$(awk '/^org_id/ {print $2}' <<<"$A"); KEY_A=$(awk '/^api_key/ {print $2}' <<<"$A")
KEY_B=$(awk '/^api_key/ {print $2}' <<<"$B")
"$HERALD" suppression add +14155550104 --org "$ORG_A" >/dev/null || bad "suppression add"

CAP=6000000
HERALD_MAX_UPLOAD_BYTES=$CAP HERALD_LISTEN=127.0.0.1:0 "$HERALD" serve --port-file "$dir/port" >"$dir/out" 2>"$dir/err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$dir/port")

# js EXPR: evaluates a Python expression on the JSON document d read from stdin.
js() { python3 -c 'import json,sys
d=json.load(sys.stdin)
v=eval(sys.argv[1])
print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1"; }
# call KEY METHOD PATH [curl args...]: the body in $dir/body, prints the status.
call() {
  local key=$1 method=$2 path=$3
  shift 3
  curl -s -o "$dir/body" -D "$dir/headers" -w '%{http_code}' -X "$method" ${key:+-H "Authorization: Bearer $key"} "$@" "$U$path"
}
body() { cat "$dir/body"; }
create() { call "$KEY_A" POST /broadcast/campaigns -H 'Content-Type: application/json' --data-binary "$1"; }

# ---- create ----
code=$(create '{"name":"full","body":"Hi {{first_name}}, {{city}} deals today","from":"+14155550100","rate":10,
  "start":"2030-01-31T09:00:00-05:00","region":"us","quiet_hours":"09:00-20:00","footer_policy":"always",
  "footer":"Reply STOP to end","defaults":{"city":"our"},"price_per_segment":0.01}')
same "create: 201" "$code" 201
full=$(body)
CID=$(js 'd["id"]' <<<"$full")
check_flat "create: answers the campaign" "$(js '[d["name"],d["status"],d["from"],d["rate_mps"],d["region"],d["quiet_hours"],d["footer_policy"],d["footer_text"],d["merge_defaults"],d["price_per_segment"],d["counts"]]' <<<"$full")" \
  '^\["full", "draft", "\+14155550100", 10, "US", "09:00-20:00", "always", "Reply STOP to end", \{"city": "our"\}, 0.01, \{\}\]$'
check_flat "create: start stored as an instant" "$(js 'd["start_at"]' <<<"$full")" '^2030-01-31T14:00:00'
check_flat "create: Location header" "$(cat "$dir/headers")" "Location: /broadcast/campaigns/$CID"
call "$KEY_A" GET "/broadcast/campaigns/$CID" >/dev/null
same "create: same shape as GET" "$(js 'sorted(d.items())' <"$dir/body")" "$(js 'sorted(d.items())' <<<"$full")"
same "create: stored for the key's org" "$(sql "select org_id from campaigns where id=$CID")" "$ORG_A"
code=$(create '{"name":"cron","body":"hi","messaging_service_sid":"MG0123456789abcdef0123456789abcdef",
  "cron":"0 9 * * mon-fri","tz":"America/New_York"}')
check_flat "create: messaging service + cron + tz" "$code $(body)" '^201 .*"cron" : "0 9 \* \* mon-fri".*"timezone" : "America/New_York"'
code=$(create '{"name":"aliases","body":"hi","from":"+14155550100","rate_mps":2.5,"start_at":"2030-01-31","timezone":"Europe/Paris","footer_text":"Text STOP to quit","merge_defaults":{}}')
check_flat "create: the names GET answers with are accepted too" "$code $(body)" '^201 .*"rate_mps" : 2.5.*"timezone" : "Europe/Paris"'
code=$(call "$KEY_A" POST /broadcast/campaigns --data-binary '{"name":"no type","body":"hi","from":"+14155550100"}' -H 'Content-Type:')
same "create: no Content-Type is read as JSON" "$code" 201

before=$(sql "select count(*) from campaigns")
# refuse NAME STATUS FIELD PATTERN JSON
refuse() {
  local code
  code=$(create "$5")
  if [ "$code" != "$2" ]; then bad "create refused: $1" "status $code, wanted $2: $(body)"; return; fi
  check_flat "create refused: $1" "$(js '[d.get("field"), d["error"]]' <"$dir/body")" "^\[$3, \".*$4"
}
F='"from":"+14155550100"'
refuse "malformed JSON" 400 null "malformed JSON" '{"name":'
refuse "not an object" 400 null "expected a JSON object" '["name"]'
refuse "duplicate key" 400 null "malformed JSON" '{"name":"a","name":"b","body":"hi",'"$F"'}'
refuse "unknown field" 422 '"colour"' "unknown field 'colour'" '{"name":"a","body":"hi",'"$F"',"colour":"red"}'
refuse "no name" 422 '"name"' "name is required" '{"body":"hi",'"$F"'}'
refuse "empty name" 422 '"name"' "name is required" '{"name":"","body":"hi",'"$F"'}'
refuse "name over 200 characters" 422 '"name"' "1 to 200" "{\"name\":\"$(head -c 201 /dev/zero | tr '\0' n)\",\"body\":\"hi\",$F}"
refuse "name not a string" 422 '"name"' "name must be a string" '{"name":5,"body":"hi",'"$F"'}'
refuse "no body" 422 '"body"' "body is required" '{"name":"a",'"$F"'}'
refuse "body over 1600" 422 '"body"' "limit is 1600" "{\"name\":\"a\",\"body\":\"$(head -c 1601 /dev/zero | tr '\0' a)\",$F}"
refuse "unclosed template" 422 '"body"' "not closed" '{"name":"a","body":"Hi {{name",'"$F"'}'
refuse "no sender" 422 '"from"' "exactly one sender: from E164 or messaging_service_sid" '{"name":"a","body":"hi"}'
refuse "two senders" 422 '"messaging_service_sid"' "exactly one sender" '{"name":"a","body":"hi",'"$F"',"messaging_service_sid":"MG0123456789abcdef0123456789abcdef"}'
refuse "bad E.164" 422 '"from"' "E.164" '{"name":"a","body":"hi","from":"4155550100"}'
refuse "bad MG sid" 422 '"messaging_service_sid"' "MG followed by 32" '{"name":"a","body":"hi","messaging_service_sid":"MG123"}'
refuse "rate as text" 422 '"rate"' "rate must be a number" '{"name":"a","body":"hi",'"$F"',"rate":"5"}'
refuse "negative rate" 422 '"rate"' "messages per second" '{"name":"a","body":"hi",'"$F"',"rate":-3}'
refuse "zero rate" 422 '"rate_mps"' "rate_mps must be a number of messages" '{"name":"a","body":"hi",'"$F"',"rate_mps":0}'
refuse "rate and rate_mps" 422 '"rate_mps"' "give rate or rate_mps, not both" '{"name":"a","body":"hi",'"$F"',"rate":1,"rate_mps":2}'
refuse "start not a date" 422 '"start"' "ISO 8601" '{"name":"a","body":"hi",'"$F"',"start":"tomorrow"}'
refuse "start on February 30" 422 '"start"' "ISO 8601" '{"name":"a","body":"hi",'"$F"',"start":"2030-02-30T09:00:00Z"}'
refuse "start with a bad zone" 422 '"start_at"' "ISO 8601" '{"name":"a","body":"hi",'"$F"',"start_at":"2030-01-31T09:00:00+25:00"}'
refuse "bad cron" 422 '"cron"' "cron" '{"name":"a","body":"hi",'"$F"',"cron":"61 * * * *","tz":"America/New_York"}'
refuse "cron with 4 fields" 422 '"cron"' "5 fields" '{"name":"a","body":"hi",'"$F"',"cron":"0 9 * *","tz":"America/New_York"}'
refuse "cron without tz" 422 '"tz"' "cron needs tz" '{"name":"a","body":"hi",'"$F"',"cron":"0 9 * * 1-5"}'
refuse "unknown tz" 422 '"tz"' "unknown time zone" '{"name":"a","body":"hi",'"$F"',"tz":"Mars/Base"}'
refuse "unknown region" 422 '"region"' "unknown region" '{"name":"a","body":"hi",'"$F"',"region":"QQ"}'
refuse "region of 3 letters" 422 '"region"' "two-letter" '{"name":"a","body":"hi",'"$F"',"region":"USA"}'
refuse "quiet hours backwards" 422 '"quiet_hours"' "HH:MM-HH:MM" '{"name":"a","body":"hi",'"$F"',"quiet_hours":"21:00-09:00"}'
refuse "footer policy" 422 '"footer_policy"' "first, always or never" '{"name":"a","body":"hi",'"$F"',"footer_policy":"sometimes"}'
refuse "footer without opt-out" 422 '"footer"' "opt-out language" '{"name":"a","body":"hi",'"$F"',"footer":"Thanks"}'
refuse "price over 10" 422 '"price_per_segment"' "from 0 to 10" '{"name":"a","body":"hi",'"$F"',"price_per_segment":11}'
refuse "defaults not an object" 422 '"defaults"' "must be an object" '{"name":"a","body":"hi",'"$F"',"defaults":["x"]}'
refuse "default not text" 422 '"defaults"' "value of 'city' must be text" '{"name":"a","body":"hi",'"$F"',"defaults":{"city":5}}'
refuse "default field name" 422 '"defaults"' "not a field name" '{"name":"a","body":"hi",'"$F"',"defaults":{"a b":"x"}}'
code=$(call "$KEY_A" POST /broadcast/campaigns -H 'Content-Type: text/plain' --data-binary '{}')
same "create refused: text/plain is 415" "$code" 415
python3 -c 'print("{\"name\":\"big\",\"body\":\"" + "x"*70000 + "\"}")' >"$dir/big.json"
code=$(call "$KEY_A" POST /broadcast/campaigns -H 'Content-Type: application/json' --data-binary @"$dir/big.json")
same "create refused: document over 64 KiB is 413" "$code" 413
code=$(call "" POST /broadcast/campaigns -H 'Content-Type: application/json' --data-binary '{}')
same "create refused: no key is 401" "$code" 401
same "create: nothing stored for refused documents" "$(sql "select count(*) from campaigns")" "$before"

# ---- upload ----
# queued CAMPAIGN: recipients waiting to be sent (the outbox, plus campaign_recipients where it exists).
has_recipients=$(sql "select to_regclass('campaign_recipients') is not null")
queued() {
  if [ "$has_recipients" = t ]; then
    sql "select (select count(*) from outbox where campaign_id=$1) + (select count(*) from campaign_recipients r
         join campaign_uploads u on u.id = r.upload_id where u.campaign_id = $1)"
  else
    sql "select count(*) from outbox where campaign_id=$1"
  fi
}
state() { echo "$(queued "$1")/$(sql "select count(*) from campaign_uploads where campaign_id=$1")/$(sql "select count(*) from campaign_rejects where campaign_id=$1")"; }
upload() { # upload KEY CAMPAIGN FILE [QUERY] [curl args...]
  local key=$1 cid=$2 file=$3 query=${4:-}
  shift 4 2>/dev/null || shift $#
  call "$key" POST "/broadcast/campaigns/$cid/recipients$query" -H 'Content-Type: text/csv' --data-binary @"$file" "$@"
}

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
code=$(upload "$KEY_A" "$CID" "$dir/a.csv")
same "upload: 200" "$code" 200
sum=$(body)
same "upload: summary counts" \
  "$(js '[d["rows"], d["accepted"], d["invalid"], d["duplicate"], d["suppressed"], d["segments"], d["first_messages"], d["dry_run"], d["already_uploaded"]]' <<<"$sum")" \
  '[9, 3, 4, 1, 1, 3, 3, false, false]'
same "upload: invalid by reason" "$(js 'sorted(d["invalid_by_reason"].items())' <<<"$sum")" \
  '[["invalid_number", 1], ["invalid_timezone", 1], ["missing_field", 1], ["missing_phone", 1]]'
same "upload: estimated cost at the campaign's price" "$(js 'd["estimated_cost"]' <<<"$sum")" 0.03
check_flat "upload: estimated finish and rate" "$(js '[d["estimated_finish"], d["rate_mps"], d["rate_assumed"], d["footer_policy"]]' <<<"$sum")" \
  '^\["20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z", 10(\.0)?, false, "always"\]$'
UP1=$(js 'd["upload_id"]' <<<"$sum")
same "upload: upload_id is the recorded upload" "$(sql "select id from campaign_uploads where campaign_id=$CID")" "$UP1"
same "upload: 3 queued, 6 rejects" "$(state "$CID")" "3/1/6"
same "upload: the sha256 of the bytes" "$(js 'd["sha256"]' <<<"$sum")" "$(sha256sum "$dir/a.csv" | cut -d' ' -f1)"

before=$(state "$CID")
code=$(upload "$KEY_A" "$CID" "$dir/a.csv")
same "repeat: 200" "$code" 200
same "repeat: already uploaded, nothing accepted, names the first upload" \
  "$(js '[d["already_uploaded"], d["accepted"], d["upload_id"], d["rows"]]' <"$dir/body")" "[true, 0, $UP1, 9]"
same "repeat: nothing queued twice" "$(state "$CID")" "$before"

printf 'phone,first_name\n4155550102,Bob\n4155550108,New\n4155550109,Newer\n' >"$dir/b.csv"
code=$(upload "$KEY_A" "$CID" "$dir/b.csv" "?dry_run=1")
same "dry run: 200" "$code" 200
same "dry run: counts, no upload id" "$(js '[d["dry_run"], d["upload_id"], d["accepted"], d["duplicate"]]' <"$dir/body")" "[true, null, 2, 1]"
same "dry run: nothing queued or recorded" "$(state "$CID")" "$before"
code=$(upload "$KEY_A" "$CID" "$dir/b.csv" "?dry_run=maybe")
same "dry_run=maybe: 400" "$code" 400
code=$(upload "$KEY_A" "$CID" "$dir/b.csv" "?dry_run=false")
same "the same file for real after the dry run" "$code $(js '[d["accepted"], d["duplicate"], d["already_uploaded"]]' <"$dir/body")" "200 [2, 1, false]"
UP2=$(js 'd["upload_id"]' <"$dir/body")

# ---- uploads refused: each a clear 4xx JSON, nothing queued ----
before=$(state "$CID")
# fatal NAME STATUS ROW PATTERN FILE [QUERY] [curl args]
fatal() {
  local name=$1 want=$2 row=$3 pattern=$4 file=$5 query=${6:-}
  shift 6 2>/dev/null || shift $#
  code=$(upload "$KEY_A" "$CID" "$file" "$query" "$@")
  if [ "$code" != "$want" ]; then bad "refused: $name" "status $code, wanted $want: $(body)"; return; fi
  check_flat "refused: $name" "$(js '[d["row"], d["error"]]' <"$dir/body")" "^\[$row, \".*$pattern"
  same "refused: $name: nothing queued" "$(state "$CID")" "$before"
}
: >"$dir/empty.csv"
fatal "empty body" 400 null "empty" "$dir/empty.csv"
printf 'phone,first_name\r\n' >"$dir/header.csv"
fatal "header only" 422 1 "no data rows" "$dir/header.csv"
printf 'name,email\nAnn,a@example.com\n' >"$dir/nophone.csv"
fatal "no phone column" 422 1 "no phone column" "$dir/nophone.csv"
printf 'phone,first_name\n4155550111,"Ann\n4155550112,Bob\n' >"$dir/quote.csv"
fatal "unterminated quote" 400 2 "unterminated quoted field" "$dir/quote.csv"
{ printf 'phone,first_name\n4155550113,"'; head -c 2000000 /dev/zero | tr '\0' x; printf '"\n'; } >"$dir/bigfield.csv"
fatal "2 MB field" 413 2 "longer than 1048576 bytes" "$dir/bigfield.csv"
# Wide rows: megabytes without hundreds of thousands of rows to parse (sanitizer builds are slow).
filler=$(head -c 180 /dev/zero | tr '\0' f)
awk -v f="$filler" 'BEGIN { print "phone,first_name,note"; for (i = 0; i < 34000; i++) printf "+1415%07d,Over%d,%s\n", 3000000 + i, i, f }' >"$dir/over.csv"
fatal "declared over the cap" 413 null "larger than $CAP bytes" "$dir/over.csv"
fatal "chunked over the cap" 413 null "larger than $CAP bytes" "$dir/over.csv" "" -H 'Transfer-Encoding: chunked'
code=$(call "$KEY_A" POST "/broadcast/campaigns/$CID/recipients" -H 'Content-Type: text/plain' --data-binary @"$dir/b.csv")
same "refused: text/plain is 415" "$code $(body)" '415 {"error":"Content-Type must be text/csv"}'
code=$(call "$KEY_A" POST "/broadcast/campaigns/$CID/recipients" --data-binary @"$dir/b.csv" -H 'Content-Type:')
same "refused: no Content-Type is 415" "$code" 415
code=$(upload "" "$CID" "$dir/b.csv")
same "refused: no key is 401" "$code" 401
code=$(upload "$KEY_A" 99999999 "$dir/b.csv")
same "refused: unknown campaign is 404" "$code" 404
same "refused: nothing queued by any of them" "$(state "$CID")" "$before"

# ---- a multi-MB upload sent slowly; the loop keeps answering ----
awk -v f="${filler:0:60}" 'BEGIN { print "phone,first_name,note"; for (i = 0; i < 40000; i++) printf "+1415%07d,Name%d,%s\n", 2000000 + i, i, f }' >"$dir/slow.csv"
curl -s -o "$dir/slow.out" -w '%{http_code}' --limit-rate 1M -H "Authorization: Bearer $KEY_A" -H 'Content-Type: text/csv' \
  --data-binary @"$dir/slow.csv" "$U/broadcast/campaigns/$CID/recipients" >"$dir/slow.code" &
slow_pid=$!
probes=0; worst=0
while kill -0 "$slow_pid" 2>/dev/null; do
  t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 5 "$U/healthz")
  probes=$((probes + 1))
  worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
  sleep 0.1
done
wait "$slow_pid"
same "slow upload: 200" "$(cat "$dir/slow.code")" 200
same "slow upload: every row" "$(js '[d["rows"], d["accepted"]]' <"$dir/slow.out")" "[40000, 40000]"
# At least 3 probes while the body trickles in (about 3.4 s at 1 MB/s).
check_flat "slow upload: /healthz probed during it" "$probes" '^([3-9]|[1-9][0-9]+)$'
# A loop blocked by the upload would hold /healthz for seconds; 1 s leaves room for a loaded CI machine.
if python3 -c "import sys; sys.exit(0 if $worst < 1.0 else 1)"; then ok "slow upload: /healthz never took 1 s (worst $worst s)"
else bad "slow upload: /healthz never took 1 s" "worst $worst s over $probes probes"; fi

awk 'BEGIN { print "phone,first_name"; for (i = 0; i < 20000; i++) printf "+1415%07d,Chunk%d\n", 6000000 + i, i }' >"$dir/chunked.csv"
code=$(call "$KEY_A" POST "/broadcast/campaigns/$CID/recipients" -H 'Content-Type: text/csv' -H 'Transfer-Encoding: chunked' --data-binary @- <"$dir/chunked.csv")
same "chunked transfer encoding" "$code $(js '[d["rows"], d["accepted"]]' <"$dir/body")" "200 [20000, 20000]"

# ---- clients that vanish mid-body ----
before=$(state "$CID")
head -15001 "$dir/slow.csv" | sed 's/^+1415/+1650/' >"$dir/gone.csv"
curl -s -o /dev/null --limit-rate 400K --max-time 1.5 -H "Authorization: Bearer $KEY_A" -H 'Content-Type: text/csv' \
  --data-binary @"$dir/gone.csv" "$U/broadcast/campaigns/$CID/recipients"
same "curl gave up mid-body (exit 28)" "$?" 28
python3 - "$(cat "$dir/port")" "$KEY_A" "$CID" "$dir/gone.csv" <<'EOF'
import socket, struct, sys, time
port, key, cid, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = open(path, 'rb').read()
s = socket.create_connection(('127.0.0.1', port))
s.sendall(('POST /broadcast/campaigns/%s/recipients HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n'
           'Content-Type: text/csv\r\nContent-Length: %d\r\n\r\n' % (cid, key, len(data))).encode())
s.sendall(data[:len(data) // 2])
time.sleep(0.5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
s.close()  # RST
EOF
for _ in $(seq 50); do
  [ "$(curl -s "$U/metrics" | awk '/^herald_api_uploads_active / {print $2}')" = 0 ] && break
  sleep 0.1
done
# Two uploads in progress (HERALD_MAX_UPLOADS=2): a third is told to come back later.
busy=""
for i in 1 2; do
  curl -s -o /dev/null --limit-rate 200K --max-time 4 -H "Authorization: Bearer $KEY_A" -H 'Content-Type: text/csv' \
    --data-binary @"$dir/gone.csv" "$U/broadcast/campaigns/$CID/recipients" &
  busy="$busy $!"
done
for _ in $(seq 50); do
  [ "$(curl -s "$U/metrics" | awk '/^herald_api_uploads_active / {print $2}')" = 2 ] && break
  sleep 0.1
done
code=$(upload "$KEY_A" "$CID" "$dir/b.csv")
check_flat "a third upload at once: 503 with Retry-After" "$code $(grep -i '^retry-after' "$dir/headers")" '^503 Retry-After: [0-9]+'
wait $busy
for _ in $(seq 50); do
  [ "$(curl -s "$U/metrics" | awk '/^herald_api_uploads_active / {print $2}')" = 0 ] && break
  sleep 0.1
done
same "vanished clients: no upload left in progress" "$(curl -s "$U/metrics" | awk '/^herald_api_uploads_active / {print $2}')" 0
same "vanished clients: nothing queued or recorded" "$(state "$CID")" "$before"
check_flat "vanished clients: the server keeps serving" "$(curl -s "$U/healthz")" '"status":"ok"'
code=$(upload "$KEY_A" "$CID" "$dir/gone.csv")
same "the same file uploaded whole afterwards is new" "$code $(js '[d["accepted"], d["already_uploaded"]]' <"$dir/body")" "200 [15000, false]"

# ---- tenant isolation: another org's key gets 404 on every endpoint ----
before=$(state "$CID")
same "isolation: GET campaign" "$(call "$KEY_B" GET "/broadcast/campaigns/$CID")" 404
same "isolation: upload" "$(upload "$KEY_B" "$CID" "$dir/b.csv")" 404
same "isolation: upload dry run" "$(upload "$KEY_B" "$CID" "$dir/b.csv" "?dry_run=1")" 404
same "isolation: rejects" "$(call "$KEY_B" GET "/broadcast/campaigns/$CID/rejects")" 404
same "isolation: rejects as CSV" "$(call "$KEY_B" GET "/broadcast/campaigns/$CID/rejects?format=csv")" 404
same "isolation: rejects of one upload" "$(call "$KEY_B" GET "/broadcast/campaigns/$CID/rejects?upload_id=$UP1")" 404
same "isolation: nothing changed" "$(state "$CID")" "$before"
code=$(call "$KEY_B" POST /broadcast/campaigns -H 'Content-Type: application/json' --data-binary '{"name":"b","body":"hi","from":"+14155550100"}')
BCID=$(js 'd["id"]' <"$dir/body")
same "isolation: B creates its own" "$code" 201
same "isolation: A cannot see B's" "$(call "$KEY_A" GET "/broadcast/campaigns/$BCID")" 404
same "isolation: A cannot upload to B's" "$(upload "$KEY_A" "$BCID" "$dir/b.csv")" 404
same "isolation: same answer as a missing id" "$(call "$KEY_B" GET "/broadcast/campaigns/$CID"; body)" "$(call "$KEY_B" GET /broadcast/campaigns/99999999; body)"

# Control: B's key on A's campaign, each verb while the campaign is in a state where A
# could apply it: 404 with the answer a missing id gets, the row untouched (status,
# updated_at, every column) and no control change counted; A's own calls go through.
create '{"name":"ctl","body":"hi","from":"+14155550100","start":"2030-01-31T09:00:00Z"}' >/dev/null
KCID=$(js 'd["id"]' <"$dir/body")
crow() { sql "select status || ' ' || md5(c::text) from campaigns c where id=$KCID"; }
ctl_total() { curl -s "$U/metrics" | awk '/^herald_campaign_control_total / {print $2}'; }
ctl_b() { # VERB...: B's key on each; all 404 like a missing id, nothing changed or counted
  local before=$(crow) n=$(ctl_total) v
  for v in "$@"; do
    same "isolation: POST $v of another org's $(cut -d' ' -f1 <<<"$before") campaign: 404 like a missing id" \
      "$(call "$KEY_B" POST "/broadcast/campaigns/$KCID/$v"; echo " $(body)")" "$(call "$KEY_A" POST "/broadcast/campaigns/99999999/$v"; echo " $(body)")"
  done
  same "isolation: ... the campaign is unchanged, no control change counted" "$(crow)/$(ctl_total)" "$before/$n"
}
same "control: a missing id answers 404 campaign not found" "$(call "$KEY_A" POST /broadcast/campaigns/99999999/start; echo " $(body)")" \
  '404 {"error":"campaign not found"}'
same "control: a new campaign is a draft" "$(crow | cut -d' ' -f1)" draft
n0=$(ctl_total)
ctl_b start cancel
same "control: A starts its own (deferred: scheduled)" "$(call "$KEY_A" POST "/broadcast/campaigns/$KCID/start"; echo " $(body)")" \
  "200 {\"id\":$KCID,\"status\":\"scheduled\",\"previous\":\"draft\"}"
ctl_b pause cancel
same "control: A pauses its own" "$(call "$KEY_A" POST "/broadcast/campaigns/$KCID/pause"; echo " $(body)")" \
  "200 {\"id\":$KCID,\"status\":\"paused\",\"previous\":\"scheduled\"}"
ctl_b resume cancel
same "control: A cancels its own" "$(call "$KEY_A" POST "/broadcast/campaigns/$KCID/cancel"; echo " $(body)")" \
  "200 {\"id\":$KCID,\"status\":\"canceled\",\"previous\":\"paused\"}"
same "control: only A's three calls were counted" "$(ctl_total)" "$((n0 + 3))"
same "control: B's key acts on B's own campaign" "$(call "$KEY_B" POST "/broadcast/campaigns/$BCID/cancel"; echo " $(body)")" \
  "200 {\"id\":$BCID,\"status\":\"canceled\",\"previous\":\"draft\"}"

# ---- rejects ----
total=$(sql "select count(*) from campaign_rejects where campaign_id=$CID")
code=$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects")
same "rejects: 200" "$code" 200
check_flat "rejects: a row carries its number, raw value, reason and detail" \
  "$(js '[r for r in d["data"] if r["row_number"] == 5][0]' <"$dir/body")" \
  "^\{\"upload_id\": $UP1, \"row_number\": 5, \"raw_value\": \"12345\", \"reason\": \"invalid_number\", \"detail\": \"too_short\"\}$"
same "rejects: first page of everything has no next cursor" "$(js '[len(d["data"]), d["next_cursor"]]' <"$dir/body")" "[$total, null]"
seen=""; cur=""; pages=0
while :; do
  call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?limit=2${cur:+&cursor=$cur}" >/dev/null
  seen="$seen $(js '" ".join("%d:%d" % (r["upload_id"], r["row_number"]) for r in d["data"])' <"$dir/body")"
  cur=$(js 'd["next_cursor"] or ""' <"$dir/body")
  pages=$((pages + 1))
  [ -z "$cur" ] || [ $pages -gt 20 ] && break
done
n=$(wc -w <<<"$seen"); u=$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort -u | wc -l)
same "rejects: pages of 2 cover every reject once" "$n/$u" "$total/$total"
same "rejects: in upload and row order" "$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | tr '\n' ' ')" \
  "$(sql "select upload_id||':'||row_number from campaign_rejects where campaign_id=$CID order by upload_id, row_number" | tr '\n' ' ')"
call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?upload_id=$UP2" >/dev/null
same "rejects: upload_id filter" "$(js '[(r["upload_id"], r["row_number"], r["reason"]) for r in d["data"]]' <"$dir/body")" "[[$UP2, 2, \"duplicate\"]]"
code=$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?format=csv")
same "rejects csv: 200 text/csv" "$code $(grep -i '^content-type' "$dir/headers" | tr -d '\r')" "200 Content-Type: text/csv; charset=utf-8"
same "rejects csv: header" "$(head -1 "$dir/body")" "upload,row,raw_value,reason,detail"
same "rejects csv: one line per reject" "$(($(wc -l <"$dir/body") - 1))" "$total"
check_flat "rejects csv: quoted like the CLI" "$(cat "$dir/body")" "^upload,row.* $UP1,5,12345,invalid_number,too_short "
same "rejects csv: equals herald campaign rejects --csv" "$(body)" "$("$HERALD" campaign rejects "$CID" --csv --org "$ORG_A")"
code=$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?format=csv&limit=3")
check_flat "rejects csv: paginated with X-Next-Cursor" "$code $(($(wc -l <"$dir/body") - 1)) $(grep -i '^x-next-cursor' "$dir/headers")" '^200 3 X-Next-Cursor: [A-Za-z0-9_-]+'
same "rejects: bad cursor 400" "$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?cursor=AAAA")" 400
same "rejects: limit 0 is 400" "$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?limit=0")" 400
same "rejects: limit over 1000 is 400" "$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?limit=1001")" 400
same "rejects: unknown format 400" "$(call "$KEY_A" GET "/broadcast/campaigns/$CID/rejects?format=xml")" 400
same "rejects: unknown campaign 404" "$(call "$KEY_A" GET /broadcast/campaigns/99999999/rejects)" 404
same "rejects: no key 401" "$(call "" GET "/broadcast/campaigns/$CID/rejects")" 401

kill -TERM "$serve_pid"
wait "$serve_pid"
rc=$?
serve_pid=
same "serve exits 0 on SIGTERM" "$rc" 0
if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error' "$dir/err"; then bad "no sanitizer reports" "$(grep -E 'Sanitizer|runtime error' "$dir/err" | head -5)"; else ok "no sanitizer reports"; fi
summary
