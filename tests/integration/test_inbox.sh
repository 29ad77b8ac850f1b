#!/usr/bin/env bash
# The CRM inbox over HTTP and the CLI, against the real `herald serve` and a fresh
# database: list filters (status, tag, number, q, unread), keyset pagination stable
# under inserts, messages oldest first with cursors, agent replies (queued, 409 for a
# suppressed contact, 400 over 1600 characters), read/close/reopen, 401 without a key,
# tenant isolation on every endpoint (another org's ids are 404), `herald inbox ...` (every
# list filter against the database and the API, --cursor pages, read/close/reopen)
# and `herald suppression add|remove|list|import` with their consent events.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-inbox.XXXXXX)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

fresh_db herald_inbox
unset HERALD_ORG

A=$("$HERALD" org create alpha --number +15005550001 --number +15005550002 2>/dev/null)
B=$("$HERALD" org create beta --number +15005550003 2>/dev/null)
ORG_A=$(awk '/^org_id/ {print $2}' <<<"$A"); KEY_A=$(awk '/^api_key/ {print $2}' <<<"$A")
ORG_B=$(awk '/^org_id/ {print $2}' <<<"$B"); KEY_B=$(awk '/^api_key/ {print $2}' <<<"$B")
check_flat "org create: key format" "$KEY_A" "^hk_[0-9A-Za-z]{32}$"
check_flat "only the key hash is stored" "$(sql "select count(*) from api_keys where prefix = left('$KEY_A', 10) and key_hash = sha256('$KEY_A'::bytea)")" "^1$"
out=$(env -u HERALD_MASTER_KEY "$HERALD" org create gamma --account-sid AC0123456789abcdef0123456789abcdef --auth-token t 2>&1); rc=$?
check_flat "a secret without HERALD_MASTER_KEY is refused" "$rc:$out" "^1:.*HERALD_MASTER_KEY"

# 30 conversations for org A (25 on number 1, 5 on number 2), 1 for org B, via SQL.
sql "
insert into conversations (org_id, our_number, contact_e164, status, unread, last_message_at, tags)
select $ORG_A, case when g <= 25 then '+15005550001' else '+15005550002' end, '+1415555' || lpad(g::text, 4, '0'),
       case when g % 3 = 0 then 'closed' else 'open' end, case when g % 2 = 0 then 1 else 0 end,
       now() - g * interval '1 minute', case when g % 5 = 0 then array['vip'] else '{}' end
from generate_series(1, 30) g;
insert into conversations (org_id, our_number, contact_e164, last_message_at) values ($ORG_B, '+15005550003', '+14155559999', now());
insert into messages (org_id, conversation_id, direction, body)
select org_id, id, 'inbound', case when contact_e164 like '%0007' then 'my order is lost' else 'hello number ' || id end from conversations;
insert into messages (org_id, conversation_id, direction, body)
select $ORG_A, c.id, 'inbound', 'msg ' || g from conversations c, generate_series(1, 7) g where c.contact_e164 = '+14155550001';
" >/dev/null
CONV_A=$(sql "select id from conversations where contact_e164='+14155550001'")
CONV_B=$(sql "select id from conversations where org_id=$ORG_B")

HERALD_LISTEN=127.0.0.1:0 "$HERALD" serve --port-file "$dir/port" >"$dir/out" 2>"$dir/err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$dir/port")
get() { curl -s -H "Authorization: Bearer $1" "$U$2"; }
post() { curl -s -w '\n%{http_code}' -X POST -H "Authorization: Bearer $1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$U$2"; }
count() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["data"]))'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

