-- 001_initial: Herald's first schema.
--
-- Every tenant-owned row carries org_id, and every unique key that a tenant can
-- collide on starts with it, so one org can never see or block another's data.
-- States are text with CHECK constraints (easier to extend in a later migration
-- than an enum type); the outbox and inbox message states are ranked so that a
-- trigger can keep them monotonic: late or repeated status callbacks never move a
-- message backwards.

CREATE TABLE orgs (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Provider credentials. Secrets are stored encrypted (AES-256-GCM under
    -- HERALD_MASTER_KEY: nonce || ciphertext || tag), never in clear text.
    twilio_account_sid     text CHECK (twilio_account_sid ~ '^AC[0-9a-f]{32}$'),
    twilio_auth_token_enc  bytea,
    twilio_api_key_sid     text CHECK (twilio_api_key_sid ~ '^SK[0-9a-f]{32}$'),
    twilio_api_secret_enc  bytea,
    help_text              text,
    opt_out_text           text,
    opt_in_text            text,
    created_at             timestamptz NOT NULL DEFAULT now()
);
-- The CLI acts for the org named 'default' unless told otherwise: there is at most one.
CREATE UNIQUE INDEX orgs_one_default ON orgs ((true)) WHERE name = 'default';

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    -- The first characters of the key, shown to people to tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key: the key itself is never stored.
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);

-- Phone numbers an org sends from or receives on (From numbers, short codes).
CREATE TABLE numbers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    e164          text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    kind          text NOT NULL DEFAULT 'long_code'
                  CHECK (kind IN ('long_code', 'toll_free', 'short_code')),
    mps           numeric CHECK (mps > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (e164)
);
CREATE INDEX numbers_org ON numbers (org_id);

CREATE TABLE contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    e164        text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    region      text CHECK (region ~ '^[A-Z]{2}$'),
    timezone    text,
    tags        text[] NOT NULL DEFAULT '{}',
    -- Merge fields from uploads and answers from forms.
    attributes  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, e164)
);
CREATE INDEX contacts_tags ON contacts USING gin (tags);

-- Who may not be messaged. An entry exists while the latest consent event for the
-- number is an opt-out; consent_events keeps the full history (who, when, keyword,
-- channel), which is what a TCPA dispute asks for.
CREATE TABLE consent_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    e164         text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    kind         text NOT NULL CHECK (kind IN ('opt_out', 'opt_in')),
    -- The keyword or phrase that caused it ("STOP", "please stop texting me"), if any.
    keyword      text,
    channel      text NOT NULL
                 CHECK (channel IN ('sms', 'api', 'cli', 'import', 'provider', 'agent')),
    -- Who: the contact ("contact"), an agent or API key, or the provider (error 21610).
    actor        text NOT NULL,
    our_number   text,
    message_sid  text,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_events_number ON consent_events (org_id, e164, occurred_at);

CREATE TABLE suppression (
    org_id          bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    e164            text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    reason          text NOT NULL
                    CHECK (reason IN ('opt_out', 'provider_21610', 'manual', 'import', 'invalid')),
    consent_event_id bigint REFERENCES consent_events (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, e164)
);

CREATE TABLE campaigns (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                 bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    body                   text NOT NULL CHECK (length(body) BETWEEN 1 AND 1600),
    -- Exactly one sender: a From number or a Messaging Service.
    from_number            text CHECK (from_number ~ '^\+[1-9][0-9]{1,14}$'),
    messaging_service_sid  text CHECK (messaging_service_sid ~ '^MG[0-9a-f]{32}$'),
    region                 text NOT NULL DEFAULT 'US' CHECK (region ~ '^[A-Z]{2}$'),
    rate_mps               numeric CHECK (rate_mps > 0),
    start_at               timestamptz,
    cron                   text,
    timezone               text,
    -- Campaign-local sending window in minutes after local midnight, narrowed
    -- further by the legal window of each recipient's zone.
    quiet_start_min        int CHECK (quiet_start_min BETWEEN 0 AND 1439),
    quiet_end_min          int CHECK (quiet_end_min BETWEEN 1 AND 1440),
    footer_policy          text NOT NULL DEFAULT 'first'
                           CHECK (footer_policy IN ('first', 'always', 'never')),
    footer_text            text,
    merge_defaults         jsonb NOT NULL DEFAULT '{}',
    price_per_segment      numeric NOT NULL DEFAULT 0.0079,
    status                 text NOT NULL DEFAULT 'draft'
                           CHECK (status IN ('draft', 'scheduled', 'running', 'paused',
                                             'completed', 'canceled')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((from_number IS NULL) <> (messaging_service_sid IS NULL)),
    CHECK (cron IS NULL OR timezone IS NOT NULL),
    UNIQUE (org_id, id)
);
CREATE INDEX campaigns_due ON campaigns (status, start_at) WHERE status IN ('scheduled', 'running');

-- One row per upload, so a repeated upload of the same file is recognised and
-- rejects have a home.
CREATE TABLE campaign_uploads (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    campaign_id   bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    file_sha256   bytea NOT NULL,
    rows_total    bigint NOT NULL DEFAULT 0,
    accepted      bigint NOT NULL DEFAULT 0,
    invalid       bigint NOT NULL DEFAULT 0,
    duplicate     bigint NOT NULL DEFAULT 0,
    suppressed    bigint NOT NULL DEFAULT 0,
    segments      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, file_sha256)
);

