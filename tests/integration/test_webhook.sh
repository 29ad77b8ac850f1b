#!/usr/bin/env bash
# POST /connect/webhook/twilio/sms against the real `herald serve`, a fresh database in
# the fixture cluster and a local receiver for post-commit calls. Covers signatures
# (valid, forged, missing, replayed onto other parameters, query string kept), dedupe by
# MessageSid, carrier keywords (STOP/START/HELP with their confirmations, suppression,
# consent events), every rule action end to end, MMS media, the bad inputs of issue 6
# (oversized body, 10k fields, invalid UTF-8, malformed percent-encoding, SQL-looking
# text, a catastrophically backtracking regex), unknown numbers and /metrics.
# Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
POST="python3 $SRC/tests/integration/test_webhook_post.py"
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-webhook.XXXXXX)
serve_pid=
recv_pid=

cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

fresh_db herald_wh
export HERALD_MASTER_KEY=$(master_key)
unset TWILIO_AUTH_TOKEN HERALD_WEBHOOK_INSECURE

TOKEN=tok_$RANDOM$RANDOM
ACC=AC0123456789abcdef0123456789abcdef
OUR=+15005550006
out=$("$HERALD" org create acme --account-sid $ACC --auth-token "$TOKEN" --number $OUR 2>&1)
check "org create prints id and key" "$out" "^org_id [0-9]+"
KEY=$(awk '/^api_key/ {print $2}' <<<"$out")
tok_in_db=$(sql "select count(*) from orgs where position('$TOKEN'::bytea in twilio_auth_token_enc) > 0")
check "auth token not stored in clear" "$tok_in_db" "^0$"

python3 "$SRC/tests/integration/test_webhook_receiver.py" "$dir/recv.port" "$dir/recv.log" &
recv_pid=$!
PUB=https://hooks.example.test
HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=$PUB HERALD_AUTOMATION_SECRET=autosecret \
  "$HERALD" serve --port-file "$dir/port" >"$dir/serve.out" 2>"$dir/serve.err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && [ -s "$dir/recv.port" ] && break; sleep 0.1; done
PORT=$(cat "$dir/port"); RPORT=$(cat "$dir/recv.port")
check "first stdout line names the port" "$(head -1 "$dir/serve.out")" "^listening on 127.0.0.1:$PORT$"
URL=http://127.0.0.1:$PORT/connect/webhook/twilio/sms
SURL=$PUB/connect/webhook/twilio/sms
sms() { # FROM BODY [extra name=value...]: a signed inbound message with a fresh MessageSid
  local from=$1 body=$2; shift 2
  $POST "$URL" "$TOKEN" --sign-url "$SURL" "MessageSid=SM$(date +%s%N)$RANDOM" "AccountSid=$ACC" "From=$from" "To=$OUR" "Body=$body" "$@"
}

