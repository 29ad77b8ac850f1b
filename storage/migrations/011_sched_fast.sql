-- 011_sched_fast: a cheaper test of when to fill a campaign's outbox.
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

ALTER TABLE campaign_fill ADD COLUMN mark_id bigint;

-- 007's herald_fill with one more argument, p_low (what the mark is chosen by; 0, the
-- default, marks the chunk's first row). The rest is unchanged.
DROP FUNCTION herald_fill(bigint, int);
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

    -- Contacts: existing ones take the row's region, zone, tags and attributes when it
    -- brings something new; new ones are inserted.
    INSERT INTO contacts AS ct (org_id, e164, region, timezone, tags, attributes)
    SELECT c.org_id, r.to_e164, r.region, r.tz, COALESCE(r.tags::text[], '{}'), COALESCE(r.attrs::jsonb, '{}')
      FROM campaign_recipients r
     WHERE r.upload_id = f.cur_upload AND r.rn > f.cur_rn AND r.rn <= v_last
    ON CONFLICT (org_id, e164) DO UPDATE SET
        region = COALESCE(EXCLUDED.region, ct.region), timezone = COALESCE(EXCLUDED.timezone, ct.timezone),
        tags = ARRAY(SELECT DISTINCT t FROM unnest(ct.tags || EXCLUDED.tags) t ORDER BY t),
        attributes = ct.attributes || EXCLUDED.attributes, updated_at = now()
     WHERE NOT (ct.tags @> EXCLUDED.tags AND ct.attributes @> EXCLUDED.attributes
                AND (EXCLUDED.region IS NULL OR ct.region = EXCLUDED.region)
                AND (EXCLUDED.timezone IS NULL OR ct.timezone = EXCLUDED.timezone));

    -- Ids are drawn in row order, so the k-th smallest returned id is the k-th row queued.
    WITH ins AS (
        INSERT INTO outbox (org_id, campaign_id, contact_id, to_e164, from_number, messaging_service_sid,
                            body, segments, encoding, timezone, upload_id, upload_row)
        SELECT c.org_id, c.id, ct.id, r.to_e164, c.from_number, c.messaging_service_sid,
               CASE WHEN r.first THEN r.body || r.f_suffix ELSE r.body END,
               CASE WHEN r.first THEN r.f_segs ELSE r.segs END,
               CASE WHEN r.first THEN r.f_enc ELSE r.enc END,
               r.tz, r.upload_id, r.rn
          FROM (SELECT r.*, r.f_suffix IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM outbox x WHERE x.org_id = c.org_id AND x.to_e164 = r.to_e164
                       AND x.campaign_id IS NOT NULL) AS first
                  FROM campaign_recipients r
                 WHERE r.upload_id = f.cur_upload AND r.rn > f.cur_rn AND r.rn <= v_last) r
          JOIN contacts ct ON ct.org_id = c.org_id AND ct.e164 = r.to_e164
         ORDER BY r.rn
        ON CONFLICT (campaign_id, run_key, to_e164) WHERE campaign_id IS NOT NULL DO NOTHING
        RETURNING id)
    SELECT (array_agg(id ORDER BY id))[greatest(count(*) - greatest(p_low, 0), 0) + 1] INTO v_mark FROM ins;

    UPDATE campaign_fill SET filled = filled + v_n, cur_upload = f.cur_upload, cur_rn = v_last, mark_id = v_mark
     WHERE campaign_id = p_campaign;
    RETURN v_n;
END
$$;
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
