#!/usr/bin/env bash
# Drives the real build/twilio-sim over loopback with curl: create/fetch/list/paging,
# auth, every magic test number, validation errors, STOP handsets, the concurrency
# limit, lost responses, signed status callbacks and inbound webhooks (checked by an
# independent python receiver), malformed and oversized requests, graceful exit.
# env: TWILIO_SIM_BIN (default $HERALD_BUILD_DIR/twilio-sim). Prints "N passed, M failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SIM=${TWILIO_SIM_BIN:-${HERALD_BUILD_DIR:-$here/../../build}/twilio-sim}
[ -x "$SIM" ] || { echo "twilio-sim not found at $SIM" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1${2:+: $2}"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }

ACCT=AC0123456789abcdef0123456789abcdef
TOKEN=simtesttoken
KEY=SK0123456789abcdef0123456789abcdef
SECRET=keysecret

wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

# start_sim NAME ARGS... -> sets PORT_<NAME> and records the pid
start_sim() {
  local name=$1; shift
  "$SIM" --listen 127.0.0.1:0 --account-sid "$ACCT" --auth-token "$TOKEN" --port-file "$tmp/$name.port" \
    "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  eval "PID_$name=$!"
  wait_file "$tmp/$name.port" || { echo "sim $name did not start" >&2; cat "$tmp/$name.err" >&2; exit 1; }
  eval "PORT_$name=$(cat "$tmp/$name.port")"
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- receiver for callbacks and inbound webhooks ---
python3 "$here/sim_receiver.py" "$TOKEN" "$tmp/recv.port" "$tmp/recv.log" &
pids+=($!)
wait_file "$tmp/recv.port" || { echo "receiver did not start" >&2; exit 1; }
RPORT=$(cat "$tmp/recv.port")
touch "$tmp/recv.log"

start_sim main --ledger "$tmp/ledger.jsonl" --inbound-url "http://127.0.0.1:$RPORT/inbound" \
  --api-key "$KEY:$SECRET" --mps 1000 --sending-ms 10 --delivery-ms 50 \
  --handset "+15550001111,stop=1,delay=10" --handset "+15550002222,reply=Hello back, friend"
P=$PORT_main
B="http://127.0.0.1:$P"
M="$B/2010-04-01/Accounts/$ACCT/Messages.json"
first_line=$(head -1 "$tmp/main.out")
check "first stdout line names the port" test "$first_line" = "listening on 127.0.0.1:$P"

# post ARGS... -> body in $tmp/resp, status in $code
post() { code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" "$@" "$M"); }
errcode() { json 'd.get("code")' <"$tmp/resp"; }
expect_error() { # name http code args...
  local name=$1 want_http=$2 want_code=$3; shift 3
  post "$@"
  local got; got=$(errcode 2>/dev/null)
  if [ "$code" = "$want_http" ] && [ "$got" = "$want_code" ]; then ok "$name"; else ko "$name" "http $code code $got: $(head -c 200 "$tmp/resp")"; fi
}

# --- create / fetch ---
post --data-urlencode "To=+14155550100" --data-urlencode "From=+15005550006" --data-urlencode "Body=Hello world"
check "create answers 201" test "$code" = 201
SID=$(json 'd["sid"]' <"$tmp/resp")
check "sid is SM + 32 hex" bash -c "[[ '$SID' =~ ^SM[0-9a-f]{32}$ ]]"
check "status queued" test "$(json 'd["status"]' <"$tmp/resp")" = queued
check "num_segments is the string \"1\"" test "$(json 'repr(d["num_segments"])' <"$tmp/resp")" = "'1'"
check "date_created is RFC 2822" bash -c "[[ '$(json 'd["date_created"]' <"$tmp/resp")' =~ ^[A-Z][a-z]{2},\ [0-9]{2}\ [A-Z][a-z]{2}\ [0-9]{4}\ [0-9:]{8}\ \+0000$ ]]"
check "uri points at the message" test "$(json 'd["uri"]' <"$tmp/resp")" = "/2010-04-01/Accounts/$ACCT/Messages/$SID.json"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" "$B/2010-04-01/Accounts/$ACCT/Messages/$SID.json")
check "fetch answers 200 with the same sid" test "$code:$(json 'd["sid"]' <"$tmp/resp")" = "200:$SID"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" "$B/2010-04-01/Accounts/$ACCT/Messages/SM00000000000000000000000000000000.json")
check "fetch of an unknown sid is 404/20404" test "$code:$(errcode)" = "404:20404"

post --data-urlencode "To=+14155550100" --data-urlencode "From=+15005550006" -d "Body=plus+space%20percent"
check "form decoding: + and %20 are spaces" test "$(json 'd["body"]' <"$tmp/resp")" = "plus space percent"
post --data-urlencode "To=+14155550100" --data-urlencode "MessagingServiceSid=MG0123456789abcdef0123456789abcdef" -d Body=hi
check "Messaging Service create is accepted" test "$code:$(json 'd["status"]' <"$tmp/resp")" = "201:accepted"
post --data-urlencode "To=+14155550100" --data-urlencode "From=+15005550006" \
  --data-urlencode "MediaUrl=https://example.com/a.png" --data-urlencode "MediaUrl=https://example.com/b.png"
check "repeated MediaUrl counted" test "$code:$(json 'd["num_media"]' <"$tmp/resp")" = "201:2"
post --data-urlencode "To=+14155550100" --data-urlencode "From=+15005550006" --data-urlencode "Body=$(printf 'x%.0s' $(seq 161))"
check "161 GSM characters are 2 segments" test "$(json 'd["num_segments"]' <"$tmp/resp")" = 2

# --- auth ---
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:wrong" -d To=x "$M")
check "bad token is 401/20003" test "$code:$(errcode)" = "401:20003"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -d To=x "$M")
check "no credentials is 401/20003" test "$code:$(errcode)" = "401:20003"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$KEY:$SECRET" --data-urlencode "To=+14155550101" --data-urlencode "From=+15005550006" -d Body=key "$M")
check "API key auth works" test "$code" = 201

# --- magic numbers and validation ---
F=(--data-urlencode "From=+15005550006")
T=(--data-urlencode "To=+14155550100")
expect_error "From +15005550001 -> 21212" 400 21212 "${T[@]}" --data-urlencode "From=+15005550001" -d Body=x
expect_error "From +15005550007 -> 21606" 400 21606 "${T[@]}" --data-urlencode "From=+15005550007" -d Body=x
expect_error "From +15005550008 -> 21611" 400 21611 "${T[@]}" --data-urlencode "From=+15005550008" -d Body=x
expect_error "To +15005550001 -> 21211" 400 21211 "${F[@]}" --data-urlencode "To=+15005550001" -d Body=x
expect_error "To +15005550002 -> 21612" 400 21612 "${F[@]}" --data-urlencode "To=+15005550002" -d Body=x
expect_error "To +15005550003 -> 21408" 400 21408 "${F[@]}" --data-urlencode "To=+15005550003" -d Body=x
expect_error "To +15005550004 -> 21610" 400 21610 "${F[@]}" --data-urlencode "To=+15005550004" -d Body=x
expect_error "To +15005550009 -> 21614" 400 21614 "${F[@]}" --data-urlencode "To=+15005550009" -d Body=x
expect_error "missing To -> 21604" 400 21604 "${F[@]}" -d Body=x
expect_error "missing From -> 21603" 400 21603 "${T[@]}" -d Body=x
expect_error "missing Body -> 21602" 400 21602 "${T[@]}" "${F[@]}"
expect_error "invalid To -> 21211" 400 21211 "${F[@]}" -d To=banana -d Body=x
expect_error "1601-character body -> 21617" 400 21617 "${T[@]}" "${F[@]}" --data-urlencode "Body=$(printf 'a%.0s' $(seq 1601))"
post "${T[@]}" "${F[@]}" --data-urlencode "Body=$(printf 'a%.0s' $(seq 1600))"
check "1600-character body accepted" test "$code" = 201
expect_error "malformed percent-encoding -> 400" 400 20001 "${T[@]}" "${F[@]}" -d "Body=bad%zz"

# --- list and paging ---
for i in 1 2 3; do post --data-urlencode "To=+14155550177" "${F[@]}" -d "Body=page$i"; done
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" -G --data-urlencode "To=+14155550177" -d PageSize=2 "$M")
check "list page 1 has 2 messages" test "$code:$(json 'len(d["messages"])' <"$tmp/resp")" = "200:2"
check "list envelope has one non-meta key" test "$(json 'sorted(k for k in d if k not in ("end","first_page_uri","next_page_uri","page","page_size","previous_page_uri","start","uri"))' <"$tmp/resp")" = "['messages']"
check "list is newest first" test "$(json 'd["messages"][0]["body"]' <"$tmp/resp")" = page3
next=$(json 'd["next_page_uri"]' <"$tmp/resp")
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" "$B$next")
check "next_page_uri gives the last message and no further page" \
  test "$code:$(json 'len(d["messages"])' <"$tmp/resp"):$(json 'd["messages"][0]["body"]' <"$tmp/resp"):$(json 'd["next_page_uri"]' <"$tmp/resp")" = "200:1:page1:None"
today=$(date -u +%Y-%m-%d)
sleep 0.1
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" -G --data-urlencode "To=+14155550177" --data-urlencode "DateSent=$today" "$M")
check "DateSent filter finds today's messages" test "$code:$(json 'len(d["messages"])' <"$tmp/resp")" = "200:3"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" -G --data-urlencode "To=+14155550177" -d "DateSent%3C=2001-01-01" "$M")
check "DateSent< filter excludes newer messages" test "$code:$(json 'len(d["messages"])' <"$tmp/resp")" = "200:0"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" -G --data-urlencode "From=+15005550006" -d "DateSent%3E=2001-01-01" -d PageSize=1000 "$M")
check "From + DateSent> filters" test "$code:$(json 'len(d["messages"]) >= 3' <"$tmp/resp")" = "200:True"

# --- status callbacks (signed) ---
post --data-urlencode "To=+14155550188" "${F[@]}" -d Body=cb --data-urlencode "StatusCallback=http://127.0.0.1:$RPORT/status?x=1"
CBSID=$(json 'd["sid"]' <"$tmp/resp")
for _ in $(seq 100); do grep -q "\"MessageStatus\": \"delivered\".*$CBSID\|$CBSID.*\"MessageStatus\": \"delivered\"" "$tmp/recv.log" && break; sleep 0.05; done
check "status callback 'sent' received" grep -q "\"MessageSid\": \"$CBSID\", \"MessageStatus\": \"sent\"" "$tmp/recv.log"
check "status callback 'delivered' received" grep -q "\"MessageSid\": \"$CBSID\", \"MessageStatus\": \"delivered\"" "$tmp/recv.log"
check "status callbacks carry a valid X-Twilio-Signature" \
  test "$(grep "$CBSID" "$tmp/recv.log" | grep -c '"sig_ok": true')" = 2

# --- handsets: STOP, then 21610; a text reply ---
post --data-urlencode "To=+15550001111" "${F[@]}" -d Body=promo
check "send to STOP handset accepted" test "$code" = 201
for _ in $(seq 100); do grep -q '"Body": "STOP"' "$tmp/recv.log" && break; sleep 0.05; done
check "handset STOP arrives as a signed inbound webhook" bash -c "grep '\"Body\": \"STOP\"' '$tmp/recv.log' | grep -q '\"sig_ok\": true'"
check "inbound webhook has Twilio's fields" bash -c "grep '\"Body\": \"STOP\"' '$tmp/recv.log' | grep '\"From\": \"+15550001111\"' | grep '\"To\": \"+15005550006\"' | grep '\"SmsStatus\": \"received\"' | grep -q '\"NumSegments\": \"1\"'"
expect_error "after STOP the same sender gets 21610" 400 21610 --data-urlencode "To=+15550001111" "${F[@]}" -d Body=again
post --data-urlencode "To=+15550001111" --data-urlencode "From=+15005550099" -d Body=other
check "another sender may still send" test "$code" = 201
post --data-urlencode "To=+15550002222" "${F[@]}" -d Body=hi
for _ in $(seq 100); do grep -q '"Body": "Hello back, friend"' "$tmp/recv.log" && break; sleep 0.05; done
check "handset text reply delivered" grep -q '"Body": "Hello back, friend"' "$tmp/recv.log"

# --- inject (endpoint and CLI) ---
"$SIM" inject --sim "$B" --from +15550003333 --to +15005550006 --body "injected hi" >"$tmp/inject.out" 2>&1
check "inject command succeeds" grep -q '^201' "$tmp/inject.out"
for _ in $(seq 100); do grep -q '"Body": "injected hi"' "$tmp/recv.log" && break; sleep 0.05; done
check "injected SMS arrives as a signed webhook" bash -c "grep '\"Body\": \"injected hi\"' '$tmp/recv.log' | grep -q '\"sig_ok\": true'"
curl -s -o /dev/null -d From=+15550004444 -d To=%2B15005550006 -d Body=STOP "$B/sim/inbound"
curl -s -o /dev/null -d From=%2B15550004444 -d To=%2B15005550006 -d Body=STOP "$B/sim/inbound"
expect_error "injected STOP blocks that pair with 21610" 400 21610 --data-urlencode "To=+15550004444" "${F[@]}" -d Body=x

# --- malformed and oversized requests, routing errors ---
exec 3<>"/dev/tcp/127.0.0.1/$P"
printf 'GARBAGE\x01 / HTTP/9\r\n\r\n' >&3
resp=$(timeout 5 cat <&3 | head -1 | tr -d '\r')
exec 3<&- 3>&-
check "garbage request -> 400" test "$resp" = "HTTP/1.1 400 Bad Request"
head -c 400000 /dev/zero | tr '\0' 'a' >"$tmp/big"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" --data-binary @"$tmp/big" "$M")
check "oversized body -> 413" test "$code" = 413
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' 'b')" "$M")
check "oversized headers -> 431" test "$code" = 431
code=$(curl -s -o /dev/null -w '%{http_code}' "$B/nope")
check "unknown path -> 404" test "$code" = 404
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -u "$ACCT:$TOKEN" "$M")
check "wrong method -> 405" test "$code" = 405
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" -d To=x "$B/2010-04-01/Accounts/ACother/Messages.json")
check "another account's path -> 404/20404" test "$code:$(errcode)" = "404:20404"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" -H 'Expect: 100-continue' --data-urlencode "To=+14155550100" "${F[@]}" --data-urlencode "Body=$(printf 'e%.0s' $(seq 1200))" "$M")
check "Expect: 100-continue body accepted" test "$code" = 201
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" -H 'Transfer-Encoding: chunked' --data-urlencode "To=+14155550100" "${F[@]}" -d Body=chunky "$M")
check "chunked request body accepted" test "$code" = 201
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=ka1 "$M" \
  --next -s -o /dev/null -w '%{http_code}%{num_connects}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=ka2 "$M")
check "keep-alive reuses the connection" test "$code" = "2012010"

# --- faults: concurrency limit, lost responses, 500s, dropped connections ---
start_sim conc --concurrency 2 --latency-ms 600
CM="http://127.0.0.1:$PORT_conc/2010-04-01/Accounts/$ACCT/Messages.json"
for i in 1 2 3 4 5 6; do
  curl -s -o "$tmp/conc.$i" -w '%{http_code}\n' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=c "$CM" >"$tmp/conc.code.$i" &
done
wait_codes() { for i in 1 2 3 4 5 6; do for _ in $(seq 100); do [ -s "$tmp/conc.code.$i" ] && break; sleep 0.05; done; done; }
wait_codes
n201=$(cat "$tmp"/conc.code.* | grep -c 201)
n429=$(cat "$tmp"/conc.code.* | grep -c 429)
check "concurrency limit: 2 accepted, 4 refused with 429" test "$n201:$n429" = "2:4"
check "429 body has code 20429" bash -c "cat '$tmp'/conc.[0-9] | grep -q '\"code\":20429'"

start_sim lose --lose-response 1 --ledger "$tmp/lose.jsonl"
curl -s -o /dev/null -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=lost \
  "http://127.0.0.1:$PORT_lose/2010-04-01/Accounts/$ACCT/Messages.json"
rc=$?
check "lost response: client sees a reset/empty reply (curl exit $rc)" test "$rc" = 52 -o "$rc" = 56
sleep 0.4
check "lost response: message is in the ledger" grep -q '"body":"lost".*"response_lost":true' "$tmp/lose.jsonl"

start_sim f500 --fail-500 1
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=x \
  "http://127.0.0.1:$PORT_f500/2010-04-01/Accounts/$ACCT/Messages.json")
