-- 005_inbox_perf: batched inbound webhooks and faster inbox listings.
--
-- Profiles of the webhook under load (perf on the backends, pg_stat_statements) showed
-- the time going to per-statement executor start-up (CHECK constraints, defaults and
-- index predicates are rebuilt for each INSERT a plpgsql function runs), not to the
-- rows themselves: about ten statements per message. The batch functions below do the
-- same work for many messages with one execution of each statement. Their plans are
-- generic on purpose (plan_cache_mode on the function): a custom plan would be built
-- again on every call, because the size of the arrays changes the estimates. A batch
-- holds at most a few dozen messages, so every join is an index lookup per element;
-- without hash and merge joins and sequential scans the generic plan cannot pick a scan
-- of a whole table, which it would, planning for 100 elements of an array it cannot
-- see, or with the statistics of a table that was nearly empty when the connection
-- first ran the function (the plan is kept for the life of the connection). Every
-- lookup therefore needs an index, or each plan would cost the same to the planner:
-- hence orgs_account_sid for the AccountSid fallback of herald_inbound_context().
CREATE INDEX orgs_account_sid ON orgs (twilio_account_sid);

-- The context of several webhooks at once: one row per element of the arrays whose
-- receiving number belongs to an org, numbered from 1 (idx) in array order; the other
-- columns are those of herald_inbound_context().
CREATE FUNCTION herald_inbound_context_batch(p_to text[], p_from text[], p_sid text[], p_account text[])
RETURNS TABLE (idx int, org_id bigint, auth_token_enc bytea, help_text text, opt_out_text text, opt_in_text text,
               dup_message_id bigint, dup_twiml text, form_state jsonb, contact_tags jsonb,
               contact_attrs jsonb, suppressed boolean, rules_version int)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY
    SELECT i.n::int, c.*
      FROM unnest(p_to, p_from, p_sid, p_account) WITH ORDINALITY AS i(t, f, s, a, n)
     CROSS JOIN LATERAL herald_inbound_context(i.t, i.f, i.s, i.a) c;
END
$$;