check_flat "no key: 401 JSON" "$(curl -s -w ' %{http_code}' "$U/crm/inbox/conversations")" '^\{"error":.*\} 401$'
check_flat "unknown key: 401" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer hk_nope' "$U/crm/inbox/conversations")" "^401$"
check_flat "list: default page" "$(get $KEY_A /crm/inbox/conversations | count)" "^30$"
check_flat "list: only own org" "$(get $KEY_B /crm/inbox/conversations | count)" "^1$"
check_flat "status=closed" "$(get $KEY_A '/crm/inbox/conversations?status=closed' | count)" "^10$"
check_flat "tag=vip" "$(get $KEY_A '/crm/inbox/conversations?tag=vip' | count)" "^6$"
check_flat "number" "$(get $KEY_A '/crm/inbox/conversations?number=%2B15005550002' | count)" "^5$"
check_flat "unread" "$(get $KEY_A '/crm/inbox/conversations?unread=1' | count)" "^15$"
check_flat "q full text" "$(get $KEY_A '/crm/inbox/conversations?q=lost' | field '["data"][0]["contact"]')" "^\+14155550007$"
check_flat "q of another org's text finds nothing" "$(get $KEY_B '/crm/inbox/conversations?q=lost' | count)" "^0$"
check_flat "combined filters" "$(get $KEY_A '/crm/inbox/conversations?status=open&tag=vip&number=%2B15005550001' | count)" "^4$"
check_flat "bad status: 400" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations?status=x")" "^400$"
check_flat "limit over 200: 400" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations?limit=201")" "^400$"
check_flat "forged cursor: 400" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations?cursor=AAAA")" "^400$"
check_flat "malformed query: 400" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations?q=%ZZ")" "^400$"

# Keyset pagination: pages of 7, with a new conversation inserted between pages.
seen=""; cur=""; pages=0
while :; do
  page=$(get $KEY_A "/crm/inbox/conversations?limit=7${cur:+&cursor=$cur}")
  seen="$seen $(python3 -c 'import json,sys; print(" ".join(str(c["id"]) for c in json.load(sys.stdin)["data"]))' <<<"$page")"
  cur=$(field '["next_cursor"] or ""' <<<"$page")
  pages=$((pages + 1))
  [ $pages -eq 1 ] && sql "insert into conversations (org_id, our_number, contact_e164, last_message_at) values ($ORG_A, '+15005550001', '+14155558888', now())" >/dev/null
  [ -z "$cur" ] && break
  [ $pages -gt 10 ] && break
done
n=$(wc -w <<<"$seen"); u=$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort -u | wc -l)
check_flat "pagination: 5 pages, every original conversation once, no duplicates under inserts" "$pages/$n/$u" "^5/30/30$"

# Keyset pagination over equal activity times: ids break the ties, for the index walk
# (number), the search-document lookups (tag, q) and a combination; pages of 2 and 3.
sql "
insert into conversations (org_id, our_number, contact_e164, last_message_at, tags)
select $ORG_A, '+15005550009', '+1415666' || lpad(g::text, 4, '0'), timestamptz '2020-02-02 12:00:00+00', array['tie']
from generate_series(1, 7) g;
insert into messages (org_id, conversation_id, direction, body)
select org_id, id, 'inbound', 'tiebreak ' || id from conversations where our_number = '+15005550009';
" >/dev/null
want=$(sql "select string_agg(id::text, ' ' order by id desc) from conversations where our_number = '+15005550009'")
for f in "number=%2B15005550009&limit=2" "tag=tie&limit=2" "q=tiebreak&limit=3" "tag=tie&q=tiebreak&number=%2B15005550009&limit=2"; do
  seen=""; cur=""; pages=0
  while :; do
    page=$(get $KEY_A "/crm/inbox/conversations?$f${cur:+&cursor=$cur}")
    seen="$seen $(python3 -c 'import json,sys; print(" ".join(str(c["id"]) for c in json.load(sys.stdin)["data"]))' <<<"$page")"
    cur=$(field '["next_cursor"] or ""' <<<"$page")
    pages=$((pages + 1))
    [ -z "$cur" ] || [ $pages -gt 10 ] && break
  done
  check_flat "pagination over equal times ($f): ids descending, each once" "$(echo $seen)" "^$want$"