check "--fail-500 answers 500 with a Twilio error body" test "$code:$(errcode)" = "500:20500"
start_sim f429 --fail-429 1
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=x \
  "http://127.0.0.1:$PORT_f429/2010-04-01/Accounts/$ACCT/Messages.json")
check "--fail-429 answers 429/20429" test "$code:$(errcode)" = "429:20429"
start_sim drop --drop-connection 1 --ledger "$tmp/drop.jsonl"
curl -s -o /dev/null -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=x \
  "http://127.0.0.1:$PORT_drop/2010-04-01/Accounts/$ACCT/Messages.json"
rc=$?
check "--drop-connection resets without recording (curl exit $rc)" test "$rc" != 0
start_sim tc --test-credentials
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" --data-urlencode "From=+14155550111" -d Body=x \
  "http://127.0.0.1:$PORT_tc/2010-04-01/Accounts/$ACCT/Messages.json")
check "--test-credentials: other From -> 21606" test "$code:$(errcode)" = "400:21606"

# --- bad usage, env credentials ---
"$SIM" --listen 127.0.0.1:0 >/dev/null 2>&1 </dev/null
check "missing credentials exit 2" test "$?" = 2
TWILIO_ACCOUNT_SID=$ACCT TWILIO_AUTH_TOKEN=$TOKEN "$SIM" --listen 127.0.0.1:0 --port-file "$tmp/env.port" >"$tmp/env.out" 2>&1 &
envpid=$!; pids+=($envpid)
wait_file "$tmp/env.port"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCT:$TOKEN" --data-urlencode "To=+14155550100" "${F[@]}" -d Body=x \
  "http://127.0.0.1:$(cat "$tmp/env.port")/2010-04-01/Accounts/$ACCT/Messages.json")
