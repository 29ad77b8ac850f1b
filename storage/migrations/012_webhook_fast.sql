-- 012_webhook_fast: cheaper writes for each inbound webhook (issue 6: 5,000 durable
-- webhooks/s on the 2-core machine, which leaves some 400 us of CPU per message for the
-- load generator, herald and Postgres together).
--
-- Measured under bench/bench_webhook_wrk.sh with pg_stat_statements (track = all), for
-- each message of a batch (an inbound message, one TwiML reply for half of them, two or
-- three events, a lead): about 14 foreign-key checks (a query of orgs, conversations,
-- contacts or messages FOR KEY SHARE each, and an AFTER trigger event each: some 5 us of
-- query and as much of trigger queueing) and 008's AFTER trigger on messages run for the
-- inbound message and each reply (a PL/pgSQL call, a read of the conversation and the
-- message's words made again: some 30 us), which found nothing to add, the batch's
-- conversation upsert having written those words already.
--
-- 1. The foreign keys of conversations, messages, conversation_events and leads go, as
-- 006 did for outbox and 007 for contacts: every row of those tables is written by
-- Herald's own statements with ids read in the same transaction (the webhook's batch,
-- herald_inbound_apply(), an agent reply), so the per-row checks only repeated what is
-- known. What they did on delete is kept by statement-level triggers on the parents
-- (each works on the whole set of deleted parents at once): deleting an org deletes its
-- conversations, messages, events and leads; a conversation its messages and events and
-- clears leads.conversation_id; a message its events; a contact its leads and clears
-- conversations.contact_id; a campaign clears conversations.last_campaign_id. As with
-- 006, a row written concurrently with the delete of its parent is no longer refused
-- (nothing in Herald deletes any of these parents but the cascade from an org).
-- messages.outbox_id keeps its foreign key: it is NULL in every webhook message.
ALTER TABLE conversations
    DROP CONSTRAINT conversations_org_id_fkey,
    DROP CONSTRAINT conversations_contact_id_fkey,
    DROP CONSTRAINT conversations_last_campaign_id_fkey;
ALTER TABLE messages
    DROP CONSTRAINT messages_org_id_fkey,
    DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE conversation_events
    DROP CONSTRAINT conversation_events_org_id_fkey,
    DROP CONSTRAINT conversation_events_conversation_id_fkey,
    DROP CONSTRAINT conversation_events_message_id_fkey;
ALTER TABLE leads
    DROP CONSTRAINT leads_org_id_fkey,
    DROP CONSTRAINT leads_contact_id_fkey,
    DROP CONSTRAINT leads_conversation_id_fkey;

CREATE FUNCTION herald_inbox_parent_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'orgs' THEN
        -- Children first: each of these deletes fires the triggers below otherwise.
        DELETE FROM conversation_events e USING gone g WHERE e.org_id = g.id;
        DELETE FROM leads l USING gone g WHERE l.org_id = g.id;
        DELETE FROM messages m USING gone g WHERE m.org_id = g.id;
        DELETE FROM conversations c USING gone g WHERE c.org_id = g.id;
    ELSIF TG_TABLE_NAME = 'conversations' THEN
        DELETE FROM conversation_events e USING gone g WHERE e.conversation_id = g.id;
        DELETE FROM messages m USING gone g WHERE m.conversation_id = g.id;
        UPDATE leads l SET conversation_id = NULL FROM gone g WHERE l.conversation_id = g.id;
    ELSIF TG_TABLE_NAME = 'messages' THEN
        DELETE FROM conversation_events e USING gone g WHERE e.message_id = g.id;
    ELSIF TG_TABLE_NAME = 'contacts' THEN
        DELETE FROM leads l USING gone g WHERE l.contact_id = g.id;
        UPDATE conversations c SET contact_id = NULL FROM gone g WHERE c.contact_id = g.id;
    ELSE -- campaigns
        UPDATE conversations c SET last_campaign_id = NULL FROM gone g WHERE c.last_campaign_id = g.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER orgs_delete_inbox AFTER DELETE ON orgs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_inbox_parent_deleted();
CREATE TRIGGER conversations_delete_children AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_inbox_parent_deleted();
CREATE TRIGGER messages_delete_events AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_inbox_parent_deleted();
CREATE TRIGGER contacts_delete_inbox AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_inbox_parent_deleted();
CREATE TRIGGER campaigns_delete_inbox AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_inbox_parent_deleted();

