-- 003_scheduler: what the scheduler needs beyond 001.
--
-- A leased row's next_attempt_at is pushed to its lease expiry, so "due" is simply
-- state IN ('queued', 'sending') AND next_attempt_at <= now(): rows leased by a dead
-- process come back by themselves. unknown_since is set when an attempt may have
-- reached the provider and cleared when its outcome is known; a row leased with it
-- set is reconciled with the provider's message list before it is sent again.

ALTER TABLE outbox ADD COLUMN unknown_since timestamptz;

-- What a campaign lane leases, in order; and the rows without a campaign. These
-- replace 001's outbox_due, which only the scheduler used: every leased row is
-- updated twice, and each index on outbox costs an insert per update.
DROP INDEX outbox_due;
CREATE INDEX outbox_campaign_due ON outbox (campaign_id, next_attempt_at, id)
    WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_direct_due ON outbox (next_attempt_at)
    WHERE campaign_id IS NULL AND state IN ('queued', 'sending');

-- Cron campaigns: when the next run fires. Each run copies the audience (the rows
-- with run_key '') under the run's key, the local wall time of the run.
ALTER TABLE campaigns ADD COLUMN next_run_at timestamptz;
CREATE INDEX campaigns_next_run ON campaigns (next_run_at) WHERE cron IS NOT NULL;

CREATE TABLE campaign_runs (
    campaign_id  bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    run_key      text NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    fired_by     text NOT NULL,
    recipients   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, run_key)
);

-- A throttled sender (From number or Messaging Service) is driven by one process
-- at a time, so its rate holds however many processes run; the lease is renewed
-- every second and another process takes over after it expires.
CREATE TABLE sched_senders (
    sender      text PRIMARY KEY,
    owner       text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- A 21610 from the provider: the recipient opted out with the carrier.
CREATE FUNCTION herald_sched_suppress(p_org bigint, p_e164 text, p_our text, p_sid text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_ce bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM suppression WHERE org_id = p_org AND e164 = p_e164) THEN
        RETURN;
    END IF;
    INSERT INTO consent_events (org_id, e164, kind, keyword, channel, actor, our_number, message_sid)
    VALUES (p_org, p_e164, 'opt_out', '21610', 'provider', 'provider', p_our, p_sid)
    RETURNING id INTO v_ce;
    INSERT INTO suppression (org_id, e164, reason, consent_event_id)
    VALUES (p_org, p_e164, 'provider_21610', v_ce)
    ON CONFLICT (org_id, e164) DO NOTHING;
END
$$;

-- Compare-and-set of a campaign's status (the transition itself is decided by the
-- scheduler's state machine). Canceling also cancels every row that is known not to
-- have been sent; rows held by a live scheduler are canceled by it.
CREATE FUNCTION herald_campaign_set_status(p_org bigint, p_id bigint, p_from text, p_to text,
                                           p_next_run timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE campaigns SET status = p_to, updated_at = now(),
           next_run_at = CASE WHEN p_to = 'scheduled' AND cron IS NOT NULL THEN p_next_run ELSE next_run_at END
     WHERE id = p_id AND org_id = p_org AND status = p_from;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_to = 'canceled' THEN
        UPDATE outbox SET state = 'canceled', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
         WHERE campaign_id = p_id AND state IN ('queued', 'sending') AND unknown_since IS NULL
           AND (lease_owner IS NULL OR next_attempt_at <= now());
    END IF;
    RETURN true;
END
$$;

-- Fires one cron run: only if next_run_at still is p_expected (so two processes
-- racing fire it once), and the copied rows are keyed by (campaign, run_key, number)
-- so even a replayed run queues nobody twice. Returns the rows queued, or -1 when
-- another process fired it first.
CREATE FUNCTION herald_cron_fire(p_id bigint, p_expected timestamptz, p_run_key text, p_next timestamptz,
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

-- The monotonic-state trigger of 001, with the same rule, computes the ranks inline:
-- calling herald_state_rank() (a SQL function) from PL/pgSQL per row cost as much as
-- the rest of the lease. herald_state_rank() stays the definition for queries.
CREATE OR REPLACE FUNCTION herald_outbox_monotonic() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r_old int := CASE OLD.state WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END;
    r_new int := CASE NEW.state WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END;
BEGIN
    IF r_new < r_old OR (r_old = 3 AND NEW.state <> OLD.state) THEN
        -- Keep the row as it was: a late callback must not undo a final state.
        RETURN NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