# --- signatures ---
r=$(sms +14155550101 "hello")
check "signed message: 200 empty Response" "$r" '^200	<\?xml version="1.0" encoding="UTF-8"\?><Response/>$'
check "message stored" "$(sql "select count(*) from messages where body='hello' and direction='inbound'")" "^1$"
XML_TYPE='text/xml(; ?charset=(UTF|utf)-8)?'
r=$(sms +14155550101 "nothing to answer" --with-type)
check "nothing to say: Content-Type text/xml and an empty Response" "$r" "^200	$XML_TYPE	<\\?xml version=\"1.0\" encoding=\"UTF-8\"\\?><Response/>\$"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMforged AccountSid=$ACC From=+14155550101 To=$OUR Body=x --sig "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
check "forged signature: 403" "$r" "^403"
r=$($POST "$URL" wrongtoken --sign-url "$SURL" MessageSid=SMforged2 AccountSid=$ACC From=+14155550101 To=$OUR Body=x)
check "signature with another token: 403" "$r" "^403"
r=$($POST "$URL" "$TOKEN" --no-sig MessageSid=SMnosig AccountSid=$ACC From=+14155550101 To=$OUR Body=x)
check "missing signature: 400" "$r" "^400"
sig=$(python3 -c "
import base64,hmac,hashlib,sys
d='$SURL'+''.join(k+v for k,v in sorted([('AccountSid','$ACC'),('Body','pay me'),('From','+14155550101'),('MessageSid','SMreplay'),('To','$OUR')]))
print(base64.b64encode(hmac.new(b'$TOKEN',d.encode(),hashlib.sha1).digest()).decode())")
r=$($POST "$URL" "$TOKEN" --sig "$sig" MessageSid=SMreplay AccountSid=$ACC From=+14155550101 To=$OUR "Body=pay me")
check "captured signature, original parameters: 200" "$r" "^200"
r=$($POST "$URL" "$TOKEN" --sig "$sig" MessageSid=SMreplay2 AccountSid=$ACC From=+14155550101 To=$OUR "Body=pay me")
check "replayed signature onto another MessageSid: 403" "$r" "^403"
r=$($POST "$URL" "$TOKEN" --sig "$sig" MessageSid=SMreplay AccountSid=$ACC From=+14155550101 To=$OUR "Body=pay you")
check "replayed signature onto another Body: 403" "$r" "^403"
r=$($POST "$URL?x=1" "$TOKEN" --sign-url "$SURL" MessageSid=SMq AccountSid=$ACC From=+14155550101 To=$OUR Body=q)
check "query string is part of the signed URL: 403 when signed without it" "$r" "^403"
r=$($POST "$URL?x=1" "$TOKEN" --sign-url "$SURL?x=1" MessageSid=SMq AccountSid=$ACC From=+14155550101 To=$OUR Body=q)
check "signed with the query string: 200" "$r" "^200"
check "forged/replayed requests stored nothing" "$(sql "select count(*) from messages where message_sid in ('SMforged','SMforged2','SMnosig','SMreplay2')")" "^0$"

# --- dedupe ---
r1=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMdup AccountSid=$ACC From=+14155550102 To=$OUR Body=HELP)
u1=$(sql "select unread from conversations where contact_e164='+14155550102'")
r2=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMdup AccountSid=$ACC From=+14155550102 To=$OUR Body=HELP)
u2=$(sql "select unread from conversations where contact_e164='+14155550102'")
check "HELP answers the help text" "$r1" "^200	.*<Message>Reply STOP to unsubscribe. Msg&amp;data rates may apply.</Message>"
if [ "$r1" = "$r2" ] && [ "$u1" = "$u2" ]; then ok "repeat MessageSid: same TwiML, nothing changed"; else bad "repeat MessageSid" "$r1 / $r2 / unread $u1 -> $u2"; fi
check "one stored copy" "$(sql "select count(*) from messages where message_sid='SMdup'")" "^1$"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" --with-type MessageSid=SMdup AccountSid=$ACC From=+14155550102 To=$OUR Body=HELP)
check "repeat MessageSid: Content-Type text/xml" "$r" "^200	$XML_TYPE	<\\?xml.*<Message>Reply STOP"
r=$(sms +14155550102 "HELP" --with-type)
check "a message answered: Content-Type text/xml" "$r" "^200	$XML_TYPE	<\\?xml.*<Response><Message>Reply STOP.*</Message></Response>\$"
# Concurrent retries of one MessageSid.
for i in 1 2 3 4 5 6; do $POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMrace AccountSid=$ACC From=+14155550103 To=$OUR Body=race >"$dir/race.$i" & done
wait_pids=$(jobs -p | grep -v -e "^$serve_pid$" -e "^$recv_pid$"); for p in $wait_pids; do wait "$p"; done
check "concurrent retries all 200" "$(cat "$dir"/race.* | cut -f1 | sort -u)" "^200$"
check "concurrent retries stored once" "$(sql "select count(*) from messages where message_sid='SMrace'")" "^1$"

# --- carrier keywords ---
r=$(sms +14155550104 "STOP")
check "STOP: confirmation" "$r" "<Message>You have been unsubscribed"
check "STOP: suppressed" "$(sql "select reason from suppression where e164='+14155550104'")" "^opt_out$"
check "STOP: consent event with keyword/channel/actor" "$(sql "select kind||','||keyword||','||channel||','||actor from consent_events where e164='+14155550104'")" "^opt_out,STOP,sms,contact$"
r=$(sms +14155550104 "stop")
check "second STOP: no second confirmation" "$r" "<Response/>$"
r=$(sms +14155550104 "anything")
check "suppressed contact gets no reply" "$r" "<Response/>$"
r=$(sms +14155550104 "START")
check "START: confirmation" "$r" "<Message>You have been resubscribed"
check "START: unsuppressed" "$(sql "select count(*) from suppression where e164='+14155550104'")" "^0$"
check "START: opt_in consent event" "$(sql "select count(*) from consent_events where e164='+14155550104' and kind='opt_in'")" "^1$"