done

# Full text: every word of q, in any message of the conversation; only the org's own;
# words of messages added later (by SQL, an agent reply, the inbound webhook function).
CONV_7=$(sql "select id from conversations where contact_e164='+14155550007'")
sql "insert into messages (org_id, conversation_id, direction, body) values ($ORG_A, $CONV_7, 'outbound', 'Your PARCEL ships tomorrow')" >/dev/null
check_flat "q: words from two messages of one conversation" "$(get $KEY_A '/crm/inbox/conversations?q=lost+parcel' | field '["data"][0]["id"]')" "^$CONV_7$"
check_flat "q: a word no message has: nothing" "$(get $KEY_A '/crm/inbox/conversations?q=lost+zebra' | count)" "^0$"
check_flat "q: case and punctuation do not matter" "$(get $KEY_A '/crm/inbox/conversations?q=%22Parcel!%22' | count)" "^1$"
check_flat "q: quotes and backslashes are only text" "$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations?q=o%27brien%5C%27%3A*")" '^\{"data":\[\],"next_cursor":null\} 200$'
check_flat "q: no words at all: nothing" "$(get $KEY_A '/crm/inbox/conversations?q=%21%21' | count)" "^0$"
CONV_9=$(sql "select id from conversations where contact_e164='+14155550009'")
long="$(printf 'ab %.0s' $(seq 45))zanzibarian tail"
r=$(post $KEY_A /crm/inbox/conversations/$CONV_9/messages "{\"body\":\"$long\"}")
check_flat "q: an agent reply is searchable, past the 140 characters of the preview" "$(get $KEY_A '/crm/inbox/conversations?q=zanzibarian+tail' | field '["data"][0]["id"]')" "^$CONV_9$"
check_flat "q: the word the preview cut in two is not a word" "$(get $KEY_A '/crm/inbox/conversations?q=zanz' | count)" "^0$"
sql "select herald_inbound_apply(jsonb_build_object('org_id', $ORG_A, 'to', '+15005550001', 'from', '+14155550011', 'sid', 'SMsearch1', 'body', 'Where is my kumquat delivery?'))" >/dev/null
check_flat "q: an inbound message (webhook function) is searchable" "$(get $KEY_A '/crm/inbox/conversations?q=kumquat' | field '["data"][0]["contact"]')" "^\+14155550011$"
sql "insert into conversations (org_id, our_number, contact_e164, tags) values ($ORG_B, '+15005550003', '+14155558001', array['tie', 'b-only']);
     insert into messages (org_id, conversation_id, direction, body) select $ORG_B, id, 'inbound', 'kumquat tiebreak' from conversations where contact_e164 = '+14155558001'" >/dev/null
check_flat "q and tag: another org's words and tags are not this org's" "$(get $KEY_A '/crm/inbox/conversations?q=kumquat' | count)/$(get $KEY_A '/crm/inbox/conversations?tag=b-only' | count)/$(get $KEY_B '/crm/inbox/conversations?tag=tie' | count)" "^1/0/1$"
CONV_12=$(sql "select id from conversations where contact_e164='+14155550012'")
sql "insert into messages (org_id, conversation_id, direction, body)
     select $ORG_A, $CONV_12, 'inbound', (select string_agg('w' || g || 'x' || k, ' ') from generate_series(1, 10) k where g > 0)
     from generate_series(1, 120) g order by g" >/dev/null
check_flat "q: a thread of 1,200 words keeps at most 1,000, those of its newest messages" \
  "$(sql "select length(search) <= 1000 from conversations where id = $CONV_12")/$(get $KEY_A '/crm/inbox/conversations?q=w120x3' | count)/$(get $KEY_A '/crm/inbox/conversations?q=w1x3' | count)" "^t/1/0$"
