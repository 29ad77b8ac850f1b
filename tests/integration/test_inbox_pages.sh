#!/usr/bin/env bash
# Inbox list pages read span by span (migration 013) against the plain definition: on
# an inbox of 3,000 conversations spread over three years (bursts in one hour, equal
# activity times, filters from common to absent), every filter and page size is paged
# through with herald_inbox_page() and its cursors, and the concatenated pages must be
# exactly the filtered conversations ordered by (last_message_at, id) descending. Then
# the place keys follow a conversation's activity, unread count and rebuilt document.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:?fixture cluster state}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1

fresh_db herald_pages
trap 'psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1' EXIT
sql() { psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
"$HERALD" db migrate >/dev/null || { echo "migrate failed"; exit 1; }
ORG_A=$("$HERALD" org create alpha --number +15005550001 --number +15005550002 2>/dev/null | awk '/^org_id/ {print $2}')
ORG_B=$("$HERALD" org create beta --number +15005550003 2>/dev/null | awk '/^org_id/ {print $2}')
LONG=$(printf 't%.0s' $(seq 60))

# Org A: 3,000 conversations. Times: most spread over three years, a tenth in one busy
# hour an hour ago, some sharing one instant (ties broken by id). Tags: common (half),
# mid (5%), rare (16 of them), long (over 48 bytes). Words: "alpha" in 90% of the bodies,
# "mid" in 4%, "rare" in 0.3%, "pair" and "twin" together in 2%. Org B: the same words
# and tags.
sql "
select setseed(0.42);
insert into conversations (org_id, our_number, contact_e164, status, unread, last_message_at, tags)
select $ORG_A, case when g % 3 = 0 then '+15005550002' else '+15005550001' end, '+1415' || lpad(g::text, 7, '0'),
       case when g % 4 = 0 then 'closed' else 'open' end, case when g % 7 < 2 then g % 5 + 1 else 0 end,
       case when g % 10 = 0 then date_trunc('hour', now()) - interval '1 hour' + (g % 13) * interval '1 minute'
            when g % 50 = 1 then timestamptz '2026-01-01 12:00:00+00'
            else now() - random() * interval '3 years' end,
       array_remove(array[case when g % 2 = 0 then 'common' end, case when g % 19 = 3 then 'mid' end,
                          case when g % 199 = 7 then 'rare' end, case when g % 40 = 9 then '$LONG' end], null)
  from generate_series(1, 3000) g;
insert into conversations (org_id, our_number, contact_e164, last_message_at, tags)
select $ORG_B, '+15005550003', '+1416' || lpad(g::text, 7, '0'), now() - g * interval '1 hour', array['common', 'mid', 'rare']
  from generate_series(1, 200) g;
insert into messages (org_id, conversation_id, direction, body)
select org_id, id, 'inbound',
       concat_ws(' ', case when id % 10 <> 0 then 'alpha' end, case when id % 23 = 5 then 'mid' end,
                 case when id % 301 = 11 then 'rare' end, case when id % 53 = 17 then 'pair and twin' end, 'body', id)
  from conversations;
analyze conversations;
" >/dev/null || { echo "setup failed"; exit 1; }

# pages(): the rows of every page in turn; plain(): the definition. Both are
# session-local, so each comparison runs in one session.
compare() { # status tag number q unread -> "rows:equal" for page sizes 1, 7, 50, 200
  local args="$1" out=""
  for lim in 1 7 50 200; do
    out+=$(psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 <<SQL
set client_min_messages = warning;
create function pg_temp.pages(o bigint, st text, tg text, num text, q text, unr boolean, lim int) returns bigint[]
language plpgsql as \$\$
declare acc bigint[] := '{}'; ak bigint; ai bigint; n int; r record;
begin
  loop
    n := 0;
    for r in select * from herald_inbox_page(o, st, tg, num, q, unr, ak, ai, lim + 1) loop
      n := n + 1;
      exit when n > lim;
      acc := acc || r.id;
      ak := (extract(epoch from r.last_message_at) * 1000000)::bigint; ai := r.id;
    end loop;
    exit when n <= lim;
  end loop;
  return acc;
end \$\$;
create function pg_temp.plain(o bigint, st text, tg text, num text, q text, unr boolean) returns bigint[]
language sql as \$\$
  select coalesce(array_agg(id order by last_message_at desc, id desc), '{}') from conversations
   where org_id = o and (st is null or status = st) and (tg is null or tags @> array[tg])
     and (num is null or our_number = num) and (q is null or search @@ herald_search_query(o, q))
     and (not unr or unread > 0) \$\$;
select cardinality(p) || ':' || (p = pg_temp.plain($ORG_A, $args)) || ' '
  from (select pg_temp.pages($ORG_A, $args, $lim) p) s;
SQL
)
  done
  echo "$out"
}
t() { check_flat "pages = plain order: $1" "$(compare "$2")" "$3"; }
n=null
t "tag common"                 "$n, 'common', $n, $n, false"                 "^(1500:true *){4}$"
t "tag mid"                    "$n, 'mid', $n, $n, false"                    "^(158:true *){4}$"
t "tag rare"                   "$n, 'rare', $n, $n, false"                   "^(16:true *){4}$"
t "tag absent"                 "$n, 'nosuchtag', $n, $n, false"              "^(0:true *){4}$"
t "q common word"              "$n, $n, $n, 'alpha', false"                  "^([1-9][0-9]*:true *){4}$"
t "q mid word"                 "$n, $n, $n, 'mid', false"                    "^([1-9][0-9]*:true *){4}$"
t "q rare word"                "$n, $n, $n, 'rare', false"                   "^([1-9][0-9]*:true *){4}$"
t "q two words"                "$n, $n, $n, 'twin pair', false"              "^([1-9][0-9]*:true *){4}$"
t "q without a word"           "$n, $n, $n, '!!!', false"                    "^(0:true *){4}$"
t "tag and q"                  "$n, 'common', $n, 'mid', false"              "^([1-9][0-9]*:true *){4}$"
t "status, tag"                "'closed', 'mid', $n, $n, false"              "^([1-9][0-9]*:true *){4}$"
t "status, number, tag"        "'open', 'common', '+15005550002', $n, false" "^([1-9][0-9]*:true *){4}$"
t "unread, tag"                "$n, 'common', $n, $n, true"                  "^([1-9][0-9]*:true *){4}$"
t "unread, number, q"          "$n, $n, '+15005550001', 'alpha', true"       "^([1-9][0-9]*:true *){4}$"
t "long tag and q"             "$n, '$LONG', $n, 'alpha', false"             "^([1-9][0-9]*:true *){4}$"
# Combinations with a status, a number or unread (migration 015): a walk of that
# column's B-tree, which fills a common combination's page, then the spans from where it
# stopped; a column whose rows run out ends the list.
t "status, common tag"         "'open', 'common', $n, $n, false"             "^([1-9][0-9]*:true *){4}$"
t "status, rare tag"           "'open', 'rare', $n, $n, false"               "^([1-9][0-9]*:true *){4}$"
t "status, absent tag"         "'closed', 'nosuchtag', $n, $n, false"        "^(0:true *){4}$"
t "status, common q"           "'closed', $n, $n, 'alpha', false"            "^([1-9][0-9]*:true *){4}$"
t "status, rare q"             "'open', $n, $n, 'rare', false"               "^([1-9][0-9]*:true *){4}$"
t "number, mid tag"            "$n, 'mid', '+15005550002', $n, false"        "^([1-9][0-9]*:true *){4}$"
t "number, two words"          "$n, $n, '+15005550001', 'pair twin', false"  "^([1-9][0-9]*:true *){4}$"
t "status, number, rare tag"   "'open', 'rare', '+15005550001', $n, false"   "^([1-9][0-9]*:true *){4}$"
t "status, number, tag, q"     "'open', 'common', '+15005550001', 'mid', false" "^([1-9][0-9]*:true *){4}$"
t "unread, mid tag"            "$n, 'mid', $n, $n, true"                     "^([1-9][0-9]*:true *){4}$"
t "unread, status, rare q"     "'closed', $n, $n, 'rare', true"              "^([0-9]+:true *){4}$"
t "unread, number, absent q"   "$n, $n, '+15005550002', 'nosuchword', true"  "^(0:true *){4}$"
t "status, long tag and q"     "'open', '$LONG', $n, 'alpha', false"         "^([1-9][0-9]*:true *){4}$"
t "number, other org's number" "$n, 'common', '+15005550003', $n, false"     "^(0:true *){4}$"
check_flat "a walk that reads all of its column's rows ends the list" \
  "$(sql "select count(*) from herald_inbox_page($ORG_B, 'open', 'rare', '+15005550003', null, false, null, null, 500)")" "^200$"
check_flat "org B's words and tags are not org A's" \
  "$(sql "select count(*) from herald_inbox_page($ORG_A, null, 'rare', null, null, false, null, null, 500)")" "^16$"

# Walks without words (migration 016) read their B-tree's INCLUDE columns only, on pages
# vacuum marked all-visible, and the heap elsewhere: the same pages after a vacuum, and
# after a walked row changes its tags and status (its old entries' page is no longer
# all-visible).
sql "vacuum conversations" >/dev/null
t "vacuumed: status, common tag"       "'open', 'common', $n, $n, false"             "^([1-9][0-9]*:true *){4}$"
t "vacuumed: status, number, tag"      "'open', 'common', '+15005550001', $n, false" "^([1-9][0-9]*:true *){4}$"
t "vacuumed: unread, number, mid tag"  "$n, 'mid', '+15005550001', $n, true"         "^([1-9][0-9]*:true *){4}$"
t "vacuumed: number, rare tag"         "$n, 'rare', '+15005550002', $n, false"       "^([1-9][0-9]*:true *){4}$"
W=$(sql "select id from conversations where org_id = $ORG_A and status = 'open' and 'common' = any(tags) and unread > 0
           and our_number = '+15005550001' order by last_message_at desc, id desc limit 1")
in_page() { sql "select count(*) from herald_inbox_page($ORG_A, $1, null, null, 5000) where id = $W"; }
check_flat "walked: the newest open, unread, common conversation is on the page" \
  "$(in_page "'open', 'common', '+15005550001', null, true")/$(in_page "null, 'common', null, null, true")" "^1/1$"
sql "update conversations set tags = array_remove(tags, 'common') where id = $W" >/dev/null
check_flat "walked: a tag removed leaves the number's, unread's and status's pages" \
  "$(in_page "'open', 'common', '+15005550001', null, false")/$(in_page "null, 'common', null, null, true")/$(in_page "'open', 'common', null, null, false")" "^0/0/0$"
sql "update conversations set tags = tags || 'common'::text, status = 'closed' where id = $W" >/dev/null
check_flat "walked: closed, it leaves the open pages and joins the closed ones" \
  "$(in_page "'open', 'common', '+15005550001', null, false")/$(in_page "'open', 'common', null, null, true")/$(in_page "'closed', 'common', '+15005550001', null, false")/$(in_page "'closed', 'common', null, null, false")" "^0/0/1/1$"
t "changed: status, number, tag"       "'closed', 'common', '+15005550001', $n, false" "^([1-9][0-9]*:true *){4}$"
t "changed: unread, tag"               "$n, 'common', $n, $n, true"                  "^([1-9][0-9]*:true *){4}$"

# The place keys follow the row.
C=$(sql "select id from conversations where org_id = $ORG_A and 'rare' = any(tags) order by last_message_at limit 1")
first() { sql "select id from herald_inbox_page($ORG_A, null, 'rare', null, null, $1, null, null, 1)"; }
sql "update conversations set last_message_at = now() + interval '1 minute', unread = 0 where id = $C" >/dev/null
check_flat "new activity moves the oldest to the front" "$(first false)" "^$C$"
check_flat "read: not in unread" "$(sql "select count(*) from herald_inbox_page($ORG_A, null, 'rare', null, null, true, null, null, 500) where id = $C")" "^0$"
sql "update conversations set unread = 3 where id = $C" >/dev/null
check_flat "unread again: in unread" "$(first true)" "^$C$"
sql "update conversations set search = herald_search_rebuild(id) where id = $C" >/dev/null
check_flat "a document made again keeps its place keys" "$(first true)" "^$C$"
check_flat "one key per window level, one number key, one unread key" \
  "$(sql "select count(*) filter (where k like '%@_.%') || '/' || count(*) filter (where k like '%\%%') || '/' || count(*) filter (where k like '%!unread')
            from conversations, unnest(tsvector_to_array(place)) k where id = $C")" "^8/1/1$"
check_flat "the document keeps no place keys" \
  "$(sql "select count(*) from conversations, unnest(tsvector_to_array(search)) k where k ~ '^[0-9]+(@|%|!)'")" "^0$"

summary
