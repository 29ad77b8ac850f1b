-- 006_outbox_lean: cheaper outbox inserts for campaign uploads.
--
-- Inserting 200,000 campaign rows into the outbox of 001-005 cost about 58 us per row on
-- the 2-core test machine, of which about 21 us were the three foreign-key checks (one
-- index probe of orgs, campaigns and contacts per row), about 9 us the CHECK calling
-- herald_state_rank() and most of the rest the index entries. An upload checks its
-- campaign, org and contacts itself, inside the transaction that holds the campaign
-- row locked, so the per-row checks only repeat what is already known.
--
-- What the foreign keys did on delete is kept, by statement-level triggers on the
-- parent tables: deleting campaigns or orgs deletes their outbox rows, and deleting
-- contacts clears outbox.contact_id. Each works on the whole set of deleted parents
-- at once (a hash join), so deleting many contacts is linear, where the row-level
-- ON DELETE SET NULL scanned the outbox once per contact. Deleting parents is rare
-- (nothing in Herald deletes contacts or campaigns but the cascade from an org).

ALTER TABLE outbox
    DROP CONSTRAINT outbox_org_id_fkey,
    DROP CONSTRAINT outbox_campaign_id_fkey,
    DROP CONSTRAINT outbox_contact_id_fkey;

CREATE FUNCTION herald_outbox_parent_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'campaigns' THEN
        DELETE FROM outbox o USING gone g WHERE o.campaign_id = g.id;
    ELSIF TG_TABLE_NAME = 'orgs' THEN
        DELETE FROM outbox o USING gone g WHERE o.org_id = g.id;
    ELSE
        UPDATE outbox o SET contact_id = NULL FROM gone g WHERE o.contact_id = g.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaigns_delete_outbox AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_parent_deleted();
CREATE TRIGGER orgs_delete_outbox AFTER DELETE ON orgs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_parent_deleted();
CREATE TRIGGER contacts_delete_outbox AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_parent_deleted();

-- The same set of states as herald_state_rank() IS NOT NULL, without a function call per row.
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check
    CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'canceled', 'suppressed'));

-- A row has a provider SID only once it has been sent; nothing uses ON CONFLICT
-- (provider_sid), and lookups by SID (provider_sid = $1) can use a partial index.
ALTER TABLE outbox DROP CONSTRAINT outbox_provider_sid_key;
CREATE UNIQUE INDEX outbox_provider_sid ON outbox (provider_sid) WHERE provider_sid IS NOT NULL;