TAG_C=$(sql "select id from conversations where contact_e164='+14155550010'")
sql "update conversations set tags = array['vip', 'renamed'] where id = $TAG_C" >/dev/null
check_flat "tag: a tag added later is found" "$(get $KEY_A '/crm/inbox/conversations?tag=renamed' | count)/$(get $KEY_A '/crm/inbox/conversations?tag=vip' | count)" "^1/6$"
sql "update conversations set tags = array['vip'] where id = $TAG_C" >/dev/null
check_flat "tag: a removed tag is not" "$(get $KEY_A '/crm/inbox/conversations?tag=renamed' | count)/$(get $KEY_A '/crm/inbox/conversations?tag=vip' | count)" "^0/6$"
st7() { echo "$(get $KEY_A '/crm/inbox/conversations?status=open&q=lost' | count)/$(get $KEY_A '/crm/inbox/conversations?status=closed&q=lost' | count)"; }
s0=$(st7); post $KEY_A /crm/inbox/conversations/$CONV_7/close >/dev/null; s1=$(st7)
post $KEY_A /crm/inbox/conversations/$CONV_7/reopen >/dev/null; s2=$(st7)
check_flat "status with q: follows close and reopen" "$s0 $s1 $s2" "^1/0 0/1 1/0$"
longtag=$(python3 -c "print('t' * 60)")
sql "update conversations set tags = array['$longtag'] where id = $CONV_9" >/dev/null
check_flat "tag: a tag longer than 48 bytes is found too" "$(get $KEY_A "/crm/inbox/conversations?tag=$longtag" | field '["data"][0]["id"]')" "^$CONV_9$"
sql "update conversations set tags = '{}' where id = $CONV_9" >/dev/null

check_flat "messages oldest first" "$(get $KEY_A "/crm/inbox/conversations/$CONV_A/messages?limit=3" | field '["data"][0]["body"]')" "^hello number"
c2=$(get $KEY_A "/crm/inbox/conversations/$CONV_A/messages?limit=3" | field '["next_cursor"]')
check_flat "messages page 2" "$(get $KEY_A "/crm/inbox/conversations/$CONV_A/messages?limit=3&cursor=$c2" | field '["data"][0]["body"]')" "^msg 3$"

r=$(post $KEY_A /crm/inbox/conversations/$CONV_A/messages '{"body":"Hi from support"}')
check_flat "reply: 201 queued" "$r" '"status":"queued".*"segments":1.* 201$'
check_flat "reply: outbox row source reply" "$(sql "select source||','||to_e164||','||from_number from outbox where body='Hi from support'")" "^reply,\+14155550001,\+15005550001$"
check_flat "reply: outbound message linked to the outbox row" "$(sql "select count(*) from messages m join outbox o on o.id=m.outbox_id where m.direction='outbound' and m.body='Hi from support'")" "^1$"
long=$(python3 -c "print('x'*1601)")
check_flat "reply over 1600 characters: 400" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/messages "{\"body\":\"$long\"}" | tail -1)" "^400$"
check_flat "reply without body: 400" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/messages '{}' | tail -1)" "^400$"
"$HERALD" suppression add +14155550001 --org $ORG_A >/dev/null
check_flat "reply to a suppressed contact: 409 with reason" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/messages '{"body":"x"}')" '"reason":"suppressed".* 409$'
check_flat "read" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/read)" '"unread": ?0.* 200$'
check_flat "close" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/close)" '"status": ?"closed".* 200$'
check_flat "reopen" "$(post $KEY_A /crm/inbox/conversations/$CONV_A/reopen)" '"status": ?"open".* 200$'
check_flat "get one" "$(get $KEY_A /crm/inbox/conversations/$CONV_A)" '"contact": ?"\+14155550001"'

