-- 004_inbox: what the inbound webhook and the CRM inbox need beyond 001.
--
-- The webhook does its work in two round trips: herald_inbound_context() reads what
-- the routing decision needs (the org by receiving number, a duplicate MessageSid,
-- the form in progress, the contact's tags and attributes, the live rule-set
-- version), and herald_inbound_apply() writes the message and every action of the
-- decision in one statement, so one transaction. A duplicate MessageSid that slips
-- between the two (concurrent retries) raises SQLSTATE HR001 and rolls back.

-- The TwiML answered for an inbound message, so a retried webhook answers the same.
ALTER TABLE messages ADD COLUMN twiml text;

-- Keyset pagination needs a total order: every conversation has an activity time.
UPDATE conversations SET last_message_at = created_at WHERE last_message_at IS NULL;
ALTER TABLE conversations ALTER COLUMN last_message_at SET DEFAULT now();
ALTER TABLE conversations ALTER COLUMN last_message_at SET NOT NULL;

-- Inbox filters, each in the list order (newest activity first, id breaks ties).
CREATE INDEX conversations_status ON conversations (org_id, status, last_message_at DESC, id DESC);
CREATE INDEX conversations_number ON conversations (org_id, our_number, last_message_at DESC, id DESC);
CREATE INDEX conversations_unread ON conversations (org_id, last_message_at DESC, id DESC) WHERE unread > 0;
-- Replies link to the campaign the contact last received.
CREATE INDEX outbox_contact_campaign ON outbox (org_id, to_e164, id DESC) WHERE campaign_id IS NOT NULL;

CREATE FUNCTION herald_inbound_context(p_to text, p_from text, p_sid text, p_account text)
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
      LEFT JOIN conversations cv ON cv.org_id = o.id AND cv.our_number = p_to AND cv.contact_e164 = p_from
      LEFT JOIN contacts ct ON ct.org_id = o.id AND ct.e164 = p_from
     LIMIT 1
$$;

