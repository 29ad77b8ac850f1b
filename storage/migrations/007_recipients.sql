-- 007_recipients: a campaign's audience is stored lean at upload time and moved into
-- the outbox in chunks while the campaign sends.
--
-- Until 006 an upload inserted every recipient into contacts and the outbox inside its
-- transaction: about 20 us and 12 us of database work per row (unique and GIN index
-- entries, constraint checks, the join between the two), so 1,000,000 rows took about
-- a minute however fast the file was parsed. Now the upload COPYs its accepted rows in
-- file order into campaign_recipients and its rejected rows into campaign_rejects.
-- campaign_recipients has no B-tree at all (a primary key on (upload_id, rn) cost 40%
-- of the COPY): rows arrive in file order, so a BRIN index finds a range of record
-- numbers in a few pages. Tags and attributes stay text until they reach contacts. The de-duplication within
-- the file and the suppression check are done by the uploader; numbers of earlier
-- uploads to the campaign are taken out by herald_upload_settle() in the same transaction.
--
-- herald_fill() moves the next chunk of a campaign's recipients into the outbox: it
-- upserts their contacts, decides the first-message footer, and inserts the outbox
-- rows (ON CONFLICT DO NOTHING on outbox_recipient, so a chunk filled twice queues
-- nobody twice). campaign_fill holds the cursor. The scheduler calls it while a
-- campaign runs and its queued backlog is short; a cron run fills everything before
-- copying the audience. Contacts of a campaign's recipients therefore appear as the
-- campaign is sent, not at upload.

CREATE TABLE campaign_recipients (
    upload_id  bigint NOT NULL,
    rn         bigint NOT NULL,          -- record number in the file (header = 1)
    to_e164    text NOT NULL,
    raw        text,
    region     text,
    tz         text,
    body       text NOT NULL,            -- rendered, with any footer every message gets
    segs       int NOT NULL,
    enc        text NOT NULL,
    f_suffix   text,                     -- added to the org's first message to the number
    f_segs     int,
    f_enc      text,
    tags       text,                     -- a text[] literal
    attrs      text                      -- a JSON object
);
CREATE INDEX campaign_recipients_rows ON campaign_recipients USING brin (upload_id, rn)
    WITH (pages_per_range = 32, autosummarize = on);

CREATE TABLE campaign_fill (
    campaign_id  bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    total        bigint NOT NULL DEFAULT 0,   -- recipients accepted by uploads
    filled       bigint NOT NULL DEFAULT 0,   -- of those, moved into the outbox
    cur_upload   bigint NOT NULL DEFAULT 0,   -- the cursor: upload, and its record numbers
    cur_rn       bigint NOT NULL DEFAULT 0    -- up to this one are moved
);

-- campaign_rejects gets one row per rejected CSV row; its two per-row foreign-key
-- checks cost more than the COPY of the row. Deleting an upload (directly, or through
-- its campaign or org) still deletes its rejects and recipients, by a statement-level
-- trigger that handles the whole set of deleted uploads at once.
ALTER TABLE campaign_rejects
    DROP CONSTRAINT campaign_rejects_upload_id_fkey,
    DROP CONSTRAINT campaign_rejects_campaign_id_fkey;

CREATE FUNCTION herald_upload_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM campaign_rejects r USING gone g WHERE r.upload_id = g.id;
    DELETE FROM campaign_recipients r USING gone g WHERE r.upload_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_uploads_deleted AFTER DELETE ON campaign_uploads
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_upload_deleted();