# Tenant isolation: org B's key on org A's conversation, on every endpoint: 404, nothing changes.
before=$(sql "select status||unread from conversations where id=$CONV_A")
check_flat "isolation: GET conversation" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_B" "$U/crm/inbox/conversations/$CONV_A")" "^404$"
check_flat "isolation: GET messages" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_B" "$U/crm/inbox/conversations/$CONV_A/messages")" "^404$"
for ep in read close reopen; do
  check_flat "isolation: POST $ep" "$(post $KEY_B /crm/inbox/conversations/$CONV_A/$ep | tail -1)" "^404$"
done
check_flat "isolation: POST reply" "$(post $KEY_B /crm/inbox/conversations/$CONV_A/messages '{"body":"sneaky"}' | tail -1)" "^404$"
check_flat "isolation: nothing changed" "$(sql "select status||unread from conversations where id=$CONV_A")/$(sql "select count(*) from outbox where body='sneaky'")" "^$before/0$"
check_flat "isolation: same answer as a missing id" "$(curl -s -H "Authorization: Bearer $KEY_B" "$U/crm/inbox/conversations/99999999")" "$(curl -s -H "Authorization: Bearer $KEY_B" "$U/crm/inbox/conversations/$CONV_A")"
check_flat "isolation: B sees its own" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_B" "$U/crm/inbox/conversations/$CONV_B")" "^200$"
check_flat "isolation: GET campaign of another org" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_B" "$U/broadcast/campaigns/1")" "^404$"
check_flat "non-numeric id: 404" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_A" "$U/crm/inbox/conversations/1%20OR%201=1")" "^404$"

# CLI
check_flat "cli: conversations --json equals the API" "$("$HERALD" inbox conversations --org $ORG_A --tag vip --json | count)" "^6$"
check_flat "cli: conversations table" "$("$HERALD" inbox conversations --org $ORG_A --limit 2)" "next_cursor "
check_flat "cli: table rows carry the last activity time" \
  "$("$HERALD" inbox conversations --org $ORG_A --limit 2 | head -1)" $'\t\\[20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\\]\t'
check_flat "cli: messages" "$("$HERALD" inbox messages $CONV_A --org $ORG_A | head -1)" "hello number"
check_flat "cli: another org's conversation" "$("$HERALD" inbox messages $CONV_A --org $ORG_B 2>&1; echo rc=$?)" "not found.*rc=1"
"$HERALD" suppression remove +14155550001 --org $ORG_A >/dev/null
check_flat "cli: reply" "$("$HERALD" inbox reply $CONV_A "cli hello" --org $ORG_A)" "^queued outbox_id [0-9]+"
check_flat "cli: close" "$("$HERALD" inbox close $CONV_A --org $ORG_A)" '"status": ?"closed"'
check_flat "cli: reopen answers the open row" "$("$HERALD" inbox reopen $CONV_A --org $ORG_A)" '^\{"id": ?'"$CONV_A"',.*"status": ?"open"'
check_flat "cli: reopen is in the database" "$(sql "select status from conversations where id=$CONV_A")" "^open$"
sql "update conversations set unread = 3 where id = $CONV_A" >/dev/null
check_flat "cli: read answers unread 0" "$("$HERALD" inbox read $CONV_A --org $ORG_A)" '^\{"id": ?'"$CONV_A"',.*"unread": ?0[,}]'
check_flat "cli: read is in the database" "$(sql "select unread from conversations where id=$CONV_A")" "^0$"
sql "update conversations set unread = 2, status = 'closed' where id = $CONV_A" >/dev/null
check_flat "cli: read of another org's conversation: not found, exit 1" "$("$HERALD" inbox read $CONV_A --org $ORG_B 2>&1; echo rc=$?)" "^herald: conversation $CONV_A not found rc=1$"
check_flat "cli: reopen of another org's conversation: not found, exit 1" "$("$HERALD" inbox reopen $CONV_A --org $ORG_B 2>&1; echo rc=$?)" "^herald: conversation $CONV_A not found rc=1$"
check_flat "cli: ... and they changed nothing" "$(sql "select status||unread from conversations where id=$CONV_A")" "^closed2$"
check_flat "cli: read of a missing id: exit 1" "$("$HERALD" inbox read 99999999 --org $ORG_A 2>&1; echo rc=$?)" "not found rc=1$"
check_flat "cli: reopen of a non-numeric id: usage, exit 2" "$("$HERALD" inbox reopen "1 OR 1=1" --org $ORG_A 2>&1; echo rc=$?)" "^usage: .*rc=2$"
"$HERALD" inbox reopen $CONV_A --org $ORG_A >/dev/null

