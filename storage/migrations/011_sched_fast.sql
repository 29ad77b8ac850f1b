-- 011_sched_fast: a cheaper test of when to fill a campaign's outbox, and two fewer
-- outbox indexes.
--
-- herald_fill_due() (007) decided whether a campaign's queue was short by counting its
-- due rows up to p_low (15,000) every discovery round. The count walks the outbox's
-- due index and the heap behind it, which a sending campaign fills with dead entries
-- (every row is updated twice on its way out): about 150 ms a round, a third of the
-- database's work per message in a 200,000-recipient campaign.
--
-- Now each fill leaves a mark: the id of one of the rows it queued, chosen so that
-- about p_low queued rows follow it (its chunk's first row when the chunk holds fewer).
-- Rows are leased in (next_attempt_at, id) order and a fill's rows come after the
-- earlier ones in both, so once the mark has left 'queued' (or is deferred, or gone)
-- the queue is short: one primary-key probe instead of the count. A fill that queued
-- nothing (all conflicts) leaves no mark, which reads as short, as the count did.
--
-- Fewer outbox indexes. A campaign message is written four times (queued by the fill,
-- leased, recorded, and its status callback) and, none of those updates being HOT,
-- each write adds an entry to every index of the outbox. Two of them are gone:
--
--  * outbox_campaign_state (campaign_id, state) served only the counts by state of one
--    campaign (campaign status, the API, the progress line). Those scan the campaign's
--    rows through outbox_recipient instead, whose leading column is campaign_id; they
--    read the same heap rows as before (the outbox is rarely all-visible while sending).
--  * outbox_contact_campaign (org_id, to_e164, id DESC) answered "which campaign did
--    this number last get, if any": the fill's first-message footer, the upload
--    estimate, and the webhook's conversations.last_campaign_id. Each contact now
--    carries it (contacts.last_campaign_id), written by the fill's contacts upsert in
--    the same statement that queues the rows, and by each cron run. The webhook reads
--    it through herald_last_campaign() below (herald_inbound_apply() here, the batch
--    function in 012). Differences: numbers whose contact
--    row was deleted by hand count as never sent to; a deleted campaign is not
--    replaced by the one before it (herald_last_campaign() then answers NULL).

ALTER TABLE campaign_fill ADD COLUMN mark_id bigint;

DROP INDEX outbox_campaign_state;

ALTER TABLE contacts ADD COLUMN last_campaign_id bigint;
UPDATE contacts ct SET last_campaign_id = l.campaign_id
  FROM (SELECT DISTINCT ON (org_id, to_e164) org_id, to_e164, campaign_id FROM outbox
         WHERE campaign_id IS NOT NULL ORDER BY org_id, to_e164, id DESC) l
 WHERE ct.org_id = l.org_id AND ct.e164 = l.to_e164;
DROP INDEX outbox_contact_campaign;

-- The campaign the org last queued a message of to the number (NULL: none, or deleted).
CREATE FUNCTION herald_last_campaign(p_org bigint, p_e164 text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT c.id FROM contacts ct JOIN campaigns c ON c.id = ct.last_campaign_id
     WHERE ct.org_id = p_org AND ct.e164 = p_e164
$$;

-- 004's herald_inbound_apply() (a webhook message applied on its own, when its batch
-- failed) looked the campaign up in the outbox, which without outbox_contact_campaign
-- would scan it. Only that subquery changes, so the function is made again from its
-- own definition with the subquery replaced (and the text checked to be there once).
DO $$
DECLARE
    old_q text := '(SELECT o.campaign_id FROM outbox o
              WHERE o.org_id = v_org AND o.to_e164 = v_from AND o.campaign_id IS NOT NULL
              ORDER BY o.id DESC LIMIT 1)';
    src text := pg_get_functiondef('herald_inbound_apply(jsonb)'::regprocedure);
BEGIN
    IF array_length(string_to_array(src, old_q), 1) <> 2 THEN
        RAISE EXCEPTION 'herald_inbound_apply(): the outbox lookup to replace is not there once';
    END IF;
    EXECUTE replace(src, old_q, 'herald_last_campaign(v_org, v_from)');
END
$$;