-- After the COPYs of an upload (whose rows the uploader has already checked against
-- the suppression list): takes out the rows whose number was accepted by an earlier
-- upload to the campaign, recording them as rejects, and adds what is left
-- (p_accepted less those) to the campaign's fill total. Returns the rows it took out
-- and their segments (plain, and with the first-message footer), and how many of the
-- remaining numbers the org has sent a campaign message to before, with the segments
-- the footer would have added to them (the estimate counts them without it).
CREATE FUNCTION herald_upload_settle(p_upload bigint, p_campaign bigint, p_org bigint, p_accepted bigint,
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
    IF EXISTS (SELECT 1 FROM outbox WHERE org_id = p_org AND campaign_id IS NOT NULL) THEN
        SELECT count(*), COALESCE(sum(COALESCE(r.f_segs, r.segs) - r.segs), 0) INTO seen_rows, seen_extra
          FROM campaign_recipients r
         WHERE r.upload_id = p_upload
           AND EXISTS (SELECT 1 FROM outbox x WHERE x.org_id = p_org AND x.to_e164 = r.to_e164
                          AND x.campaign_id IS NOT NULL);
    END IF;
    INSERT INTO campaign_fill AS f (campaign_id, total) VALUES (p_campaign, remaining)
    ON CONFLICT (campaign_id) DO UPDATE SET total = f.total + EXCLUDED.total;
END
$$;

-- contacts: the fill inserts contacts by the thousand, and the per-row check of the
-- foreign key to orgs was a quarter of the cost of each insert. Deleting an org still
-- deletes its contacts, by a statement-level trigger (as 006 does for the outbox).
ALTER TABLE contacts DROP CONSTRAINT contacts_org_id_fkey;
CREATE FUNCTION herald_org_deleted_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contacts c USING gone g WHERE c.org_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER orgs_delete_contacts AFTER DELETE ON orgs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_org_deleted_contacts();

-- Moves the campaign's next recipients into the outbox (run '' rows): those of the
-- next p_max record numbers of the current upload that have any. Returns how many it
-- moved (0: nothing left, or another process is filling the campaign right now).
CREATE FUNCTION herald_fill(p_campaign bigint, p_max int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    f campaign_fill%ROWTYPE;
    c campaigns%ROWTYPE;
    v_end bigint;
    v_last bigint;
    v_n bigint := 0;
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
    ON CONFLICT (campaign_id, run_key, to_e164) WHERE campaign_id IS NOT NULL DO NOTHING;

    UPDATE campaign_fill SET filled = filled + v_n, cur_upload = f.cur_upload, cur_rn = v_last
     WHERE campaign_id = p_campaign;
    RETURN v_n;
END
$$;
-- The chunk is a range of record numbers of one upload: the BRIN index finds it. Until
-- autovacuum has analyzed a fresh upload the planner would rather scan the table.
ALTER FUNCTION herald_fill(bigint, int) SET enable_seqscan = off;

-- Recipients not yet moved into the outbox, per campaign (0 when none).
CREATE FUNCTION herald_unfilled(p_campaign bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT greatest(total - filled, 0) FROM campaign_fill WHERE campaign_id = p_campaign), 0)
$$;

-- What the scheduler calls every discovery round: fills, by up to p_chunk rows, each
-- running one-shot campaign (or just p_campaign) that has recipients left and fewer
-- than p_low rows due in the outbox within a few seconds (rows deferred by quiet hours
-- do not count, or they would stall everyone else's turn). Returns the rows moved.
CREATE FUNCTION herald_fill_due(p_campaign bigint, p_low int, p_chunk int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n bigint := 0;
    v_backlog bigint;
BEGIN
    FOR r IN SELECT f.campaign_id FROM campaign_fill f JOIN campaigns c ON c.id = f.campaign_id
              WHERE f.filled < f.total AND c.status = 'running' AND c.cron IS NULL
                AND (p_campaign IS NULL OR c.id = p_campaign)
    LOOP
        SELECT count(*) INTO v_backlog FROM (
            SELECT 1 FROM outbox WHERE campaign_id = r.campaign_id AND state IN ('queued', 'sending')
               AND next_attempt_at <= now() + interval '5 seconds' LIMIT p_low) x;
        IF v_backlog < p_low THEN
            v_n := v_n + herald_fill(r.campaign_id, p_chunk);
        END IF;
    END LOOP;
    RETURN v_n;
END
$$;

-- A cron run copies the whole audience: fill it completely first.
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
    RETURN v_n;
END
$$;
