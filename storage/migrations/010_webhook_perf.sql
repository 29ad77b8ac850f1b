-- 010_webhook_perf: the batched webhook's conversation lookups stay index lookups, and
-- it writes each conversation and contact once per message.
--
-- The batch functions of 005 keep one generic plan per connection, made on first use.
-- When that is while conversations is still small (a new database, a new deployment),
-- every index of conversations that starts with org_id (conversations_list, _status,
-- _number, _unread) is estimated at one row for "org_id = $1 AND our_number = $2 AND
-- contact_e164 = $3", the same as the unique index, and the plan may keep any of them:
-- the lookup then walks all of the org's conversations and filters. Measured with
-- auto_explain under bench/bench_webhook_wrk.sh: 3-5 ms per message once the table held
-- 4,000 conversations (300 webhooks/s, the backends at 2 ms of CPU a message), and it
-- grows with the table.
--
-- herald_inbound_apply_batch() now takes the conversation ids from its upsert's
-- RETURNING (the only lookup by the conversation's key is the upsert's own, through its
-- unique index) and every later statement finds the conversation by its primary key.
-- herald_inbound_context() finds it through a unique index that no other index shares
-- a first column with (below). The apply also writes each conversation and contact once
-- (see the upsert), where 005 and 008's trigger wrote them up to three times.

-- The conversation's key as a unique index that starts with the contact's number, which
-- no other index of conversations has. ON CONFLICT (org_id, our_number, contact_e164)
-- infers it as it did the constraint (the columns are a set). An exception to 001's
-- rule that tenant unique keys start with org_id: the key is still per org (the same
-- columns), so one org can never block another's conversation; only the order differs.
CREATE UNIQUE INDEX conversations_contact ON conversations (contact_e164, our_number, org_id);
ALTER TABLE conversations DROP CONSTRAINT conversations_org_id_our_number_contact_e164_key;

-- As in 004, but the conversation is looked up with "org_id + 0", which no index can
-- use: every other index of conversations starts with org_id, and matched on it (or on
-- org_id and our_number, conversations_number) looks to the planner as cheap as the
-- unique key until the table holds tens of thousands of conversations (without
-- statistics it assumes 200 distinct values per column). The plans of the batch
-- functions are kept for the life of the connection: one made while the table was
-- small then walked every conversation of the org for each message. Now the only index
-- the lookup can start is conversations_contact. herald_inbound_context_batch() (005)
-- inlines this function when it plans, so it needs no change.
CREATE OR REPLACE FUNCTION herald_inbound_context(p_to text, p_from text, p_sid text, p_account text)
RETURNS TABLE (org_id bigint, auth_token_enc bytea, help_text text, opt_out_text text, opt_in_text text,
               dup_message_id bigint, dup_twiml text, form_state jsonb, contact_tags jsonb,
               contact_attrs jsonb, suppressed boolean, rules_version int)
LANGUAGE sql STABLE AS $$
    WITH o AS (
        SELECT n.org_id AS id FROM numbers n WHERE n.e164 = p_to
        UNION ALL
        -- A number not registered with any org: the org of the AccountSid, if only one has it.
        SELECT min(g.id) FROM orgs g
         WHERE g.twilio_account_sid = p_account
           AND NOT EXISTS (SELECT 1 FROM numbers n WHERE n.e164 = p_to)
        HAVING count(*) = 1
    )
    SELECT o.id, g.twilio_auth_token_enc, g.help_text, g.opt_out_text, g.opt_in_text,
           m.id, m.twiml, cv.form_state, to_jsonb(ct.tags), ct.attributes,
           EXISTS (SELECT 1 FROM suppression s WHERE s.org_id = o.id AND s.e164 = p_from),
           (SELECT r.version FROM rule_sets r WHERE r.org_id = o.id AND r.number = p_to AND r.active)
      FROM o
      JOIN orgs g ON g.id = o.id
      LEFT JOIN messages m ON m.org_id = o.id AND m.message_sid = p_sid
      LEFT JOIN conversations cv ON cv.contact_e164 = p_from AND cv.our_number = p_to AND cv.org_id + 0 = o.id
      LEFT JOIN contacts ct ON ct.org_id = o.id AND ct.e164 = p_from
     LIMIT 1
$$;

-- As in 005 (same arguments, result and restrictions); v_conv and v_contact hold, for
-- each element of p by its position, its conversation and contact.
CREATE OR REPLACE FUNCTION herald_inbound_apply_batch(p jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_seqscan = off AS $$
DECLARE
    v_n int := jsonb_array_length(p);
    v_got int;
    v_out jsonb;
    v_conv bigint[];
    v_contact bigint[];
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
        RETURNING cv.id, cv.org_id, cv.our_number, cv.contact_e164, cv.contact_id
    )
    SELECT array_agg(up.id ORDER BY x.i), array_agg(up.contact_id ORDER BY x.i)
      INTO v_conv, v_contact
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
        RETURNING id, org_id, message_sid
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
                                        'events', '[]'::jsonb) ORDER BY xi.i)
      INTO v_got, v_out
      FROM xi;
    IF v_got <> v_n THEN
        RAISE EXCEPTION 'duplicate MessageSid in batch' USING ERRCODE = 'HR001';
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