# CLI list filters, each against the database and the API (table rows: id, preview,
# our number, contact, unread=N, status, [time], [tags]).
cli_rows() { "$HERALD" inbox conversations --org $ORG_A --limit 200 "$@" | grep -v '^next_cursor '; }
api_ids() { get $KEY_A "/crm/inbox/conversations?limit=200$1" | python3 -c 'import json,sys; print(" ".join(str(c["id"]) for c in json.load(sys.stdin)["data"]))'; }
rows=$(cli_rows --status closed)
check_flat "cli: --status closed: the closed conversations, all closed" \
  "$(wc -l <<<"$rows")/$(cut -f6 <<<"$rows" | sort -u)" "^$(sql "select count(*) from conversations where org_id=$ORG_A and status='closed'")/closed$"
check_flat "cli: --status closed: the API's rows in its order" "$(cut -f1 <<<"$rows" | tr '\n' ' ' | sed 's/ $//')" "^$(api_ids '&status=closed')$"
rows=$(cli_rows --status open)
check_flat "cli: --status open: the open conversations, all open" \
  "$(wc -l <<<"$rows")/$(cut -f6 <<<"$rows" | sort -u)" "^$(sql "select count(*) from conversations where org_id=$ORG_A and status='open'")/open$"
check_flat "cli: --status of another value: exit 2" "$("$HERALD" inbox conversations --org $ORG_A --status pending 2>&1; echo rc=$?)" "^herald: .*status.* rc=2$"
rows=$(cli_rows --q "lost parcel")
check_flat "cli: --q: every word, one conversation" "$(wc -l <<<"$rows")/$(cut -f1,4 <<<"$rows")" "^1/$CONV_7	\+14155550007$"
check_flat "cli: --q: another org's words are not this org's" "$("$HERALD" inbox conversations --org $ORG_B --q parcel | wc -l)" "^0$"
check_flat "cli: --q with --json equals the API" "$("$HERALD" inbox conversations --org $ORG_A --q kumquat --json)" "^$(get $KEY_A '/crm/inbox/conversations?q=kumquat' | sed 's/[][\.*^$+?(){}|]/\\&/g')$"
rows=$(cli_rows --unread)
check_flat "cli: --unread: the unread conversations, none with unread=0" \
  "$(wc -l <<<"$rows")/$(cut -f5 <<<"$rows" | grep -c '^unread=0$')" "^$(sql "select count(*) from conversations where org_id=$ORG_A and unread > 0")/0$"