-- Writes several inbound messages, each as herald_inbound_apply() would, in one
-- transaction (the caller's). p is a JSON array of herald_inbound_apply() documents
-- with two restrictions the caller guarantees: no two share a From number, and their
-- actions use only the ops none, twiml, add_tag and create_lead, with no form change
-- (every other document goes through herald_inbound_apply()). Returns a JSON array, in
-- the order of p, of {message_id, conversation_id, contact_id: null, events: []}. When a
-- MessageSid is already stored it raises SQLSTATE HR001 and nothing is written, so the
-- caller can apply the documents one by one.
CREATE FUNCTION herald_inbound_apply_batch(p jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_seqscan = off AS $$
DECLARE
    v_n int := jsonb_array_length(p);
    v_got int;
    v_out jsonb;
BEGIN
    -- Rows are written in key order so that concurrent batches lock them in the same order.
    INSERT INTO contacts AS c (org_id, e164)
    SELECT (e.d->>'org_id')::bigint, e.d->>'from' FROM jsonb_array_elements(p) e(d) ORDER BY 1, 2
    ON CONFLICT (org_id, e164) DO UPDATE SET updated_at = now();

    INSERT INTO conversations AS cv (org_id, our_number, contact_e164, contact_id, unread, last_message_at,
                                     last_message_preview, last_campaign_id)
    SELECT x.org, x.t, x.f, ct.id, 1, now(), left(x.body, 140),
           (SELECT o.campaign_id FROM outbox o
             WHERE o.org_id = x.org AND o.to_e164 = x.f AND o.campaign_id IS NOT NULL
             ORDER BY o.id DESC LIMIT 1)
      FROM (SELECT (e.d->>'org_id')::bigint AS org, e.d->>'to' AS t, e.d->>'from' AS f, e.d->>'body' AS body
              FROM jsonb_array_elements(p) e(d)) x
      JOIN contacts ct ON ct.org_id = x.org AND ct.e164 = x.f
     ORDER BY x.org, x.t, x.f
    ON CONFLICT (org_id, our_number, contact_e164) DO UPDATE
        SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,
            contact_id = EXCLUDED.contact_id,
            last_campaign_id = COALESCE(EXCLUDED.last_campaign_id, cv.last_campaign_id);

    -- The inbound message, then its TwiML replies, message by message, and the events of
    -- the actions: one statement, so the message ids come from RETURNING, not a lookup.
    WITH x AS (
        SELECT e.i, e.d, cv.org_id AS org, cv.id AS conv
          FROM jsonb_array_elements(p) WITH ORDINALITY e(d, i)
          JOIN conversations cv ON cv.org_id = (e.d->>'org_id')::bigint AND cv.our_number = e.d->>'to'
                               AND cv.contact_e164 = e.d->>'from'
    ), m AS (
        SELECT x.i, 0::bigint AS k, x.org, x.conv, 'inbound' AS dir, x.d->>'body' AS body, x.d->>'sid' AS sid,
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
    ), ev AS (
        INSERT INTO conversation_events (org_id, conversation_id, message_id, rule_name, action, detail)
        SELECT x.org, x.conv, ins.id, a.a->>'rule', a.a->>'action', COALESCE(a.a->'detail', '{}')
          FROM x
          JOIN ins ON ins.org_id = x.org AND ins.message_sid = x.d->>'sid',
               jsonb_array_elements(COALESCE(x.d->'actions', '[]')) WITH ORDINALITY a(a, k)
         WHERE a.a ? 'action'
         ORDER BY x.i, a.k
    )
    SELECT count(ins.message_sid),
           jsonb_agg(jsonb_build_object('message_id', ins.id, 'conversation_id', x.conv, 'contact_id', NULL,
                                        'events', '[]'::jsonb) ORDER BY x.i)
      INTO v_got, v_out
      FROM x JOIN ins ON ins.org_id = x.org AND ins.message_sid = x.d->>'sid';
    IF v_got <> v_n THEN
        RAISE EXCEPTION 'duplicate MessageSid in batch' USING ERRCODE = 'HR001';
    END IF;

    -- add-tag: the tags a contact and its conversation do not have yet, in action order.
    IF jsonb_path_exists(p, '$[*].actions[*] ? (@.op == "add_tag")') THEN
    WITH t AS (
        SELECT (e.d->>'org_id')::bigint AS org, e.d->>'to' AS t, e.d->>'from' AS f, a.a->>'tag' AS tag,
               min(a.k) AS k
          FROM jsonb_array_elements(p) e(d), jsonb_array_elements(COALESCE(e.d->'actions', '[]')) WITH ORDINALITY a(a, k)
         WHERE a.a->>'op' = 'add_tag'
         GROUP BY 1, 2, 3, 4
    ), g AS (
        SELECT org, t, f, array_agg(tag ORDER BY k) AS tags FROM t GROUP BY 1, 2, 3
    ), uc AS (
        UPDATE contacts c
           SET tags = c.tags || ARRAY(SELECT u.tag FROM unnest(g.tags) WITH ORDINALITY u(tag, n)
                                       WHERE NOT (u.tag = ANY (c.tags)) ORDER BY u.n),
               updated_at = now()
          FROM g
         WHERE c.org_id = g.org AND c.e164 = g.f AND NOT (g.tags <@ c.tags)
    )
    UPDATE conversations cv
       SET tags = cv.tags || ARRAY(SELECT u.tag FROM unnest(g.tags) WITH ORDINALITY u(tag, n)
                                    WHERE NOT (u.tag = ANY (cv.tags)) ORDER BY u.n)
      FROM g
     WHERE cv.org_id = g.org AND cv.our_number = g.t AND cv.contact_e164 = g.f AND NOT (g.tags <@ cv.tags);
    END IF;

    INSERT INTO leads (org_id, contact_id, conversation_id, source)
    SELECT DISTINCT ON (cv.id) cv.org_id, cv.contact_id, cv.id, a.a->>'source'
      FROM jsonb_array_elements(p) e(d)
      JOIN conversations cv ON cv.org_id = (e.d->>'org_id')::bigint AND cv.our_number = e.d->>'to'
                           AND cv.contact_e164 = e.d->>'from',
           jsonb_array_elements(COALESCE(e.d->'actions', '[]')) WITH ORDINALITY a(a, k)
     WHERE a.a->>'op' = 'create_lead'
     ORDER BY cv.id, a.k
    ON CONFLICT (org_id, contact_id) WHERE status = 'open' DO NOTHING;

    RETURN v_out;
END
$$;