# --- MMS ---
r=$(sms +14155550105 "pic" NumMedia=2 MediaUrl0=https://media.example/a.jpg MediaContentType0=image/jpeg MediaUrl1=https://media.example/b.png MediaContentType1=image/png)
check "MMS: 200" "$r" "^200"
check "MMS: media kept" "$(sql "select media::text from messages where body='pic'")" 'a.jpg.*image/jpeg.*b.png.*image/png'

# --- bad input ---
{ printf 'Body='; head -c 1100000 /dev/zero | tr '\0' 'a'; } >"$dir/big"
r=$($POST "$URL" "$TOKEN" --raw-file "$dir/big" --sig x)
check "oversized body: 413" "$r" "^413"
python3 -c "print('&'.join('f%d=1' % i for i in range(10000)))" >"$dir/many"
r=$($POST "$URL" "$TOKEN" --raw-file "$dir/many" --sig x)
check "10k form fields: 400" "$r" "^400"
r=$($POST "$URL" "$TOKEN" --raw "MessageSid=SMpct&From=%2B14155550106&To=%2B15005550006&Body=50%ZZ" --sig x)
check "malformed percent-encoding: 400" "$r" "^400"
r=$(sms +14155550106 $'bad \xff\xfe utf8 \xc3')
check "invalid UTF-8: 200" "$r" "^200"
check "invalid UTF-8 stored with U+FFFD" "$(sql "select body from messages where body like 'bad %'")" "^bad �� utf8 �$"
r=$(sms +14155550107 "'); DROP TABLE messages; -- \" OR 1=1")
check "SQL-looking text: 200" "$r" "^200"
check "SQL-looking text stored verbatim" "$(sql "select count(*) from messages where body = '''); DROP TABLE messages; -- \" OR 1=1'")" "^1$"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMnope AccountSid=ACffffffffffffffffffffffffffffffff From=+14155550108 To=+15005550099 Body=x)
check "unknown receiving number, TWILIO_AUTH_TOKEN unset: 403 (nothing tells which numbers exist)" "$r" "^403"
check "unknown receiving number: the log names it, masked" "$(grep -c 'no org receives on +1500\*\*\*0099' "$dir/serve.err")" "^1$"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMnofrom To=$OUR Body=x)
check "missing From: 400" "$r" "^400"
# A SID that is not letters and digits never reaches a batch (one that is not UTF-8
# would fail the batched read of every request sharing it).
r=$($POST "$URL" "$TOKEN" --sig "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" --raw "MessageSid=SM%FF%FE&AccountSid=$ACC&From=%2B14155550108&To=%2B15005550006&Body=x")
check "MessageSid not letters and digits: 400" "$r" "^400.*MessageSid"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMbadacc "AccountSid=AC-1" From=+14155550108 To=$OUR Body=x)
check "AccountSid not letters and digits: 400" "$r" "^400.*AccountSid"

# --- rules: every action ---
doc=$(cat <<JSON
{"number": "$OUR", "rules": [
 {"name": "price", "when": {"regex": "\\\\b(price|cost)\\\\b", "flags": "i"},
  "actions": [{"type": "auto-reply", "body": "Prices <cheap> & \"fair\" for {{phone}}"}, {"type": "add-tag", "tag": "pricing"}]},
 {"name": "untag", "when": {"keywords": ["UNTAG"]}, "actions": [{"type": "remove-tag", "tag": "pricing"}, {"type": "auto-reply", "body": "Untagged", "mode": "queued"}]},
 {"name": "join", "when": {"keywords": ["JOIN"]},
  "actions": [{"type": "fill-form", "form": "signup",
               "fields": [{"name": "email", "prompt": "Your email?", "pattern": "^\\\\S+@\\\\S+$"},
                          {"name": "city", "prompt": "Your city?", "pattern": "^[A-Za-z ]+$"}],
               "done": "Thanks, you're in."}]},
 {"name": "evil", "when": {"regex": "^(a+)+$"}, "actions": [{"type": "auto-reply", "body": "evil matched"}]},
 {"name": "auto", "when": {"keywords": ["AUTO"]},
  "actions": [{"type": "trigger-automation", "url": "http://127.0.0.1:$RPORT/hook", "event": "keyword_auto", "secret": "s3cret"}]},
 {"name": "autofail", "when": {"keywords": ["AUTOFAIL"]},
  "actions": [{"type": "trigger-automation", "url": "http://127.0.0.1:$RPORT/fail", "event": "x"}]},
 {"name": "flow", "when": {"keywords": ["FLOW"]}, "actions": [{"type": "go-to-flow", "flow": "onboarding", "endpoint": "http://127.0.0.1:$RPORT/flow"}]},
 {"name": "ai", "when": {"keywords": ["AI"]}, "actions": [{"type": "ai-assistant", "endpoint": "http://127.0.0.1:$RPORT/ai"}]},
 {"name": "aislow", "when": {"keywords": ["AISLOW"]}, "actions": [{"type": "ai-assistant", "endpoint": "http://127.0.0.1:$RPORT/slow", "timeout_ms": 500}]},
 {"name": "tags2", "when": {"keywords": ["TAGS"]},
  "actions": [{"type": "add-tag", "tag": "b"}, {"type": "add-tag", "tag": "a \\"q\\" {x}"}, {"type": "add-tag", "tag": "b"},
              {"type": "auto-reply", "body": "zebrafinch"}, {"type": "auto-reply", "body": "okapi"}]},
 {"name": "aifail", "when": {"keywords": ["AIFAIL"]}, "actions": [{"type": "ai-assistant", "endpoint": "http://127.0.0.1:$RPORT/status/502"}]},
 {"name": "aiwait", "when": {"keywords": ["AIWAIT"]}, "actions": [{"type": "ai-assistant", "endpoint": "http://127.0.0.1:$RPORT/ai?ms=3000"}]},
 {"name": "removeme", "when": {"keywords": ["REMOVEME"]}, "actions": [{"type": "opt-out"}]},
 {"name": "comeback", "when": {"keywords": ["COMEBACK"]}, "actions": [{"type": "opt-in"}]},
 {"name": "rest", "when": {"any": true}, "actions": [{"type": "create-lead"}, {"type": "forward-sms", "to": "+14155550199"}]}
]}
JSON
)
org=$(sql "select id from orgs where name='acme'")
sql "insert into rule_sets (org_id, number, version, document) values ($org, '$OUR', 1, \$d\$$doc\$d\$::jsonb)" >/dev/null
C=+14155550110
r=$(sms $C "what is the PRICE?")
check "regex rule: TwiML auto-reply, XML-escaped, merge field" "$r" "<Message>Prices &lt;cheap&gt; &amp; &quot;fair&quot; for \\+14155550110</Message>"
check "add-tag on contact and conversation" "$(sql "select c.tags::text||v.tags::text from contacts c join conversations v on v.contact_id=c.id where c.e164='$C'")" "^\{pricing\}\{pricing\}$"
check "events recorded per action" "$(sql "select string_agg(action, ',' order by e.id) from conversation_events e join conversations v on v.id=e.conversation_id where v.contact_e164='$C'")" "^auto-reply,add-tag$"
r=$(sms $C "untag")
check "queued auto-reply: no TwiML" "$r" "<Response/>$"
check "queued auto-reply: outbox row source auto_reply" "$(sql "select source||','||body||','||segments||','||encoding from outbox where to_e164='$C'")" "^auto_reply,Untagged,1,GSM-7$"
check "remove-tag" "$(sql "select tags::text from contacts where e164='$C'")" "^\{\}$"
r=$(sms $C "hello there")
check "any rule: 200" "$r" "^200"
check "create-lead: one open lead" "$(sql "select count(*) from leads l join contacts c on c.id=l.contact_id where c.e164='$C' and status='open'")" "^1$"
sms $C "hello again" >/dev/null
check "create-lead twice: still one open lead" "$(sql "select count(*) from leads l join contacts c on c.id=l.contact_id where c.e164='$C'")" "^1$"
check "forward-sms: outbox rows to the staff number" "$(sql "select count(*) from outbox where source='forward' and to_e164='+14155550199' and from_number='$OUR'")" "^2$"
check "create-lead and forward-sms: an event each, forward-sms's naming its outbox row" \
  "$(sql "select string_agg(e.rule_name || ':' || e.action || ':' || coalesce(e.detail->>'to', '-') || ':' ||
                            coalesce((select o.source from outbox o where o.id = (e.detail->>'outbox_id')::bigint), '-'), ',' order by e.id)
            from conversation_events e join messages m on m.id = e.message_id where m.body = 'hello there'")" \
  "^rest:create-lead:-:-,rest:forward-sms:\\+14155550199:forward$"
F=+14155550111
r=$(sms $F "JOIN"); check "fill-form: first prompt" "$r" "<Message>Your email\\?</Message>"
check "fill-form: state saved" "$(sql "select form_state::text from conversations where contact_e164='$F'")" '"form": "signup"'
r=$(sms $F "not an email"); check "fill-form: bad answer re-prompts" "$r" "Your email\\?"
r=$(sms $F "me@example.com"); check "fill-form: next prompt" "$r" "<Message>Your city\\?</Message>"
r=$(sms $F "HELP"); check "HELP during a form is not swallowed" "$r" "Reply STOP to unsubscribe"
r=$(sms $F "Paris"); check "fill-form: done text" "$r" "<Message>Thanks, you&apos;re in.</Message>"
check "fill-form: answers on the contact" "$(sql "select attributes->>'email'||','||(attributes->>'city') from contacts where e164='$F'")" "^me@example.com,Paris$"
check "fill-form: state cleared" "$(sql "select coalesce(form_state::text,'null') from conversations where contact_e164='$F'")" "^null$"
check "fill-form: an event per step" "$(sql "select string_agg(coalesce(e.rule_name, '-') || ':' || e.action, ',' order by e.id)
            from conversation_events e join conversations v on v.id = e.conversation_id where v.contact_e164 = '$F'")" \
  "^join:fill-form,join:form-reprompt,join:form-answer,-:help,join:form-answer$"
check "fill-form: answer events carry field and value" "$(sql "select string_agg((e.detail->>'field') || '=' || (e.detail->>'value'), ',' order by e.id)
            from conversation_events e join conversations v on v.id = e.conversation_id
           where v.contact_e164 = '$F' and e.action = 'form-answer'")" "^email=me@example.com,city=Paris$"

# --- a form in progress survives a restart (its state is in the database) ---
G=+14155550141
r=$(sms $G "JOIN"); check "fill-form across a restart: first prompt" "$r" "<Message>Your email\\?</Message>"
kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?; serve_pid=
check "fill-form across a restart: SIGTERM exit 0" "$rc" "^0$"
rm -f "$dir/port"
# Now with TWILIO_AUTH_TOKEN (acme's own token still wins for acme).
ENVTOK=envtok_$RANDOM$RANDOM
TWILIO_AUTH_TOKEN=$ENVTOK HERALD_LISTEN=127.0.0.1:0 HERALD_PUBLIC_URL=$PUB HERALD_AUTOMATION_SECRET=autosecret \
  "$HERALD" serve --port-file "$dir/port" >>"$dir/serve.out" 2>>"$dir/serve.err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
PORT=$(cat "$dir/port"); URL=http://127.0.0.1:$PORT/connect/webhook/twilio/sms
r=$($POST "$URL" "$ENVTOK" --sign-url "$SURL" MessageSid=SMnope2 AccountSid=ACffffffffffffffffffffffffffffffff From=+14155550108 To=+15005550098 Body=x)
check "unknown receiving number, signed with TWILIO_AUTH_TOKEN: 404" "$r" "^404"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMnope3 AccountSid=ACffffffffffffffffffffffffffffffff From=+14155550108 To=+15005550098 Body=x)
check "unknown receiving number, signed with another token: 403" "$r" "^403"
check "unknown receiving numbers: nothing stored" "$(sql "select count(*) from messages where message_sid like 'SMnope%'")" "^0$"
r=$(sms $G "you@example.com"); check "fill-form across a restart: the next prompt" "$r" "<Message>Your city\\?</Message>"
r=$(sms $G "Rome"); check "fill-form across a restart: done text" "$r" "<Message>Thanks, you&apos;re in.</Message>"
check "fill-form across a restart: answers on the contact, state cleared" \
  "$(sql "select (c.attributes->>'email') || ',' || (c.attributes->>'city') || ',' || coalesce(v.form_state::text, 'null')
            from contacts c join conversations v on v.contact_id = c.id where c.e164 = '$G'")" "^you@example.com,Rome,null$"

# --- opt-out / opt-in as rule actions (not the carrier keywords) ---
O=+14155550140
r=$(sms $O "REMOVEME")
check "opt-out rule: one confirmation" "$r" "^200	<\\?xml[^<]*<Response><Message>You have been unsubscribed[^<]*</Message></Response>$"
check "opt-out rule: suppressed" "$(sql "select reason || ',' || (consent_event_id is not null) from suppression where e164='$O'")" "^opt_out,true$"
check "opt-out rule: consent event with keyword/channel/actor" \
  "$(sql "select kind||','||keyword||','||channel||','||actor||','||our_number from consent_events where e164='$O'")" "^opt_out,REMOVEME,sms,contact,\\$OUR$"
check "opt-out rule: event on the conversation" "$(sql "select e.rule_name || ':' || e.action from conversation_events e
            join conversations v on v.id = e.conversation_id where v.contact_e164 = '$O'")" "^removeme:opt-out$"
r=$(sms $O "removeme")
check "opt-out rule from an opted-out contact: no second confirmation" "$r" "^200	<\\?xml[^<]*<Response/>$"
check "opt-out rule from an opted-out contact: event says the reply was skipped" \
  "$(sql "select string_agg(coalesce(e.detail->>'reply_skipped', '-'), ',' order by e.id) from conversation_events e
            join conversations v on v.id = e.conversation_id where v.contact_e164 = '$O' and e.action = 'opt-out'")" "^-,already opted out$"
check "opt-out rule: exactly one confirmation sent" \
  "$(sql "select (select count(*) from messages m join conversations v on v.id = m.conversation_id
                   where v.contact_e164 = '$O' and m.direction = 'outbound') + (select count(*) from outbox where to_e164 = '$O')")" "^1$"
r=$(sms $O "COMEBACK")
check "opt-in rule: one confirmation" "$r" "^200	<\\?xml[^<]*<Response><Message>You have been resubscribed[^<]*</Message></Response>$"
check "opt-in rule: unsuppressed" "$(sql "select count(*) from suppression where e164='$O'")" "^0$"
check "opt-in rule: opt_in consent event" \
  "$(sql "select string_agg(kind||','||keyword||','||channel||','||actor, ';' order by id) from consent_events where e164='$O'")" \
  "^opt_out,REMOVEME,sms,contact;opt_out,removeme,sms,contact;opt_in,COMEBACK,sms,contact$"
check "opt-in rule: event on the conversation" "$(sql "select string_agg(e.rule_name || ':' || e.action, ',' order by e.id) from conversation_events e
            join conversations v on v.id = e.conversation_id where v.contact_e164 = '$O'")" "^removeme:opt-out,removeme:opt-out,comeback:opt-in$"
check "opt-out/opt-in rules: one confirmation each sent" \
  "$(sql "select string_agg(m.body, '|' order by m.id) from messages m join conversations v on v.id = m.conversation_id
            where v.contact_e164 = '$O' and m.direction = 'outbound'")/$(sql "select count(*) from outbox where to_e164 = '$O'")" \
  "^You have been unsubscribed[^|]*\\|You have been resubscribed[^|]*/0$"
evil=$(python3 -c "print('a'*5000 + '!')")
t0=$(date +%s%N); r=$(sms +14155550112 "$evil"); ms=$((($(date +%s%N) - t0) / 1000000))
check "catastrophic regex: answered" "$r" "^200"
if [ "$ms" -lt 2000 ]; then ok "catastrophic regex: bounded (${ms} ms)"; else bad "catastrophic regex took ${ms} ms"; fi
r=$(sms +14155550113 "AUTO"); check "trigger-automation: webhook answers at once" "$r" "^200"
# The endpoint of AIWAIT answers after 3 s (timeout_ms is the default 10 s): the webhook
# must not wait for it.
t0=$(date +%s%N); r=$(sms +14155550143 "AIWAIT" --with-type); ms=$((($(date +%s%N) - t0) / 1000000))
check "ai-assistant, slow endpoint: webhook answers 200 with an empty Response" "$r" "^200	$XML_TYPE	<\\?xml[^<]*<Response/>$"
if [ "$ms" -lt 1500 ]; then ok "ai-assistant, slow endpoint: webhook answered well before the endpoint (${ms} ms < 1500 of its 3000 ms)"
else bad "ai-assistant, slow endpoint: webhook took ${ms} ms (the endpoint takes 3000 ms)"; fi
r=$(sms +14155550113 "FLOW"); r=$(sms +14155550114 "AI"); r=$(sms +14155550115 "AUTOFAIL"); r=$(sms +14155550116 "AISLOW")
r=$(sms +14155550142 "AIFAIL")
for _ in $(seq 80); do
  [ "$(sql "select count(*) from conversation_events where detail->>'status' in ('delivered','failed','answered','timeout')")" -ge 7 ] && break; sleep 0.1
done
sleep 0.3
hook=$(grep '"/hook"' "$dir/recv.log" | head -1)
check "trigger-automation: signed JSON event delivered" "$hook" 'keyword_auto'
python3 - "$dir/recv.log" <<'PY' && ok "trigger-automation: HMAC-SHA256 header verifies" || bad "trigger-automation: HMAC header"
import hashlib, hmac, json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["path"] == "/hook":
        want = "sha256=" + hmac.new(b"s3cret", r["body"].encode(), hashlib.sha256).hexdigest()
        sys.exit(0 if r["headers"].get("X-Herald-Signature") == want else 1)
sys.exit(1)
PY
check "trigger-automation: outcome event" "$(sql "select detail->>'status' from conversation_events where action='trigger-automation' and detail ? 'attempts' and detail->>'http_status'='200'")" "^delivered$"
check "trigger-automation: retried with backoff then failed" "$(grep -c '"/fail"' "$dir/recv.log")/$(sql "select detail->>'status'||','||(detail->>'attempts') from conversation_events where action='trigger-automation' and detail->>'http_status'='500'")" "^4/failed,4$"
check "go-to-flow: handed to the endpoint" "$(grep -c '"/flow"' "$dir/recv.log")" "^1$"
FLOW_IDS=$(sql "select id || ' ' || conversation_id from messages where body = 'FLOW' and direction = 'inbound'")
FLOW_MSG=${FLOW_IDS% *}; FLOW_CONV=${FLOW_IDS#* }
check "go-to-flow: event with rule, flow name and status (done once the call is recorded)" \
  "$(sql "select e.rule_name || ',' || e.action || ',' || (e.detail->>'flow') || ',' || (e.detail->>'endpoint') || ',' || (e.detail->>'status')
            from conversation_events e where e.message_id = $FLOW_MSG and e.detail ? 'flow'")" \
  "^flow,go-to-flow,onboarding,http://127.0.0.1:$RPORT/flow,done$"
check "go-to-flow: payload names the flow, conversation, message, from, to and body" "$(python3 - "$dir/recv.log" <<PY
import json, sys
want = {"event": "go-to-flow", "flow": "onboarding", "conversation_id": $FLOW_CONV, "message_id": $FLOW_MSG,
        "from": "+14155550113", "to": "$OUR", "body": "FLOW"}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["path"] == "/flow":
        p = json.loads(r["body"])
        bad = {k: p.get(k) for k in want if p.get(k) != want[k]}
        print("bad " + json.dumps(bad) if bad else "ok " + r["headers"].get("X-Herald-Message-Id", "-"))
PY
)" "^ok $FLOW_MSG$"
check "go-to-flow: outcome event recorded after the call" \
  "$(sql "select string_agg(coalesce(e.rule_name, '-') || ',' || (e.detail->>'status') || ',' || coalesce(e.detail->>'http_status', '-'), ';' order by e.id)
            from conversation_events e where e.message_id = $FLOW_MSG and e.action = 'go-to-flow'")" "^flow,done,-;flow,delivered,200$"
check "ai-assistant: answer queued as a reply" "$(sql "select source||','||body from outbox where to_e164='+14155550114'")" "^auto_reply,AI says hi$"
check "ai-assistant: conversation history sent" "$(grep '"/ai"' "$dir/recv.log")" 'messages'
check "ai-assistant: a non-2xx answer is recorded as a failed outcome" \
  "$(sql "select string_agg(coalesce(e.detail->>'status', '-') || ',' || coalesce(e.detail->>'http_status', '-'), ';' order by e.id)
            from conversation_events e join conversations v on v.id = e.conversation_id
           where v.contact_e164 = '+14155550142' and e.action = 'ai-assistant'")" "^done,-;failed,502$"
check "ai-assistant: nothing queued after a non-2xx answer" "$(sql "select count(*) from outbox where to_e164 = '+14155550142'")" "^0$"
check "ai-assistant, slow endpoint: its answer queued after the delay" \
  "$(sql "select o.source || ',' || o.body || ',' || (o.created_at - m.created_at >= interval '2.5 seconds')
            from outbox o join messages m on m.body = 'AIWAIT' and m.direction = 'inbound' where o.to_e164 = '+14155550143'")" "^auto_reply,AI says hi,true$"
check "ai-assistant, slow endpoint: answered outcome event" \
  "$(sql "select string_agg(coalesce(e.detail->>'status', '-'), ',' order by e.id) from conversation_events e
            join conversations v on v.id = e.conversation_id where v.contact_e164 = '+14155550143' and e.action = 'ai-assistant'")" "^done,answered$"
check "ai-assistant: timeout recorded" "$(sql "select detail->>'status' from conversation_events e join conversations v on v.id=e.conversation_id where v.contact_e164='+14155550116' and detail->>'status'='timeout'")" "^timeout$"

# --- search document, batched and not (012_webhook_fast.sql) ---
# A conversation whose document has 993 words gets a message of 10 new words: they do
# not fit, the document is made again from the newest messages, and q finds them. A
# price question is written by the batch function; any other message here takes
# herald_inbound_apply() (the "rest" rule forwards it).
fill_doc() { # FROM: a conversation with a document of 993 words
  sms "$1" "first words" >/dev/null
  sql "insert into messages (org_id, conversation_id, direction, body)
       select org_id, id, 'outbound', (select string_agg('f' || g || 'y' || k, ' ') from generate_series(1, 10) k where g > 0)
       from conversations, generate_series(1, 99) g where contact_e164 = '$1' order by g" >/dev/null
}
found() { # FROM WORDS: the conversation's document has the words and at most 1,000 words
  sql "select search @@ herald_search_query(org_id, '$2') and length(search) <= 1000 from conversations where contact_e164 = '$1'"
}
fill_doc +14155550120
r=$(sms +14155550120 "price zephyrine quokka one two three four five six seven eight")
check "batched webhook into a full document: its words are found, the document stays bounded" "$r/$(found +14155550120 'zephyrine quokka')" "^200.*/t$"
fill_doc +14155550122
r=$(sms +14155550122 "xylophone marmalade one two three four five six seven eight")
check "single webhook into a full document: its words are found, the document stays bounded" "$r/$(found +14155550122 'xylophone marmalade')" "^200.*/t$"
r=$(sms +14155550121 "price kiwano")
check "batched webhook: its words are in the document at once" "$(found +14155550121 kiwano)" "^t$"
FULL_ORG=$(sql "select org_id from conversations where contact_e164='+14155550120'")

# --- deletes cascade without foreign keys (012_webhook_fast.sql) ---
out2=$("$HERALD" org create gone --account-sid AC0123456789abcdef0123456789abcdee --auth-token tok2 --number +15005550099 2>&1)
ORG2=$(awk '/^org_id/ {print $2}' <<<"$out2")
$POST "$URL" tok2 --sign-url "$SURL" MessageSid=SMgone1 AccountSid=AC0123456789abcdef0123456789abcdee From=+14155550130 To=+15005550099 Body=bye >/dev/null
$POST "$URL" tok2 --sign-url "$SURL" MessageSid=SMgone2 AccountSid=AC0123456789abcdef0123456789abcdee From=+14155550131 To=+15005550099 Body=bye >/dev/null
# --- a changed auth token takes effect at once (the server keeps opened tokens by their sealed text) ---
sql "update orgs set twilio_auth_token_enc = (select twilio_auth_token_enc from orgs where name = 'acme') where id = $ORG2" >/dev/null
r=$($POST "$URL" tok2 --sign-url "$SURL" MessageSid=SMrot1 AccountSid=AC0123456789abcdef0123456789abcdee From=+14155550132 To=+15005550099 Body=x)
check "token changed in the database: the old token's signature is refused" "$r" "^403"
r=$($POST "$URL" "$TOKEN" --sign-url "$SURL" MessageSid=SMrot2 AccountSid=AC0123456789abcdef0123456789abcdee From=+14155550132 To=+15005550099 Body=x)
check "token changed in the database: the new token's signature is accepted" "$r" "^200"
sql "delete from messages where message_sid = 'SMrot2'; delete from conversations where org_id = $ORG2 and contact_e164 = '+14155550132';
     delete from contacts where org_id = $ORG2 and e164 = '+14155550132'" >/dev/null
sql "insert into leads (org_id, contact_id, conversation_id) select org_id, contact_id, id from conversations where org_id = $ORG2;
     insert into conversation_events (org_id, conversation_id, message_id, action)
     select org_id, conversation_id, id, 'note' from messages where org_id = $ORG2" >/dev/null
sql "delete from contacts where org_id = $ORG2 and e164 = '+14155550131'" >/dev/null
check "deleting a contact deletes its leads and clears the conversation's contact" \
  "$(sql "select count(*) from leads where org_id = $ORG2")/$(sql "select count(*) from conversations where org_id = $ORG2 and contact_id is null")" "^1/1$"
sql "delete from messages where org_id = $ORG2 and message_sid = 'SMgone1'" >/dev/null
check "deleting a message deletes its events" "$(sql "select count(*) from conversation_events where org_id = $ORG2")" "^1$"
sql "delete from conversations where org_id = $ORG2 and contact_e164 = '+14155550130'" >/dev/null
check "deleting a conversation clears its lead" "$(sql "select count(*) from leads where org_id = $ORG2 and conversation_id is null")" "^1$"
sql "delete from orgs where id = $ORG2" >/dev/null
check "deleting an org deletes its conversations, messages, events and leads" \
  "$(sql "select (select count(*) from conversations where org_id = $ORG2) + (select count(*) from messages where org_id = $ORG2)
                 + (select count(*) from conversation_events where org_id = $ORG2) + (select count(*) from leads where org_id = $ORG2)")" "^0$"
check "other orgs keep theirs" "$(sql "select count(*) > 0 from messages where org_id = $FULL_ORG")" "^t$"

# --- replies link to the campaign the contact last received (contacts.last_campaign_id, 011) ---
cid=$("$HERALD" campaign create --org $org --name link --body "Hi from us" --from $OUR 2>/dev/null)
printf 'phone\n+14155550130\n+14155550131\n' >"$dir/link.csv"
"$HERALD" campaign upload "$cid" "$dir/link.csv" --org $org >/dev/null 2>&1
while [ "$(sql "select herald_fill($cid, 1000)")" != 0 ]; do :; done
sms +14155550130 "what is the price of it" >/dev/null   # the batch function
sms +14155550131 "thanks" >/dev/null                     # herald_inbound_apply() (forwarded)
sms +14155550132 "price?" >/dev/null                     # never sent to
check "a reply links to the contact's last campaign, on both paths" \
  "$(sql "select string_agg(contact_e164 || '=' || coalesce(last_campaign_id::text, '-'), ',' order by contact_e164)
            from conversations where contact_e164 in ('+14155550130', '+14155550131', '+14155550132')")" \
  "^\+14155550130=$cid,\+14155550131=$cid,\+14155550132=-$"


# --- place keys and domains (014_webhook_lean.sql) ---
# place is written by the batch function and, for every other writer, by a trigger.
check "every conversation's place keys are those of its row" \
  "$(sql "select count(*) || '/' || count(*) filter (where place is distinct from
            herald_place(org_id, our_number, herald_search_hour(last_message_at), unread)) from conversations")" "^[1-9][0-9]*/0$"
sms +14155550133 "what is the price" >/dev/null
sms +14155550133 "the price again" >/dev/null
check "a second batched message into a conversation keeps its place keys" \
  "$(sql "select unread || ':' || (place = herald_place(org_id, our_number, herald_search_hour(last_message_at), unread))
            from conversations where contact_e164 = '+14155550133'")" "^2:true$"
sql "update conversations set last_message_at = last_message_at - interval '3 days', unread = 0 where contact_e164 = '+14155550133'" >/dev/null
check "an UPDATE that moves the hour and reads it: the trigger makes its place again" \
  "$(sql "select (place = herald_place(org_id, our_number, herald_search_hour(last_message_at), 0))::text || ':' ||
                 (tsvector_to_array(place) @> array[org_id || '!unread'])::text
            from conversations where contact_e164 = '+14155550133'")" "^true:false$"
check "the domains refuse what the CHECKs refused" \
  "$(for q in "update conversations set status = 'gone'" "update conversations set unread = -1" \
              "update contacts set e164 = '+0123'" "update messages set direction = 'sideways'" \
              "update leads set status = 'maybe'" "update contacts set region = 'usa'"; do
       psql "$DATABASE_URL" -XAtqc "$q" 2>&1 | grep -c 'violates check constraint'; done | tr -d '\n')" "^111111$"

# The batch function takes a message's new tags and reply words from the document
# herald writes ("tags", "reply"): repeats dropped, order and quoting kept.
sms +14155550134 "tags" >/dev/null
check "batched add-tags: repeats dropped, order and quoting kept, on contact and conversation" \
  "$(sql "select c.tags::text || ' ' || v.tags::text from contacts c join conversations v on v.contact_id = c.id
            where c.e164 = '+14155550134'")" '^\{b,"a \\"q\\" \{x\}"\} \{b,"a \\"q\\" \{x\}"\}$'
check "batched replies: the words of every TwiML reply are in the document" \
  "$(found +14155550134 zebrafinch)/$(found +14155550134 okapi)/$(sql "select count(*) from messages m
            join conversations v on v.id = m.conversation_id where v.contact_e164 = '+14155550134' and m.status = 'twiml'")" "^t/t/2$"

# --- metrics ---
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
check "/metrics: webhook counters" "$m" 'herald_webhook_sms_total\{outcome="stored"\} [1-9]'
check "/metrics: latency histogram" "$m" 'herald_webhook_sms_seconds_count [1-9]'
check "/healthz" "$(curl -s "http://127.0.0.1:$PORT/healthz")" '"status":"ok"'
check "no full phone number or token in the log" "$(grep -c -e '+14155550110' -e "$TOKEN" "$dir/serve.err")" "^0$"

kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?; serve_pid=
check "SIGTERM: exit 0" "$rc" "^0$"
psql "$base" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null 2>&1
summary