-- p: {org_id, to, from, sid, body, media, twiml, form: {op, form, step},
--     actions: [{op, action, rule, detail, ...}]}. Returns {message_id, conversation_id,
--     contact_id, events: [ids of the events of async actions, in order]}.
CREATE FUNCTION herald_inbound_apply(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_org bigint := (p->>'org_id')::bigint;
    v_to text := p->>'to';
    v_from text := p->>'from';
    v_contact bigint;
    v_conv bigint;
    v_msg bigint;
    v_out bigint;
    v_ce bigint;
    v_ev bigint;
    v_async jsonb := '[]';
    a jsonb;
BEGIN
    INSERT INTO contacts AS c (org_id, e164) VALUES (v_org, v_from)
        ON CONFLICT (org_id, e164) DO UPDATE SET updated_at = now()
        RETURNING c.id INTO v_contact;

    INSERT INTO conversations AS cv (org_id, our_number, contact_e164, contact_id, unread, last_message_at,
                                     last_message_preview, last_campaign_id)
    VALUES (v_org, v_to, v_from, v_contact, 1, now(), left(p->>'body', 140),
            (SELECT o.campaign_id FROM outbox o
              WHERE o.org_id = v_org AND o.to_e164 = v_from AND o.campaign_id IS NOT NULL
              ORDER BY o.id DESC LIMIT 1))
    ON CONFLICT (org_id, our_number, contact_e164) DO UPDATE
        SET unread = cv.unread + 1, last_message_at = now(), last_message_preview = EXCLUDED.last_message_preview,
            contact_id = EXCLUDED.contact_id,
            last_campaign_id = COALESCE(EXCLUDED.last_campaign_id, cv.last_campaign_id)
    RETURNING cv.id INTO v_conv;

    INSERT INTO messages (org_id, conversation_id, direction, body, message_sid, media, status, twiml)
    VALUES (v_org, v_conv, 'inbound', p->>'body', p->>'sid', COALESCE(p->'media', '[]'), 'received', p->>'twiml')
    ON CONFLICT (org_id, message_sid) WHERE message_sid IS NOT NULL DO NOTHING
    RETURNING id INTO v_msg;
    IF v_msg IS NULL THEN
        RAISE EXCEPTION 'duplicate MessageSid' USING ERRCODE = 'HR001';
    END IF;

    IF p->'form'->>'op' = 'set' THEN
        UPDATE conversations SET form_state = jsonb_build_object('form', p->'form'->>'form',
                                                                 'step', (p->'form'->>'step')::int)
         WHERE id = v_conv;
    ELSIF p->'form'->>'op' = 'clear' THEN
        UPDATE conversations SET form_state = NULL WHERE id = v_conv;
    END IF;

    FOR a IN SELECT * FROM jsonb_array_elements(COALESCE(p->'actions', '[]')) LOOP
        v_out := NULL;
        CASE a->>'op'
        WHEN 'opt_out' THEN
            INSERT INTO consent_events (org_id, e164, kind, keyword, channel, actor, our_number, message_sid)
            VALUES (v_org, v_from, 'opt_out', a->>'keyword', 'sms', 'contact', v_to, p->>'sid')
            RETURNING id INTO v_ce;
            INSERT INTO suppression (org_id, e164, reason, consent_event_id) VALUES (v_org, v_from, 'opt_out', v_ce)
            ON CONFLICT (org_id, e164) DO UPDATE SET reason = 'opt_out', consent_event_id = EXCLUDED.consent_event_id;
        WHEN 'opt_in' THEN
            INSERT INTO consent_events (org_id, e164, kind, keyword, channel, actor, our_number, message_sid)
            VALUES (v_org, v_from, 'opt_in', a->>'keyword', 'sms', 'contact', v_to, p->>'sid');
            DELETE FROM suppression WHERE org_id = v_org AND e164 = v_from;
        WHEN 'add_tag' THEN
            UPDATE contacts SET tags = array_append(tags, a->>'tag'), updated_at = now()
             WHERE id = v_contact AND NOT (a->>'tag' = ANY (tags));
            UPDATE conversations SET tags = array_append(tags, a->>'tag')
             WHERE id = v_conv AND NOT (a->>'tag' = ANY (tags));
        WHEN 'remove_tag' THEN
            UPDATE contacts SET tags = array_remove(tags, a->>'tag'), updated_at = now() WHERE id = v_contact;
            UPDATE conversations SET tags = array_remove(tags, a->>'tag') WHERE id = v_conv;
        WHEN 'create_lead' THEN
            INSERT INTO leads (org_id, contact_id, conversation_id, source)
            VALUES (v_org, v_contact, v_conv, a->>'source')
            ON CONFLICT (org_id, contact_id) WHERE status = 'open' DO NOTHING;
        WHEN 'form_answer' THEN
            UPDATE contacts SET attributes = attributes || jsonb_build_object(a->>'field', a->>'value'),
                   updated_at = now()
             WHERE id = v_contact;
        WHEN 'queue' THEN
            INSERT INTO outbox (org_id, contact_id, to_e164, from_number, body, segments, encoding, source)
            VALUES (v_org, CASE WHEN a->>'to' = v_from THEN v_contact END, a->>'to', v_to, a->>'body',
                    (a->>'segments')::int, a->>'encoding', a->>'source')
            RETURNING id INTO v_out;
            IF a->>'to' = v_from THEN
                INSERT INTO messages (org_id, conversation_id, direction, body, outbox_id, status)
                VALUES (v_org, v_conv, 'outbound', a->>'body', v_out, 'queued');
            END IF;
        WHEN 'twiml' THEN
            INSERT INTO messages (org_id, conversation_id, direction, body, status)
            VALUES (v_org, v_conv, 'outbound', a->>'body', 'twiml');
        ELSE
            NULL;
        END CASE;
        IF a ? 'action' THEN
            INSERT INTO conversation_events (org_id, conversation_id, message_id, rule_name, action, detail)
            VALUES (v_org, v_conv, v_msg, a->>'rule', a->>'action',
                    COALESCE(a->'detail', '{}') || CASE WHEN v_out IS NULL THEN '{}'::jsonb
                                                        ELSE jsonb_build_object('outbox_id', v_out) END)
            RETURNING id INTO v_ev;
            IF (a->>'async')::boolean THEN
                v_async := v_async || to_jsonb(v_ev);
            END IF;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('message_id', v_msg, 'conversation_id', v_conv, 'contact_id', v_contact,
                              'events', v_async);
END
$$;