check "credentials from TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN" test "$code" = 201

# --- status callbacks reach a receiver that is down at first, then slow and failing ---
# The receiver's port is chosen now but nothing listens there for the first second:
# every first attempt is refused and retried with backoff. Then it comes up, answers
# after 20 ms and fails the first delivery of each callback with 503: retried too (the
# first retry after 50 ms here, doubling per attempt).
cbport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_sim cb --mps 1000 --sending-ms 10 --delivery-ms 50 --callback-backoff-ms 50
CBM="http://127.0.0.1:$PORT_cb/2010-04-01/Accounts/$ACCT/Messages.json"
ncb=60
for i in $(seq $ncb); do
  curl -s -o /dev/null -u "$ACCT:$TOKEN" --data-urlencode "To=+1415555$(printf %04d "$i")" "${F[@]}" -d Body=cbretry \
    --data-urlencode "StatusCallback=http://127.0.0.1:$cbport/status" "$CBM"
done
sleep 1
st=$(curl -s "http://127.0.0.1:$PORT_cb/sim/stats")
check "callbacks to a receiver that is down are retried, not dropped" \
  test "$(echo "$st" | json '(d["callback_retries"] > 0, d["callbacks_dropped"], d["callbacks_delivered"])')" = "(True, 0, 0)"