DROP FUNCTION herald_fill(bigint, int);
-- 007's herald_fill with one more argument, p_low (the mark is chosen by it; 0, the
-- default, marks the chunk's first row), and its two inserts now one statement:
-- every part of it reads the contacts as they were before it, so a recipient's first message is decided by
-- last_campaign_id before the upsert sets it, and the outbox rows take the ids of new
-- contacts from the upsert's RETURNING (existing ones from that first read) instead of
-- probing contacts again. Existing contacts are updated when the row brings something
-- new (as in 007) or when this campaign is not yet their last one. The plan must not
-- depend on statistics (a fresh upload has none, and its chunk is estimated at one
-- row): each contact is read by a lateral probe of its unique key (OFFSET 0 keeps the
-- planner from turning it back into a join, which it ran as a rescan of all the org's
-- contacts per row), and the new ids are looked up in one JSON object built once from
-- the RETURNING rows (a join of the two CTEs was a nested loop, quadratic in the chunk).
CREATE FUNCTION herald_fill(p_campaign bigint, p_max int, p_low int DEFAULT 0) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    f campaign_fill%ROWTYPE;
    c campaigns%ROWTYPE;
    v_end bigint;
    v_last bigint;
    v_n bigint := 0;
    v_mark bigint;
BEGIN
    SELECT * INTO f FROM campaign_fill WHERE campaign_id = p_campaign FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR f.filled >= f.total THEN
        RETURN 0;
    END IF;
    SELECT * INTO c FROM campaigns WHERE id = p_campaign;
    SELECT rows_total + 1 INTO v_end FROM campaign_uploads WHERE id = f.cur_upload;
    LOOP
        IF v_end IS NULL OR f.cur_rn >= v_end THEN
            SELECT id, rows_total + 1 INTO f.cur_upload, v_end FROM campaign_uploads
             WHERE campaign_id = p_campaign AND id > f.cur_upload AND accepted > 0 ORDER BY id LIMIT 1;
            IF NOT FOUND THEN
                -- The counts disagree with the rows (rows deleted by hand): nothing is left.
                UPDATE campaign_fill SET filled = total WHERE campaign_id = p_campaign;
                RETURN 0;
            END IF;
            f.cur_rn := 0;
            -- Summarize the block ranges of new uploads now (autosummarize does it only
            -- later), so that each chunk reads a few pages, not the whole upload.
            PERFORM brin_summarize_new_values('campaign_recipients_rows');
        END IF;
        v_last := f.cur_rn + p_max;
        SELECT count(*) INTO v_n FROM campaign_recipients
         WHERE upload_id = f.cur_upload AND rn > f.cur_rn AND rn <= v_last;
        EXIT WHEN v_n > 0;
        f.cur_rn := v_last;
    END LOOP;

    WITH r AS MATERIALIZED (
        SELECT r.*, ct.id AS ct_id, r.f_suffix IS NOT NULL AND ct.last_campaign_id IS NULL AS first
          FROM campaign_recipients r
          LEFT JOIN LATERAL (SELECT ct.id, ct.last_campaign_id FROM contacts ct
                              WHERE ct.org_id = c.org_id AND ct.e164 = r.to_e164 OFFSET 0) ct ON true
         WHERE r.upload_id = f.cur_upload AND r.rn > f.cur_rn AND r.rn <= v_last
    ), up AS (
        INSERT INTO contacts AS ct (org_id, e164, region, timezone, tags, attributes, last_campaign_id)
        SELECT c.org_id, r.to_e164, r.region, r.tz, COALESCE(r.tags::text[], '{}'), COALESCE(r.attrs::jsonb, '{}'),
               c.id
          FROM r
        ON CONFLICT (org_id, e164) DO UPDATE SET
            region = CASE WHEN NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region) AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
                   THEN COALESCE(EXCLUDED.region, ct.region) ELSE ct.region END,
            timezone = CASE WHEN NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region) AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
                   THEN COALESCE(EXCLUDED.timezone, ct.timezone) ELSE ct.timezone END,
            tags = CASE WHEN NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region) AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
                   THEN ARRAY(SELECT DISTINCT t FROM unnest(ct.tags || EXCLUDED.tags) t ORDER BY t)
                        ELSE ct.tags END,
            attributes = CASE WHEN NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region) AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
                   THEN ct.attributes || EXCLUDED.attributes ELSE ct.attributes END,
            updated_at = CASE WHEN NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region) AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
                   THEN now() ELSE ct.updated_at END,
            last_campaign_id = EXCLUDED.last_campaign_id
         WHERE ct.last_campaign_id IS DISTINCT FROM EXCLUDED.last_campaign_id
            OR NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes
                    AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region)
                    AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone))
        RETURNING ct.id, ct.e164
    ), ins AS (
        -- Ids are drawn in row order, so the k-th smallest returned id is the k-th row queued.
        INSERT INTO outbox (org_id, campaign_id, contact_id, to_e164, from_number, messaging_service_sid,
                            body, segments, encoding, timezone, upload_id, upload_row)
        SELECT c.org_id, c.id, COALESCE(r.ct_id, ((SELECT jsonb_object_agg(e164, id) FROM up)->>r.to_e164)::bigint),
               r.to_e164, c.from_number,
               c.messaging_service_sid,
               CASE WHEN r.first THEN r.body || r.f_suffix ELSE r.body END,
               CASE WHEN r.first THEN r.f_segs ELSE r.segs END,
               CASE WHEN r.first THEN r.f_enc ELSE r.enc END,
               r.tz, r.upload_id, r.rn
          FROM r
         ORDER BY r.rn
        ON CONFLICT (campaign_id, run_key, to_e164) WHERE campaign_id IS NOT NULL DO NOTHING
        RETURNING id)
    SELECT (array_agg(id ORDER BY id))[greatest(count(*) - greatest(p_low, 0), 0) + 1] INTO v_mark FROM ins;

    UPDATE campaign_fill SET filled = filled + v_n, cur_upload = f.cur_upload, cur_rn = v_last, mark_id = v_mark
     WHERE campaign_id = p_campaign;
    RETURN v_n;