-- 2. 008's trigger on messages is not queued for the messages the batch function
-- inserts (it sets herald.search_written for its own duration): its conversation upsert
-- has put the words of the message and of its TwiML replies in the document already.
-- Where it could not (a document that would pass 1,000 words), the function itself
-- does for those messages what the trigger does (below). Every other insert (an agent
-- reply, herald_inbound_apply()) still runs the trigger.
DROP TRIGGER messages_search ON messages;
CREATE TRIGGER messages_search AFTER INSERT ON messages FOR EACH ROW
    WHEN (current_setting('herald.search_written', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION herald_messages_search();

-- The same for 008's BEFORE trigger on conversations (a PL/pgSQL call per row, some
-- 35 us a message in the batch): the batch's upsert writes the status and tag keys
-- itself, as that trigger would (see herald_inbound_apply_batch()).
DROP TRIGGER conversations_search ON conversations;
CREATE TRIGGER conversations_search BEFORE INSERT OR UPDATE OF last_message_preview, tags, status, search
    ON conversations FOR EACH ROW
    WHEN (current_setting('herald.search_written', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION herald_conversation_search();

-- 3. 008's trigger on messages took a message whose whole body is the conversation's
-- preview for one whose words the trigger on conversations had added whenever the
-- document had fewer than 1,000 words; but that trigger adds them only if they fit,
-- so a message into a document of, say, 995 words was not found by q at all (seen
-- through herald_inbound_apply(), which a message with a forward-sms rule takes). The
-- shortcut now holds only when they certainly fitted: a body of n characters has at
-- most (n + 1) / 2 words. Otherwise the words are made and compared, as before.
CREATE OR REPLACE FUNCTION herald_messages_search() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    w tsvector;
BEGIN
    IF NEW.body = '' THEN
        RETURN NULL;
    END IF;
    SELECT search, last_message_preview AS preview, cardinality(tags) AS ntags INTO c
      FROM conversations WHERE id = NEW.conversation_id;
    IF c.preview = NEW.body AND char_length(NEW.body) < 140 AND length(c.search) > c.ntags + 1
       AND length(c.search) + (char_length(NEW.body) + 1) / 2 <= 1000 THEN
        RETURN NULL;
    END IF;
    w := herald_search_words(NEW.org_id, NEW.body);
    IF length(c.search || w) = length(c.search) THEN
        RETURN NULL;
    END IF;
    -- From the row as it is when updated, not from c: another transaction may have added to it.
    UPDATE conversations SET search = CASE WHEN length(search || w) <= 1000 THEN search || w
                                           ELSE herald_search_rebuild(id) END
     WHERE id = NEW.conversation_id;
    RETURN NULL;
END
$$;

-- 4. herald_search_words() and herald_search_status_key() give what 008's give, but
-- build the org's prefix with org::text instead of text || bigint: that operator is
-- STABLE (it calls the type's output function), so the IMMUTABLE functions of 008 could
-- never be inlined and ran as SQL functions, one executor per call (some 12 us per
-- message in the webhook's upsert and its triggers); the cast is immutable.
CREATE OR REPLACE FUNCTION herald_search_words(org bigint, body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT replace(' ' || strip(to_tsvector('simple', CASE WHEN char_length(body) > 48
                                                            THEN regexp_replace(body, '\S{49,}', ' ', 'g')
                                                            ELSE body END))::text,
                   ' ''', ' ''' || org::text || ':')::tsvector
$$;
CREATE OR REPLACE FUNCTION herald_search_status_key(org bigint, st text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT array_to_tsvector(ARRAY[org::text || '$' || st]) $$;

-- As in 010 (same arguments, result and restrictions), in two statements where 010 had
-- four: each statement of a PL/pgSQL function costs its executor start-up and end at
-- every call, whatever the number of rows, and a batch under 2,000 webhooks/s holds
-- some ten messages. The contacts are upserted in a CTE of the conversation upsert (the
-- sort of the conversations waits for every contact row, so a batch still locks all its
-- contacts, in key order, before any conversation), and the leads in a CTE of the
-- message inserts. The words of each message are made by a call of herald_search_words()
-- on plain columns, which the planner inlines (on an argument with a subquery, as in
-- 010, it ran as a SQL function once per message). Then, for the trigger on messages
-- (above): v_full holds the conversations whose document the upsert left as it was (it
-- would pass 1,000 words), and the words of their new messages are added, or the
-- document made again, as the trigger does.
CREATE OR REPLACE FUNCTION herald_inbound_apply_batch(p jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_seqscan = off SET herald.search_written = 'on' AS $$
DECLARE
    v_n int := jsonb_array_length(p);
    v_got int;
    v_out jsonb;
    v_conv bigint[];
    v_contact bigint[];
    v_full bigint[];
    v_msgs bigint[];
    v_msg record;
    w tsvector;
BEGIN
    -- Rows are written in key order so that concurrent batches lock them in the same order.
    -- The contact gets the tags of its add-tag actions it does not have yet, in action
    -- order (one row version instead of an upsert and an UPDATE). The conversation gets,
    -- in its one row version, what 008's AFTER trigger on messages and an add-tag UPDATE
    -- (005) would each have written as another (an UPDATE of conversations is never HOT:
    -- one entry in each of its indexes): the words of the message and of its TwiML
    -- replies for its search document, its new tags and their keys, and its status key,
    -- all of it as 008's BEFORE trigger on conversations would make it (that trigger is
    -- not run here). A document that would pass 1,000 words gets only the keys of the
    -- new tags here (see v_full for its words).
    WITH x AS (
        SELECT e.i, (e.d->>'org_id')::bigint AS org, e.d->>'to' AS t, e.d->>'from' AS f, e.d->>'body' AS body,
               e.d->>'body' || COALESCE(' ' || (SELECT string_agg(a.a->>'body', ' ')
                                                  FROM jsonb_array_elements(e.d->'actions') a(a)
                                                 WHERE a.a->>'op' = 'twiml'), '') AS text,
               COALESCE((SELECT array_agg(g.tag ORDER BY g.k)
                           FROM (SELECT a.a->>'tag' AS tag, min(a.k) AS k
                                   FROM jsonb_array_elements(e.d->'actions') WITH ORDINALITY a(a, k)
                                  WHERE a.a->>'op' = 'add_tag' GROUP BY 1) g), '{}') AS tags
          FROM jsonb_array_elements(p) WITH ORDINALITY e(d, i)
    ), xw AS (
        -- The words, and the keys of the new tags (those of 008's herald_search_tags()).
        SELECT x.i, x.org, x.t, x.f, x.body, x.tags, herald_search_words(x.org, x.text) AS words,
               CASE WHEN cardinality(x.tags) = 0 THEN ''::tsvector
                    ELSE array_to_tsvector(ARRAY(SELECT x.org::text || '#' || g.t FROM unnest(x.tags) g(t)
                                                  WHERE octet_length(g.t) <= 48)) END AS tag_keys
          FROM x
    ), ct AS (
        INSERT INTO contacts AS c (org_id, e164, tags)
        SELECT x.org, x.f, x.tags FROM x ORDER BY x.org, x.f
        ON CONFLICT (org_id, e164) DO UPDATE
            SET updated_at = now(),
                tags = c.tags || ARRAY(SELECT u.tag FROM unnest(EXCLUDED.tags) WITH ORDINALITY u(tag, n)
                                        WHERE NOT (u.tag = ANY (c.tags)) ORDER BY u.n)
        RETURNING c.id, c.org_id, c.e164
    ), up AS (
        INSERT INTO conversations AS cv (org_id, our_number, contact_e164, contact_id, unread, last_message_at,
                                         last_message_preview, last_campaign_id, tags, search)
        SELECT xw.org, xw.t, xw.f, ct.id, 1, now(), left(xw.body, 140),
               -- The campaign that last wrote to this contact (011's herald_last_campaign(),
               -- written out: a SQL function with a FROM is not inlined, and ran as a
               -- statement of its own per message), as the contact was before this statement.
               (SELECT cp.id FROM contacts lc JOIN campaigns cp ON cp.id = lc.last_campaign_id
                 WHERE lc.org_id = xw.org AND lc.e164 = xw.f),
               -- As 008's trigger on conversations makes a new one's document.
               xw.tags, xw.words || herald_search_status_key(xw.org, 'open') || xw.tag_keys
          FROM xw
          JOIN ct ON ct.org_id = xw.org AND ct.e164 = xw.f
         ORDER BY xw.org, xw.t, xw.f
        ON CONFLICT (org_id, our_number, contact_e164) DO UPDATE
            SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,
                contact_id = EXCLUDED.contact_id,
                last_campaign_id = COALESCE(EXCLUDED.last_campaign_id, cv.last_campaign_id),
                tags = cv.tags || ARRAY(SELECT u.tag FROM unnest(EXCLUDED.tags) WITH ORDINALITY u(tag, n)
                                         WHERE NOT (u.tag = ANY (cv.tags)) ORDER BY u.n),
                -- As 008's trigger does with an update that writes the document: the
                -- proposal's status key is that of a new conversation, 'open'.
                search = CASE WHEN length(cv.search || EXCLUDED.search) <= 1000
                              THEN ts_delete(cv.search || EXCLUDED.search,
                                             ARRAY[cv.org_id::text || '$open', cv.org_id::text || '$closed'])
                                   || herald_search_status_key(cv.org_id, cv.status)
                              WHEN cardinality(EXCLUDED.tags) > 0 THEN cv.search || herald_search_tags(cv.org_id, EXCLUDED.tags)
                              ELSE cv.search END
        RETURNING cv.id, cv.org_id, cv.our_number, cv.contact_e164, cv.contact_id, cv.search
    )
    SELECT array_agg(up.id ORDER BY xw.i), array_agg(up.contact_id ORDER BY xw.i),
           array_agg(up.id) FILTER (WHERE length(up.search || xw.words) > length(up.search))
      INTO v_conv, v_contact, v_full
      FROM xw JOIN up ON up.contact_e164 = xw.f AND up.org_id = xw.org AND up.our_number = xw.t;
    IF cardinality(v_conv) IS DISTINCT FROM v_n THEN
        RAISE EXCEPTION 'conversation upsert returned % rows for % messages', cardinality(v_conv), v_n;
    END IF;

    -- The inbound message, then its TwiML replies, message by message, the events of the
    -- actions and the leads: one statement, so the message ids come from RETURNING, not
    -- a lookup. xi pairs each document with its inbound message once, on text columns
    -- (x.sid), for the events and the result: the join is a nested loop over the batch,
    -- and taking 'sid' out of the document for each pair cost more than the inserts.
    WITH x AS (
        SELECT e.i, e.d, (e.d->>'org_id')::bigint AS org, v_conv[e.i] AS conv, e.d->>'sid' AS sid
          FROM jsonb_array_elements(p) WITH ORDINALITY e(d, i)
    ), m AS (
        SELECT x.i, 0::bigint AS k, x.org, x.conv, 'inbound' AS dir, x.d->>'body' AS body, x.sid,
               COALESCE(x.d->'media', '[]') AS media, 'received' AS status, x.d->>'twiml' AS twiml
          FROM x
        UNION ALL
        SELECT x.i, a.k, x.org, x.conv, 'outbound', a.a->>'body', NULL, '[]', 'twiml', NULL
          FROM x, jsonb_array_elements(COALESCE(x.d->'actions', '[]')) WITH ORDINALITY a(a, k)
         WHERE a.a->>'op' = 'twiml'
    ), ins AS (
        INSERT INTO messages (org_id, conversation_id, direction, body, message_sid, media, status, twiml)
        SELECT m.org, m.conv, m.dir, m.body, m.sid, m.media, m.status, m.twiml FROM m ORDER BY m.i, m.k
        ON CONFLICT (org_id, message_sid) WHERE message_sid IS NOT NULL DO NOTHING
        RETURNING id, org_id, message_sid, conversation_id
    ), xi AS (
        SELECT x.i, x.d, x.org, x.conv, ins.id
          FROM x JOIN ins ON ins.message_sid = x.sid AND ins.org_id = x.org
    ), ev AS (
        INSERT INTO conversation_events (org_id, conversation_id, message_id, rule_name, action, detail)
        SELECT xi.org, xi.conv, xi.id, a.a->>'rule', a.a->>'action', COALESCE(a.a->'detail', '{}')
          FROM xi, jsonb_array_elements(COALESCE(xi.d->'actions', '[]')) WITH ORDINALITY a(a, k)
         WHERE a.a ? 'action'
         ORDER BY xi.i, a.k
    ), ld AS (
        INSERT INTO leads (org_id, contact_id, conversation_id, source)
        SELECT DISTINCT ON (x.conv) x.org, v_contact[x.i], x.conv, a.a->>'source'
          FROM x, jsonb_array_elements(COALESCE(x.d->'actions', '[]')) WITH ORDINALITY a(a, k)
         WHERE a.a->>'op' = 'create_lead'
         ORDER BY x.conv, a.k
        ON CONFLICT (org_id, contact_id) WHERE status = 'open' DO NOTHING
    )
    SELECT count(*),
           jsonb_agg(jsonb_build_object('message_id', xi.id, 'conversation_id', xi.conv, 'contact_id', NULL,
                                        'events', '[]'::jsonb) ORDER BY xi.i),
           (SELECT array_agg(ins.id ORDER BY ins.id) FROM ins WHERE ins.conversation_id = ANY (v_full))
      INTO v_got, v_out, v_msgs
      FROM xi;
    IF v_got <> v_n THEN
        RAISE EXCEPTION 'duplicate MessageSid in batch' USING ERRCODE = 'HR001';
    END IF;

    -- What 008's trigger on messages does, message by message, for the full documents.
    IF v_msgs IS NOT NULL THEN
        FOR v_msg IN SELECT m.conversation_id, m.org_id, m.body FROM messages m
                      WHERE m.id = ANY (v_msgs) AND m.body <> '' ORDER BY m.id LOOP
            w := herald_search_words(v_msg.org_id, v_msg.body);
            UPDATE conversations SET search = CASE WHEN length(search || w) <= 1000 THEN search || w
                                                   ELSE herald_search_rebuild(id) END
             WHERE id = v_msg.conversation_id AND length(search || w) > length(search);
        END LOOP;
    END IF;

    RETURN v_out;
END
$$;