python3 "$here/sim_receiver.py" "$TOKEN" "$tmp/recv2.port" "$tmp/recv2.log" --port "$cbport" --fail-first 1 --delay-ms 20 &
pids+=($!)
wait_file "$tmp/recv2.port"
touch "$tmp/recv2.log"
for _ in $(seq 300); do
  [ "$(wc -l <"$tmp/recv2.log")" -ge $((2 * ncb)) ] && break
  sleep 0.1
done
got=$(python3 -c "import json; print(len({(d['params']['MessageSid'], d['params']['MessageStatus']) for d in map(json.loads, open('$tmp/recv2.log'))}))")
check "every status callback arrives once the receiver is up ($got/$((2 * ncb)) sent+delivered)" test "$got" = $((2 * ncb))
check "each callback delivered once ($(wc -l <"$tmp/recv2.log") answered with 200)" test "$(wc -l <"$tmp/recv2.log")" = $((2 * ncb))
check "retried callbacks are signed" test "$(grep -c '"sig_ok": false' "$tmp/recv2.log")" = 0
st=$(curl -s "http://127.0.0.1:$PORT_cb/sim/stats")
check "sim stats: none dropped, none waiting, 503s retried" \
  test "$(echo "$st" | json '(d["callbacks_dropped"], d["callbacks_waiting"], d["callback_retries"] > 2 * '$ncb')')" = "(0, 0, True)"
