-- 014_webhook_lean: less work per statement and per row in the webhook's batch
-- function (issue 6: 5,000 durable webhooks/s, p99 under 20 ms at 2,000/s).
--
-- Profiled with perf on a backend running herald_inbound_apply_batch() alone:
--   * 013's generated column "place" was read back from its stored text at the start
--     of every statement writing conversations (ExecInitStoredGenerated: stringToNode,
--     then expression_planner over some 70 nodes): 12% of the backend's time for a
--     batch of one message, and its nine keys were computed again for every row
--     (another 4% with 30 messages a batch);
--   * INSERT ... ON CONFLICT took the speculative path for every row (a probe of the
--     arbiter index before the insert, a speculative lock and a second WAL record to
--     confirm it): with contacts, conversations, messages and leads, some 7% with 30
--     messages a batch, a third of it messages';
--   * conversations' E.164 CHECK ran a regular expression for every row written.
--
-- 1. "place" becomes a plain column. herald_place() is its formula, the one of 013.
-- The batch function writes it in its conversation upsert; there the planner inlines
-- herald_place() once, when the function's plan is made for the session, not for each
-- statement. Every other writer (herald_inbound_apply(), an agent reply, mark-read,
-- a migration's UPDATE) is covered by two BEFORE triggers, which recompute it (a
-- PL/pgSQL call, some 18 us a row) only when a row is inserted without it, or updated
-- so that its keys change (number, hour of last activity, unread or not) without a new
-- place. So the keys can never go stale, and the webhook's rows never run a trigger.
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

ALTER TABLE conversations ALTER COLUMN place DROP EXPRESSION;

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

-- 2. The E.164 CHECK of conversations as plain string tests, as 011 did for contacts.
ALTER TABLE conversations DROP CONSTRAINT conversations_contact_e164_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_contact_e164_check
    CHECK (length(contact_e164) BETWEEN 3 AND 16 AND contact_e164 LIKE '+%' AND substr(contact_e164, 2, 1) <> '0'
           AND ltrim(substr(contact_e164, 2), '0123456789') = '');

-- 3. herald_inbound_apply_batch() (012), edited in place: each piece of its text named
-- below must occur exactly once, and is replaced.
--   * The conversation upsert writes place: for a new conversation and an updated one
--     alike, the number is the batch's, the hour now()'s and unread above zero.
--   * Messages are inserted without ON CONFLICT. A MessageSid already stored (a retry
--     racing its first delivery) now fails the statement with a unique violation
--     instead of the function's own 'duplicate MessageSid in batch' error; either
--     way the whole batch rolls back and herald applies its documents one by one
--     (herald_inbound_apply(), which answers a repeat with the TwiML stored).
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
$e$]];
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