END
$$;
-- The chunk is a range of record numbers of one upload: the BRIN index finds it (as in 007).
ALTER FUNCTION herald_fill(bigint, int, int) SET enable_seqscan = off;

-- As in 007, with the mark in place of the count: fills each running one-shot campaign
-- (or just p_campaign) that has recipients left and whose mark is no longer queued and
-- due within a few seconds (rows deferred by quiet hours do not hold back a fill).
CREATE OR REPLACE FUNCTION herald_fill_due(p_campaign bigint, p_low int, p_chunk int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n bigint := 0;
BEGIN
    FOR r IN SELECT f.campaign_id, f.mark_id FROM campaign_fill f JOIN campaigns c ON c.id = f.campaign_id
              WHERE f.filled < f.total AND c.status = 'running' AND c.cron IS NULL
                AND (p_campaign IS NULL OR c.id = p_campaign)
    LOOP
        IF r.mark_id IS NULL OR NOT EXISTS (
               SELECT 1 FROM outbox WHERE id = r.mark_id AND state = 'queued'
                  AND next_attempt_at <= now() + interval '5 seconds') THEN
            v_n := v_n + herald_fill(r.campaign_id, p_chunk, p_low);
        END IF;
    END LOOP;
    RETURN v_n;
END
$$;

-- 007's herald_upload_settle, with "has the org sent this number a campaign message"
-- read from contacts.last_campaign_id. Whether the org has sent any campaign message
-- at all is asked per campaign of the org, through outbox_recipient.
CREATE OR REPLACE FUNCTION herald_upload_settle(p_upload bigint, p_campaign bigint, p_org bigint, p_accepted bigint,
                                                OUT prev_rows bigint, OUT prev_segs bigint, OUT prev_fsegs bigint,
                                                OUT seen_rows bigint, OUT seen_extra bigint, OUT remaining bigint)
LANGUAGE plpgsql AS $$
BEGIN
    prev_rows := 0; prev_segs := 0; prev_fsegs := 0; seen_rows := 0; seen_extra := 0;
    IF EXISTS (SELECT 1 FROM campaign_uploads WHERE campaign_id = p_campaign AND id <> p_upload AND accepted > 0) THEN
        WITH d AS (
            DELETE FROM campaign_recipients n
             USING campaign_recipients o, campaign_uploads u
             WHERE n.upload_id = p_upload AND u.campaign_id = p_campaign AND u.id <> p_upload
               AND o.upload_id = u.id AND o.to_e164 = n.to_e164
            RETURNING n.rn, n.raw, n.segs, COALESCE(n.f_segs, n.segs) AS fsegs, o.upload_id AS o_up, o.rn AS o_rn),
        i AS (
            INSERT INTO campaign_rejects (upload_id, campaign_id, row_number, raw_value, reason, detail)
            SELECT p_upload, p_campaign, rn, raw, 'duplicate', 'duplicate of row ' || o_rn || ' of upload ' || o_up
              FROM d)
        SELECT count(*), COALESCE(sum(segs), 0), COALESCE(sum(fsegs), 0) INTO prev_rows, prev_segs, prev_fsegs FROM d;
    END IF;
    remaining := p_accepted - prev_rows;
    IF EXISTS (SELECT 1 FROM campaigns c WHERE c.org_id = p_org
                  AND EXISTS (SELECT 1 FROM outbox x WHERE x.campaign_id = c.id)) THEN
        SELECT count(*), COALESCE(sum(COALESCE(r.f_segs, r.segs) - r.segs), 0) INTO seen_rows, seen_extra
          FROM campaign_recipients r
          JOIN contacts ct ON ct.org_id = p_org AND ct.e164 = r.to_e164
         WHERE r.upload_id = p_upload AND ct.last_campaign_id IS NOT NULL;
    END IF;
    INSERT INTO campaign_fill AS f (campaign_id, total) VALUES (p_campaign, remaining)
    ON CONFLICT (campaign_id) DO UPDATE SET total = f.total + EXCLUDED.total;
END
$$;

-- 007's herald_cron_fire; a run's copies are the newest campaign rows of their numbers,
-- so their contacts' last campaign becomes this one.
CREATE OR REPLACE FUNCTION herald_cron_fire(p_id bigint, p_expected timestamptz, p_run_key text, p_next timestamptz,
                                            p_owner text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n bigint;
BEGIN
    UPDATE campaigns SET next_run_at = p_next, status = 'running', updated_at = now()
     WHERE id = p_id AND next_run_at = p_expected AND status IN ('scheduled', 'running');
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    -- Wait for a fill another process may be doing, then fill the rest here (a
    -- transaction does not skip its own row lock).
    PERFORM 1 FROM campaign_fill WHERE campaign_id = p_id FOR UPDATE;
    LOOP
        EXIT WHEN herald_fill(p_id, 50000) = 0;
    END LOOP;
    INSERT INTO campaign_runs (campaign_id, run_key, fired_by) VALUES (p_id, p_run_key, p_owner)
    ON CONFLICT DO NOTHING;
    INSERT INTO outbox (org_id, campaign_id, run_key, contact_id, to_e164, from_number, messaging_service_sid,
                        body, segments, encoding, timezone, source, upload_id, upload_row)
    SELECT org_id, campaign_id, p_run_key, contact_id, to_e164, from_number, messaging_service_sid,
           body, segments, encoding, timezone, source, upload_id, upload_row
      FROM outbox
     WHERE campaign_id = p_id AND run_key = '' AND state NOT IN ('suppressed', 'canceled')
    ON CONFLICT (campaign_id, run_key, to_e164) WHERE campaign_id IS NOT NULL DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE campaign_runs SET recipients = recipients + v_n WHERE campaign_id = p_id AND run_key = p_run_key;
    UPDATE contacts ct SET last_campaign_id = p_id
      FROM outbox o
     WHERE o.campaign_id = p_id AND o.run_key = p_run_key AND ct.id = o.contact_id
       AND ct.last_campaign_id IS DISTINCT FROM p_id;
    RETURN v_n;
END
$$;

-- The E.164 checks of 001 as plain string tests: Postgres evaluates every CHECK of a
-- row at each UPDATE, whatever columns it sets, and the regular expression cost about
-- 2 us a time, four times per campaign message (queued, leased, recorded, callback).
-- Same set of strings: '+', a digit 1-9, then 1 to 14 digits.
ALTER TABLE outbox DROP CONSTRAINT outbox_to_e164_check,
    ADD CONSTRAINT outbox_to_e164_check CHECK (length(to_e164) BETWEEN 3 AND 16 AND to_e164 LIKE '+%'
        AND substr(to_e164, 2, 1) <> '0' AND ltrim(substr(to_e164, 2), '0123456789') = '') NOT VALID;
ALTER TABLE outbox VALIDATE CONSTRAINT outbox_to_e164_check;
ALTER TABLE contacts DROP CONSTRAINT contacts_e164_check,
    ADD CONSTRAINT contacts_e164_check CHECK (length(e164) BETWEEN 3 AND 16 AND e164 LIKE '+%'
        AND substr(e164, 2, 1) <> '0' AND ltrim(substr(e164, 2), '0123456789') = '') NOT VALID;
ALTER TABLE contacts VALIDATE CONSTRAINT contacts_e164_check;
