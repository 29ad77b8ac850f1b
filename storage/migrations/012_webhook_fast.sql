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

-- As in 010, but for the trigger on messages (above): v_full holds the conversations
-- whose document the upsert left as it was (it would pass 1,000 words), and the words
-- of their new messages are added, or the document made again, as the trigger does.
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
    -- The contact, with the tags of its add-tag actions it does not have yet, in action
    -- order (one row version instead of an upsert and an UPDATE).
    INSERT INTO contacts AS c (org_id, e164, tags)
    SELECT (e.d->>'org_id')::bigint, e.d->>'from',
           COALESCE((SELECT array_agg(g.tag ORDER BY g.k)
                       FROM (SELECT a.a->>'tag' AS tag, min(a.k) AS k
                               FROM jsonb_array_elements(e.d->'actions') WITH ORDINALITY a(a, k)
                              WHERE a.a->>'op' = 'add_tag' GROUP BY 1) g), '{}')
      FROM jsonb_array_elements(p) e(d) ORDER BY 1, 2
    ON CONFLICT (org_id, e164) DO UPDATE
        SET updated_at = now(),
            tags = c.tags || ARRAY(SELECT u.tag FROM unnest(EXCLUDED.tags) WITH ORDINALITY u(tag, n)
                                    WHERE NOT (u.tag = ANY (c.tags)) ORDER BY u.n);

    -- The conversation gets, in this one row version, what 008's AFTER trigger on messages
    -- and an add-tag UPDATE (005) would each have written as another (an UPDATE of
    -- conversations is never HOT: one entry in each of its indexes and the GIN pending
    -- list): the words of the message and of its TwiML replies for its search document,
    -- and its new tags (008's BEFORE trigger adds their keys). The trigger on messages
    -- then finds nothing to add. A document that would pass 1,000 words is left as it
    -- was, for that trigger to make again from the messages.
    WITH x AS (
        SELECT e.i, (e.d->>'org_id')::bigint AS org, e.d->>'to' AS t, e.d->>'from' AS f, e.d->>'body' AS body,
               herald_search_words((e.d->>'org_id')::bigint,
                                   e.d->>'body' || COALESCE(' ' || (SELECT string_agg(a.a->>'body', ' ')
                                                                       FROM jsonb_array_elements(e.d->'actions') a(a)
                                                                      WHERE a.a->>'op' = 'twiml'), '')) AS words,
               COALESCE((SELECT array_agg(g.tag ORDER BY g.k)
                           FROM (SELECT a.a->>'tag' AS tag, min(a.k) AS k
                                   FROM jsonb_array_elements(e.d->'actions') WITH ORDINALITY a(a, k)
                                  WHERE a.a->>'op' = 'add_tag' GROUP BY 1) g), '{}') AS tags
          FROM jsonb_array_elements(p) WITH ORDINALITY e(d, i)
    ), up AS (
        INSERT INTO conversations AS cv (org_id, our_number, contact_e164, contact_id, unread, last_message_at,
                                         last_message_preview, last_campaign_id, tags, search)
        SELECT x.org, x.t, x.f, ct.id, 1, now(), left(x.body, 140),
               (SELECT o.campaign_id FROM outbox o
                 WHERE o.org_id = x.org AND o.to_e164 = x.f AND o.campaign_id IS NOT NULL
                 ORDER BY o.id DESC LIMIT 1),
               x.tags, x.words
          FROM x
          JOIN contacts ct ON ct.org_id = x.org AND ct.e164 = x.f
         ORDER BY x.org, x.t, x.f
        ON CONFLICT (org_id, our_number, contact_e164) DO UPDATE
            SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,
                contact_id = EXCLUDED.contact_id,
                last_campaign_id = COALESCE(EXCLUDED.last_campaign_id, cv.last_campaign_id),
                tags = cv.tags || ARRAY(SELECT u.tag FROM unnest(EXCLUDED.tags) WITH ORDINALITY u(tag, n)
                                         WHERE NOT (u.tag = ANY (cv.tags)) ORDER BY u.n),
                search = CASE WHEN length(cv.search || EXCLUDED.search) <= 1000 THEN cv.search || EXCLUDED.search
                              ELSE cv.search END
        RETURNING cv.id, cv.org_id, cv.our_number, cv.contact_e164, cv.contact_id, cv.search
    )
    SELECT array_agg(up.id ORDER BY x.i), array_agg(up.contact_id ORDER BY x.i),
           array_agg(up.id) FILTER (WHERE length(up.search || x.words) > length(up.search))
      INTO v_conv, v_contact, v_full
      FROM x JOIN up ON up.contact_e164 = x.f AND up.org_id = x.org AND up.our_number = x.t;
    IF cardinality(v_conv) IS DISTINCT FROM v_n THEN
        RAISE EXCEPTION 'conversation upsert returned % rows for % messages', cardinality(v_conv), v_n;
    END IF;

    -- The inbound message, then its TwiML replies, message by message, and the events of
    -- the actions: one statement, so the message ids come from RETURNING, not a lookup.
    -- xi pairs each document with its inbound message once, on text columns (x.sid), for
    -- the events and the result: the join is a nested loop over the batch, and taking
    -- 'sid' out of the document for each pair cost more than the inserts.
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

    INSERT INTO leads (org_id, contact_id, conversation_id, source)
    SELECT DISTINCT ON (v_conv[e.i]) (e.d->>'org_id')::bigint, v_contact[e.i], v_conv[e.i], a.a->>'source'
      FROM jsonb_array_elements(p) WITH ORDINALITY e(d, i),
           jsonb_array_elements(COALESCE(e.d->'actions', '[]')) WITH ORDINALITY a(a, k)
     WHERE a.a->>'op' = 'create_lead'
     ORDER BY v_conv[e.i], a.k
    ON CONFLICT (org_id, contact_id) WHERE status = 'open' DO NOTHING;

    RETURN v_out;
END
$$;