# A hard cap: with room for 4 waiting webhooks and one attempt each, the rest are counted as dropped.
capport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_sim cap --mps 1000 --sending-ms 10 --delivery-ms 50 --callback-queue-max 4 --callback-attempts 1
for i in $(seq 10); do
  curl -s -o /dev/null -u "$ACCT:$TOKEN" --data-urlencode "To=+1415666$(printf %04d "$i")" "${F[@]}" -d Body=cap \
    --data-urlencode "StatusCallback=http://127.0.0.1:$capport/nothing-listens" \
    "http://127.0.0.1:$PORT_cap/2010-04-01/Accounts/$ACCT/Messages.json"
done
for _ in $(seq 100); do
  [ "$(curl -s "http://127.0.0.1:$PORT_cap/sim/stats" | json 'd["callbacks_dropped"]')" = 20 ] && break
  sleep 0.05
done
check "past the hard caps webhooks are dropped and counted (20 of 20)" \
  test "$(curl -s "http://127.0.0.1:$PORT_cap/sim/stats" | json 'd["callbacks_dropped"]')" = 20
check "drops are logged" grep -q "dropped" "$tmp/cap.err"

# --- graceful exit flushes the ledger ---
created=$(curl -s "$B/sim/stats" | json 'd["created"]')
kill -TERM "$PID_main"
wait "$PID_main"
check "SIGTERM exits 0" test "$?" = 0
lines=$(grep -c '"direction":"outbound-api"' "$tmp/ledger.jsonl")
check "ledger has one outbound line per accepted message ($lines/$created)" test "$lines" = "$created"
check "ledger lines are JSON with sid/from/to/body/segments/time" \
  python3 -c "
import json,sys
for l in open('$tmp/ledger.jsonl'):
    d=json.loads(l); [d[k] for k in ('sid','from','to','body','segments','time')]
"

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
wait 2>/dev/null
pids=()
check "no sanitizer reports from any simulator" bash -c "! grep -l 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' '$tmp'/*.err"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
