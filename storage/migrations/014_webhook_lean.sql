-- 014_webhook_lean: less work per statement and per row in the webhook's batch
-- function (issue 6: 5,000 durable webhooks/s, p99 under 20 ms at 2,000/s).
--
-- Counted with bench/bench_webhook_sql.sh (CPU instructions of a single-user backend
-- under cachegrind, so the figures do not move with the machine's load), the batch
-- function takes 38% fewer instructions for one message, 28% fewer for 30 and 35%
-- fewer for 64 (1,632k, 18,402k and 38,418k against 2,653k, 25,457k and 59,239k).
-- Where they went, found with callgrind:
--   * 013's generated column "place" was read back from its stored text at the start
--     of every statement writing conversations (ExecInitStoredGenerated: stringToNode,
--     then expression_planner over some 70 nodes): 12% of the backend's time for a
--     batch of one message, and its nine keys were computed again for every row
--     (another 4% with 30 messages a batch);
--   * INSERT ... ON CONFLICT took the speculative path for every row (a probe of the
--     arbiter index before the insert, a speculative lock and a second WAL record to
--     confirm it): with contacts, conversations, messages and leads, some 7% with 30
--     messages a batch, a third of it messages';
--   * the CHECK constraints of those tables were read back from text by every
--     statement, and all of them run for every row, a regular expression among them.
--
-- 1. "place" becomes a plain column. herald_place() is its formula, the one of 013.
-- The batch function writes it in its conversation upsert; there the planner inlines
-- herald_place() once, when the function's plan is made for the session, not for each
-- statement. Every other writer (herald_inbound_apply(), an agent reply, mark-read,
-- a migration's UPDATE) is covered by two BEFORE triggers, which recompute it (a
-- PL/pgSQL call, some 18 us a row) only when a row is inserted without it, or updated
-- so that its keys change (number, hour of last activity, unread or not) without a new
-- place. So the keys can never go stale, and the webhook's rows never run a trigger.
-- (The triggers come after 2, whose type changes they would otherwise block.)
ALTER TABLE conversations ALTER COLUMN place DROP EXPRESSION;

-- 2. The CHECKs of the tables the webhook writes become domains. A table's CHECK is
-- kept as text, read back (stringToNode, then planned) by every statement that writes
-- the table, and run for every row inserted or updated, whatever columns the update
-- sets: with the generated column gone, that was 15% of the instructions of a batch of
-- one message. A domain's checks are read once per session into the type cache, and
-- run only where a value is assigned to a column of that domain. The rules are those
-- of the CHECKs (contacts' E.164 test is 011's string test, which conversations'
-- regular expression now shares). conversations_search names status in UPDATE OF, so
-- it is made again around the change, as 012 defined it.
CREATE DOMAIN herald_e164 AS text
    CHECK (length(VALUE) BETWEEN 3 AND 16 AND VALUE LIKE '+%' AND substr(VALUE, 2, 1) <> '0'
           AND ltrim(substr(VALUE, 2), '0123456789') = '');
CREATE DOMAIN herald_region AS text CHECK (VALUE ~ '^[A-Z]{2}$');
CREATE DOMAIN herald_conversation_status AS text CHECK (VALUE IN ('open', 'closed'));
CREATE DOMAIN herald_unread AS int CHECK (VALUE >= 0);
CREATE DOMAIN herald_direction AS text CHECK (VALUE IN ('inbound', 'outbound'));
CREATE DOMAIN herald_lead_status AS text CHECK (VALUE IN ('open', 'won', 'lost', 'closed'));

ALTER TABLE contacts
    DROP CONSTRAINT contacts_e164_check,
    DROP CONSTRAINT contacts_region_check,
    ALTER COLUMN e164 TYPE herald_e164,
    ALTER COLUMN region TYPE herald_region;
DROP TRIGGER conversations_search ON conversations;
ALTER TABLE conversations
    DROP CONSTRAINT conversations_contact_e164_check,
    DROP CONSTRAINT conversations_status_check,
    DROP CONSTRAINT conversations_unread_check,
    ALTER COLUMN contact_e164 TYPE herald_e164,
    ALTER COLUMN status TYPE herald_conversation_status,
    ALTER COLUMN unread TYPE herald_unread;
CREATE TRIGGER conversations_search BEFORE INSERT OR UPDATE OF last_message_preview, tags, status, search
    ON conversations FOR EACH ROW
    WHEN (current_setting('herald.search_written', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION herald_conversation_search();
ALTER TABLE messages
    DROP CONSTRAINT messages_direction_check,
    ALTER COLUMN direction TYPE herald_direction;
ALTER TABLE leads
    DROP CONSTRAINT leads_status_check,
    ALTER COLUMN status TYPE herald_lead_status;

-- 1. (continued) The formula, and the triggers for the other writers.
CREATE FUNCTION herald_place(org bigint, number text, hour int, unread int) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(ARRAY[org::text || '%' || number,
                                   org::text || '@0.' || hour::text,
                                   org::text || '@1.' || (hour >> 2)::text,
                                   org::text || '@2.' || (hour >> 4)::text,
                                   org::text || '@3.' || (hour >> 6)::text,
                                   org::text || '@4.' || (hour >> 8)::text,
                                   org::text || '@5.' || (hour >> 10)::text,
                                   org::text || '@6.' || (hour >> 12)::text,
                                   org::text || '@7.' || (hour >> 14)::text]
                             || CASE WHEN unread > 0 THEN ARRAY[org::text || '!unread'] ELSE '{}'::text[] END)
$$;

CREATE FUNCTION herald_conversation_place() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.place := herald_place(NEW.org_id, NEW.our_number, herald_search_hour(NEW.last_message_at), NEW.unread);
    RETURN NEW;
END
$$;
CREATE TRIGGER conversations_place_insert BEFORE INSERT ON conversations FOR EACH ROW
    WHEN (NEW.place IS NULL)
    EXECUTE FUNCTION herald_conversation_place();
CREATE TRIGGER conversations_place_update BEFORE UPDATE ON conversations FOR EACH ROW
    WHEN ((NEW.org_id, NEW.our_number, floor(extract(epoch FROM NEW.last_message_at - timestamptz 'epoch') / 3600),
           NEW.unread > 0)
          IS DISTINCT FROM
          (OLD.org_id, OLD.our_number, floor(extract(epoch FROM OLD.last_message_at - timestamptz 'epoch') / 3600),
           OLD.unread > 0)
          AND NEW.place IS NOT DISTINCT FROM OLD.place)
    EXECUTE FUNCTION herald_conversation_place();

-- 3. herald_inbound_apply_batch() (012), edited in place: each piece of its text named
-- below must occur exactly once, and is replaced.
--   * The conversation upsert writes place: for a new conversation and an updated one
--     alike, the number is the batch's, the hour now()'s and unread above zero.
--   * Messages are inserted without ON CONFLICT. A MessageSid already stored (a retry
--     racing its first delivery) now fails the statement with a unique violation
--     instead of the function's own 'duplicate MessageSid in batch' error; either
--     way the whole batch rolls back and herald applies its documents one by one
--     (herald_inbound_apply(), which answers a repeat with the TwiML stored).
--   * The words of a message's TwiML replies and its new tags are read from the
--     document's "reply" and "tags", which herald works out of the actions (two
--     subqueries per message fewer, one with a sort: 5% of the instructions for 30
--     messages).
--   * The result is the number of messages written. The array of ids it was (one
--     jsonb object built per message) was never read: herald answers each request of
--     the batch with the TwiML it made itself.
--   (Leads keep their ON CONFLICT: a NOT EXISTS instead was planned, in the function's
--     generic plan, as an anti-join over every open lead of the org.)
DO $$
DECLARE
    src text := pg_get_functiondef('herald_inbound_apply_batch(jsonb)'::regprocedure);
    edits text[][] := ARRAY[
        [$e$                                         last_message_preview, last_campaign_id, tags, search)$e$,
         $e$                                         last_message_preview, last_campaign_id, tags, search, place)$e$],
        [$e$               xw.tags, xw.words || herald_search_status_key(xw.org, 'open') || xw.tag_keys
          FROM xw$e$,
         $e$               xw.tags, xw.words || herald_search_status_key(xw.org, 'open') || xw.tag_keys,
               herald_place(xw.org, xw.t, xw.hour, 1)
          FROM xw$e$],
        [$e$        SELECT x.i, x.org, x.t, x.f, x.body, x.tags, herald_search_words(x.org, x.text) AS words,$e$,
         $e$        SELECT x.i, x.org, x.t, x.f, x.body, x.tags, herald_search_words(x.org, x.text) AS words,
               herald_search_hour(now()) AS hour,$e$],
        [$e$            SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,$e$,
         $e$            SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,
                place = EXCLUDED.place,$e$],
        [$e$        SELECT m.org, m.conv, m.dir, m.body, m.sid, m.media, m.status, m.twiml FROM m ORDER BY m.i, m.k
        ON CONFLICT (org_id, message_sid) WHERE message_sid IS NOT NULL DO NOTHING
$e$,
         $e$        SELECT m.org, m.conv, m.dir, m.body, m.sid, m.media, m.status, m.twiml FROM m ORDER BY m.i, m.k
$e$],
        [$e$               e.d->>'body' || COALESCE(' ' || (SELECT string_agg(a.a->>'body', ' ')
                                                  FROM jsonb_array_elements(e.d->'actions') a(a)
                                                 WHERE a.a->>'op' = 'twiml'), '') AS text,
               COALESCE((SELECT array_agg(g.tag ORDER BY g.k)
                           FROM (SELECT a.a->>'tag' AS tag, min(a.k) AS k
                                   FROM jsonb_array_elements(e.d->'actions') WITH ORDINALITY a(a, k)
                                  WHERE a.a->>'op' = 'add_tag' GROUP BY 1) g), '{}') AS tags$e$,
         $e$               e.d->>'body' || COALESCE(' ' || (e.d->>'reply'), '') AS text,
               COALESCE((e.d->>'tags')::text[], '{}') AS tags$e$],
        [$e$           jsonb_agg(jsonb_build_object('message_id', xi.id, 'conversation_id', xi.conv, 'contact_id', NULL,
                                        'events', '[]'::jsonb) ORDER BY xi.i),$e$,
         $e$           to_jsonb(count(*)),$e$]];
BEGIN
    FOR k IN 1 .. array_length(edits, 1) LOOP
        IF array_length(string_to_array(src, edits[k][1]), 1) <> 2 THEN
            RAISE EXCEPTION 'herald_inbound_apply_batch(): edit % of 014 does not find its text exactly once', k;
        END IF;
        src := replace(src, edits[k][1], edits[k][2]);
    END LOOP;
    EXECUTE src;
END
$$;

-- And hash joins: the function's statements join CTEs of the batch to each other (the
-- documents, the upserted contacts, the conversations, the inserted messages) on
-- text keys, and with 012's enable_hashjoin = off each such join was a nested loop,
-- every document against every row: 24% of the instructions with 64 messages a
-- batch, 12% with 30. Every table is still read through its indexes (correlated
-- subqueries and arbiter indexes; enable_seqscan stays off); for 1 to 4 messages a
-- hash costs 2-4% more than the loop.
ALTER FUNCTION herald_inbound_apply_batch(jsonb) RESET enable_hashjoin;