check_flat "cli: --unread: the API's rows in its order" "$(cut -f1 <<<"$rows" | tr '\n' ' ' | sed 's/ $//')" "^$(api_ids '&unread=1')$"
rows=$(cli_rows --unread --status open --tag vip)
check_flat "cli: --unread --status open --tag vip combined" "$(grep -c . <<<"$rows")/$(cut -f1 <<<"$rows" | tr '\n' ' ' | sed 's/ $//')" "^[1-9][0-9]*/$(api_ids '&unread=1&status=open&tag=vip')$"
# --cursor: follow next_cursor lines page by page; every conversation once, in the API's order.
cli_walk() { # PAGE_SIZE [filters...] -> "pages:ids"
  local n=$1 cur="" ids="" pages=0 out
  shift
  while :; do
    out=$("$HERALD" inbox conversations --org $ORG_A --limit "$n" "$@" ${cur:+--cursor "$cur"})
    ids="$ids $(grep -v '^next_cursor ' <<<"$out" | cut -f1 | tr '\n' ' ')"
    cur=$(awk '/^next_cursor / {print $2}' <<<"$out")
    pages=$((pages + 1))
    [ -z "$cur" ] || [ $pages -gt 60 ] && break
  done
  echo "$pages:$(echo $ids)"
}
all=$(api_ids ""); n_all=$(wc -w <<<"$all")
check_flat "cli: --cursor: pages of 7 cover every conversation once, in order" "$(cli_walk 7)" "^$(( (n_all + 6) / 7 )):$all$"
closed=$(api_ids '&status=closed'); n_closed=$(wc -w <<<"$closed")
check_flat "cli: --cursor with --status closed: pages of 3" "$(cli_walk 3 --status closed)" "^$(( (n_closed + 2) / 3 )):$closed$"
check_flat "cli: --cursor: the last page prints no next_cursor" "$("$HERALD" inbox conversations --org $ORG_A --limit 200 | grep -c '^next_cursor')" "^0$"
check_flat "cli: a forged --cursor: exit 2" "$("$HERALD" inbox conversations --org $ORG_A --cursor AAAA 2>&1; echo rc=$?)" "^herald: --cursor: invalid cursor rc=2$"
check_flat "cli: bad usage exits 2" "$("$HERALD" inbox reply 2>&1; echo rc=$?)" "rc=2"

# Suppression CLI
printf 'phone,name\n+14155551000,a\n"(415) 555-1001",b\nnot a number,c\n' >"$dir/s.csv"
check_flat "suppression import" "$("$HERALD" suppression import "$dir/s.csv" --region US --org $ORG_A 2>/dev/null)" "^imported 2, invalid 1$"
check_flat "suppression list" "$("$HERALD" suppression list --org $ORG_A)" "\+14155551001	import"
check_flat "consent events: cli and import channels with actor" "$(sql "select string_agg(distinct channel||':'||kind, ',') from consent_events where org_id=$ORG_A")" "^cli:opt_in,cli:opt_out,import:opt_out$"
check_flat "consent actor recorded" "$(sql "select count(*) from consent_events where actor like 'cli:%'")" "^[1-9]"

# --- place keys and domains (014_webhook_lean.sql) ---
# place is written by the batch function and, for every other writer, by a trigger.
check_flat "every conversation's place keys are those of its row" \
  "$(sql "select count(*) || '/' || count(*) filter (where place is distinct from
            herald_place(org_id, our_number, herald_search_hour(last_message_at), unread)) from conversations")" "^[1-9][0-9]*/0$"

# --- a conversation's JSON is what json_build_object() gives for its row ---
# herald writes it from plain columns (storage/inbox.c); Postgres's own function over
# the same row, with the session TimeZone UTC, is the reference: the same keys in the
# same order and the same values (whitespace aside), for text that needs escaping,
# tags that need quoting, NULLs, a form_state, timestamps whose fraction ends in zeros
# or is zero, leap days. Rows of the list, of a filtered page, of GET, read and close,
# and of the CLI.
CAMP=$(sql "insert into campaigns (org_id, name, body, from_number) values ($ORG_A, 'json', 'x', '+15005550001') returning id")
psql "$DATABASE_URL" -Xq -v ON_ERROR_STOP=1 -v org="$ORG_A" -v camp="$CAMP" >/dev/null <<'SQL' || bad "exotic conversations inserted"
insert into conversations (org_id, our_number, contact_e164, status, unread, last_message_at, last_message_preview,
                           last_campaign_id, tags, form_state, created_at) values
 (:org, '+15005550007', '+14155557001', 'open', 2, '2026-09-24 23:04:01.17502+00',
  E'say "hi" \\ caf\u00e9 \U0001F600\n\t\x01\x1f\x7f <end> ''q''', :camp,
  array['q"uote', 'back\slash', 'com,ma', 'NULL', 'null', '', ' sp', E'caf\u00e9', E'tab\tx', '{brace}'],
  '{"step": 2, "answers": {"name": "Ann \"A\""}, "n": [1, 2.50, null, true], "u": "\u00e9"}', '2024-02-29 12:34:56+00'),
 (:org, '+15005550007', '+14155557002', 'closed', 0, '2000-02-29 00:00:00+00', NULL, NULL, '{}', NULL,
  '1999-12-31 23:59:59.99999+00'),
 (:org, '+15005550007', '+14155557003', 'open', 0, '2100-02-28 23:59:59.999999+00', '', NULL, '[0:1]={x,y}', '[]',
  '2026-01-01 00:00:00.1+00'),
 (:org, '+15005550008', '+14155557004', 'open', 0, '1970-01-01 00:00:00+00', NULL, NULL, '{{a,b},{c,"d,e"}}', '"s"', now());