CREATE TABLE campaign_rejects (
    upload_id     bigint NOT NULL REFERENCES campaign_uploads (id) ON DELETE CASCADE,
    campaign_id   bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_number    bigint NOT NULL,
    raw_value     text,
    reason        text NOT NULL,
    detail        text,
    PRIMARY KEY (upload_id, row_number)
);
CREATE INDEX campaign_rejects_campaign ON campaign_rejects (campaign_id, row_number);

-- Message states, ranked: a status update may only raise the rank.
-- queued(0) < sending(1) < sent(2) < delivered / undelivered / failed / canceled (3).
CREATE FUNCTION herald_state_rank(state text) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE state
        WHEN 'queued' THEN 0
        WHEN 'sending' THEN 1
        WHEN 'sent' THEN 2
        WHEN 'delivered' THEN 3
        WHEN 'undelivered' THEN 3
        WHEN 'failed' THEN 3
        WHEN 'canceled' THEN 3
        WHEN 'suppressed' THEN 3
    END
$$;

-- The outbox: one row per recipient per run. run_key is '' for one-shot
-- campaigns and the run's idempotency key for cron runs, so a run fired twice
-- cannot queue anyone twice.
CREATE TABLE outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id            bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    campaign_id       bigint REFERENCES campaigns (id) ON DELETE CASCADE,
    run_key           text NOT NULL DEFAULT '',
    contact_id        bigint REFERENCES contacts (id) ON DELETE SET NULL,
    to_e164           text NOT NULL CHECK (to_e164 ~ '^\+[1-9][0-9]{1,14}$'),
    from_number       text,
    messaging_service_sid text,
    body              text NOT NULL,
    segments          int NOT NULL CHECK (segments BETWEEN 1 AND 100),
    encoding          text NOT NULL CHECK (encoding IN ('GSM-7', 'UCS-2')),
    timezone          text,
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (herald_state_rank(state) IS NOT NULL),
    attempts          int NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    provider_sid      text UNIQUE,
    error_code        int,
    error_message     text,
    -- Kind of row: campaign recipient, agent reply, rule auto-reply, forward.
    source            text NOT NULL DEFAULT 'campaign'
                      CHECK (source IN ('campaign', 'reply', 'auto_reply', 'forward', 'system')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    finished_at       timestamptz
);
CREATE UNIQUE INDEX outbox_recipient ON outbox (campaign_id, run_key, to_e164)
    WHERE campaign_id IS NOT NULL;
-- What the scheduler leases: due rows that are queued, or sending with an expired lease.
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_campaign_state ON outbox (campaign_id, state);

CREATE FUNCTION herald_outbox_monotonic() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF herald_state_rank(NEW.state) < herald_state_rank(OLD.state)
       OR (herald_state_rank(OLD.state) = 3 AND NEW.state <> OLD.state) THEN
        -- Keep the row as it was: a late callback must not undo a final state.
        RETURN NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER outbox_monotonic BEFORE UPDATE OF state ON outbox
    FOR EACH ROW EXECUTE FUNCTION herald_outbox_monotonic();

-- The CRM inbox.
CREATE TABLE conversations (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id            bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    our_number        text NOT NULL,
    contact_e164      text NOT NULL CHECK (contact_e164 ~ '^\+[1-9][0-9]{1,14}$'),
    contact_id        bigint REFERENCES contacts (id) ON DELETE SET NULL,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    unread            int NOT NULL DEFAULT 0 CHECK (unread >= 0),
    last_message_at   timestamptz,
    last_message_preview text,
    last_campaign_id  bigint REFERENCES campaigns (id) ON DELETE SET NULL,
    tags              text[] NOT NULL DEFAULT '{}',
    -- Multi-step form in progress (fill-form action), so it survives restarts.
    form_state        jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, our_number, contact_e164)
);
-- Keyset pagination: newest activity first, id breaks ties.
CREATE INDEX conversations_list ON conversations (org_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_tags ON conversations USING gin (tags);

CREATE TABLE messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    conversation_id  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    body             text NOT NULL DEFAULT '',
    -- Twilio's MessageSid: inbound webhooks are de-duplicated on it.
    message_sid      text,
    outbox_id        bigint REFERENCES outbox (id) ON DELETE SET NULL,
    media            jsonb NOT NULL DEFAULT '[]',
    status           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    body_tsv         tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
CREATE UNIQUE INDEX messages_sid ON messages (org_id, message_sid) WHERE message_sid IS NOT NULL;
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_fts ON messages USING gin (body_tsv);

-- What the routing rules did, recorded on the conversation.
CREATE TABLE conversation_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    conversation_id  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id       bigint REFERENCES messages (id) ON DELETE CASCADE,
    rule_name        text,
    action           text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_events_conv ON conversation_events (conversation_id, id);

-- Routing rules, one document per receiving number, versioned so a reload is an
-- atomic swap and the previous set stays inspectable.
CREATE TABLE rule_sets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    number      text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{1,14}$'),
    version     int NOT NULL,
    document    jsonb NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, number, version)
);
CREATE UNIQUE INDEX rule_sets_active ON rule_sets (org_id, number) WHERE active;

CREATE TABLE leads (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    conversation_id bigint REFERENCES conversations (id) ON DELETE SET NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost', 'closed')),
    source      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
-- One open lead per contact.
CREATE UNIQUE INDEX leads_open ON leads (org_id, contact_id) WHERE status = 'open';