SQL
ref() { # -> "id<TAB>json_build_object()" for every conversation of org A
  PGTZ=UTC psql "$DATABASE_URL" -XAtq -F $'\t' -c "select c.id, json_build_object('id', c.id, 'our_number', c.our_number,
    'contact', c.contact_e164, 'status', c.status, 'unread', c.unread, 'last_message_at', c.last_message_at,
    'last_message_preview', c.last_message_preview, 'last_campaign_id', c.last_campaign_id, 'tags', c.tags,
    'form_state', c.form_state, 'created_at', c.created_at)::text from conversations c where c.org_id = $ORG_A"
}
same_json() { # stdin: a page or one conversation -> "rows/same" or "rows/ids that differ"
  python3 -c '
import json, sys
ref = {}
for line in open(sys.argv[1], encoding="utf-8"):
    i, j = line.rstrip("\n").split("\t", 1)
    ref[int(i)] = json.loads(j)
d = json.loads(sys.stdin.read())
rows = d["data"] if "data" in d else [d]
canon = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # keeps key order, tells 1 from 1.0 and true
bad = [r["id"] for r in rows if canon(r) != canon(ref.get(r["id"]))]
print("%d/%s" % (len(rows), ",".join(map(str, bad)) or "same"))' "$dir/ref"
}
ref >"$dir/ref"
X1=$(sql "select id from conversations where contact_e164 = '+14155557001'")
X4=$(sql "select id from conversations where contact_e164 = '+14155557004'")
check_flat "json: the whole list, as json_build_object() gives it" "$(get $KEY_A '/crm/inbox/conversations?limit=200' | same_json)" "^[0-9]{2}/same$"
check_flat "json: a filtered page of exotic rows" "$(get $KEY_A '/crm/inbox/conversations?number=%2B15005550007' | same_json)" "^3/same$"
check_flat "json: GET one with text, tags and form_state to escape" "$(get $KEY_A /crm/inbox/conversations/$X1 | same_json)" "^1/same$"
check_flat "json: GET one active at the epoch, tags of two dimensions" "$(get $KEY_A /crm/inbox/conversations/$X4 | same_json)" "^1/same$"
check_flat "json: the CLI's page" "$("$HERALD" inbox conversations --org $ORG_A --number +15005550007 --json | same_json)" "^3/same$"
post $KEY_A /crm/inbox/conversations/$X1/read | head -1 >"$dir/read.json"
ref >"$dir/ref"
check_flat "json: read answers the updated row" \
  "$(same_json <"$dir/read.json")/$(python3 -c 'import json,sys; print(json.load(sys.stdin)["unread"])' <"$dir/read.json")" "^1/same/0$"
"$HERALD" inbox close $X1 --org $ORG_A >"$dir/close.json"
ref >"$dir/ref"
check_flat "json: the CLI's close" "$(same_json <"$dir/close.json")" "^1/same$"

kill -TERM "$serve_pid"; wait "$serve_pid"; serve_pid=
psql "$base" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null 2>&1
summary
