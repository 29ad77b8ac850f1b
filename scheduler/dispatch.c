/*
 * The dispatcher: the scheduler's engine on the libuv loop.
 *
 * Every few milliseconds a tick (1) every half second discovers the campaigns that
 * are running (and their control changes: pause and cancel take effect here), and
 * the senders of rows without a campaign; (2) once a second starts campaigns whose
 * time has come, fires due cron runs, marks drained campaigns completed and renews
 * the leases of throttled senders; (3) tops up each lane — one per campaign, or per
 * org and sender for replies — by leasing due outbox rows with FOR UPDATE SKIP
 * LOCKED; (4) sends, per sender, one message per lane in round robin as long as the
 * sender's bucket, the campaign's bucket and the account's concurrency gate allow;
 * (5) records outcomes in batched UPDATEs every few milliseconds (plain successes in a
 * leaner one of their own).
 *
 * A row leased with unknown_since set had an attempt whose outcome is unknown (a
 * lost response, a reset, a dead process): it is looked up in the provider's message
 * list first and marked sent if Twilio has it, so nobody gets a message twice.
 * Records only touch rows this process still leases (lease_owner), so a process that
 * lost its lease cannot overwrite another's work.
 */
#include "common/log.h"
#include "common/xalloc.h"
#include "scheduler/sched_int.h"
#include "scheduler/scheduler.h"
#include "storage/db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 5
#define DISCOVER_MS 500
#define SCHEDULES_MS 1000
#define SENDER_TTL_S 10
#define RECORD_MAX 2000
#define RECORD_FLUSH_MS 50
#define LEASE_BATCH 2000
#define LANE_TARGET_UNTHROTTLED 5000
#define DRY_BACKOFF_MS 250
#define RECONCILE_SLACK_S 5
#define RECONCILE_PAGE 50

/*
 * The two statements run for every message are prepared once per connection and run
 * with generic plans: planning them with their array parameters cost more than
 * executing a small batch, and the generic plans (an index probe per row) do not
 * depend on statistics that a running campaign keeps changing.
 */
#define STMT_LEASE_CAMPAIGN "sched_lease_campaign"
#define STMT_RECORD "sched_record"
#define STMT_RECORD_SENT "sched_record_sent"

typedef struct lane lane_t;
typedef struct sender sender_t;
typedef struct msg msg_t;
typedef struct account account_t;
typedef struct org org_t;

/*
 * A set of Twilio credentials and its client: the environment's (TWILIO_*), and one
 * per distinct account of the orgs that have their own (orgs.twilio_account_sid with
 * a sealed auth token or API key). Each has its own concurrency gate, and a refusal
 * of its credentials (auth, configuration) stops only what is sent with them.
 */
struct account {
    char key[200]; /* account sid "/" API key sid (or "" for the auth token); "env" for the environment's */
    char sid[64];
    twilio_client_t *tw;
    bucket_gate_t gate;
    int paused;
    account_t *next;
};

typedef enum org_state { ORG_LOADING = 0, ORG_READY, ORG_BROKEN } org_state_t;

/* An org the scheduler has lanes for: which account sends its messages, read once from orgs. */
struct org {
    int64_t id;
    sched_t *s;
    org_state_t state;
    int query_inflight;
    uint64_t retry_at;
    account_t *acct; /* when ORG_READY */
    org_t *next;
};

typedef enum lane_mode { LANE_RUNNING = 0, LANE_PAUSED, LANE_CANCELED, LANE_GONE } lane_mode_t;

typedef enum sched_state { SS_CONNECTING = 0, SS_RUNNING, SS_STOPPING, SS_CLOSING } sched_state_t;

struct msg {
    sched_msg_state_t state;
    sched_t *s;
    lane_t *lane;
    msg_t *next;
    int64_t id, org_id;
    const char *to, *from, *mg, *body, *tz; /* in the same allocation */
    int segments, attempts, validity;
    int64_t unknown_since_ms;
    uint64_t leased_ms;
    account_t *acct; /* set when sent or reconciled: whose client and gate it used */
    int suppressed;
    uint64_t t_send_ns;
    /* reconciliation */
    char found_sid[40];
    int64_t found_created;
};

struct sender {
    char key[80];
    double mps;
    bucket_t bucket;
    int throttled;
    int held;
    uint64_t held_until;
    int lease_inflight;
    uint64_t lease_sent_ms;
    lane_t *rr; /* next lane to serve */
    size_t nlanes;
    sender_t *next;
};

struct lane {
    sched_t *s;
    int64_t campaign_id; /* 0: rows without a campaign */
    int64_t org_id;
    org_t *org;
    char sender_key[80];
    int is_mg;
    sender_t *snd;
    bucket_t bucket;
    double rate;
    char tz[64];
    int qs, qe, cron;
    lane_mode_t mode;
    int due, leasing;
    uint64_t dry_until, seen_gen;
    msg_t *head, *tail;
    size_t ready, held;
    lane_t *next;  /* all lanes */
    lane_t *snext; /* ring of the sender's lanes */
};

struct sched {
    int64_t settle_ms; /* how long an unknown attempt may still land at Twilio (see retry_later) */
    uv_loop_t *loop;
    sched_state_t state;
    sched_config_t cfg;
    char *conninfo, *owner, *public_url;
    twilio_config_t tw_base; /* the environment's client settings, for org accounts (strings below) */
    char *tw_base_url, *tw_from, *tw_mg;
    db_t *db;
    int db_ready;
    account_t *accounts; /* accounts[...] ends with the environment's */
    account_t *env_acct;
    org_t *orgs;
    uv_timer_t tick;
    lane_t *lanes;
    sender_t *senders;
    quiet_cache_t *qc;
    uint64_t gen, next_discover, next_schedules, next_depth;
    int discover_inflight, schedules_inflight;
    int discovered_idle;
    size_t reconciling;
    /* the record batch being built */
    pg_array_t a_id, a_state, a_sid, a_code, a_msg, a_delay, a_keep, a_adelta;
    pg_array_t a_sent_id, a_sent_sid; /* plain successes, recorded by the two-array statement */
    size_t nrec;
    uint64_t rec_first;
    size_t records_inflight, misc_inflight;
    uint64_t rng;
    sched_stats_t st;
    /* metrics (NULL without a registry) */
    metrics_counter_t *m_sent, *m_retries, *m_suppressed, *m_waits, *m_recon_found, *m_recon_missing,
        *m_deferred;
    metrics_gauge_t *m_depth, *m_memory, *m_inflight;
    metrics_histogram_t *m_latency;
    void (*done)(void *);
    void *done_arg;
    int closing_handles;
};

static void tick(uv_timer_t *t);
static void record(sched_t *s, msg_t *m, const char *state, const char *sid, int code, const char *emsg,
                   int64_t delay_ms, int keep_unknown, int adelta);
static void ready_or_defer(sched_t *s, msg_t *m);
static void maybe_finish_stop(sched_t *s);

/* ---- small helpers ---- */

static double rand01(sched_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (double)(s->rng >> 11) / 9007199254740992.0;
}

static int64_t now_us(void)
{
    return (int64_t)(uv_hrtime() / 1000);
}

static void set_error(sched_t *s, const char *fmt, const char *a)
{
    snprintf(s->st.last_error, sizeof(s->st.last_error), fmt, a);
}

/* The one place a message changes state: checks the transition and logs it. */
static void msg_set_state(msg_t *m, sched_msg_state_t to)
{
    if (!sched_msg_transition_ok(m->state, to)) {
        log_cerror("sched", "outbox %" PRId64 ": bad transition %s -> %s", m->id, sched_msg_state_name(m->state),
                   sched_msg_state_name(to));
        abort();
    }
    log_cdebug("sched", "outbox %" PRId64 ": %s -> %s", m->id, sched_msg_state_name(m->state),
               sched_msg_state_name(to));
    if (m->state == SCHED_MSG_RECONCILING)
        m->s->reconciling--;
    if (to == SCHED_MSG_RECONCILING)
        m->s->reconciling++;
    m->state = to;
}

static msg_t *msg_new(sched_t *s, lane_t *lane, const PGresult *r, int i)
{
    const char *f[5] = {PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                        PQgetvalue(r, i, 7)};
    size_t len[5], total = sizeof(msg_t);
    msg_t *m;
    char *p;

    for (int k = 0; k < 5; k++) {
        len[k] = strlen(f[k]) + 1;
        total += len[k];
    }
    m = xcalloc(1, total);
    p = (char *)(m + 1);
    for (int k = 0; k < 5; k++) {
        memcpy(p, f[k], len[k]);
        if (k == 0)
            m->to = p;
        else if (k == 1)
            m->from = p;
        else if (k == 2)
            m->mg = p;
        else if (k == 3)
            m->body = p;
        else
            m->tz = p;
        p += len[k];
    }
    /* Campaign rows may leave the sender to the campaign. */
    if (!m->from[0] && !m->mg[0] && lane->sender_key[0]) {
        if (lane->is_mg)
            m->mg = lane->sender_key;
        else
            m->from = lane->sender_key;
    }
    m->s = s;
    m->lane = lane;
    m->state = SCHED_MSG_LEASED;
    m->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    m->org_id = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    m->segments = atoi(PQgetvalue(r, i, 6));
    if (m->segments < 1)
        m->segments = 1;
    m->attempts = atoi(PQgetvalue(r, i, 8));
    m->unknown_since_ms = strtoll(PQgetvalue(r, i, 9), NULL, 10);
    m->suppressed = PQgetvalue(r, i, 10)[0] == 't';
    m->leased_ms = uv_now(s->loop);
    lane->held++;
    s->st.in_memory++;
    s->st.leased++;
    return m;
}

static void msg_free(msg_t *m)
{
    m->lane->held--;
    m->s->st.in_memory--;
    free(m);
}

/* ---- accounts and orgs ---- */

static account_t *account_find(sched_t *s, const char *key)
{
    for (account_t *a = s->accounts; a; a = a->next)
        if (strcmp(a->key, key) == 0)
            return a;
    return NULL;
}

/* Creates an account with its own client from tc (copied by the client); NULL if the client refuses tc. */
static account_t *account_new(sched_t *s, const char *key, const twilio_config_t *tc)
{
    account_t *a = xcalloc(1, sizeof(*a));

    if (twilio_client_new(s->loop, tc, &a->tw) != 0) {
        free(a);
        return NULL;
    }
    snprintf(a->key, sizeof(a->key), "%s", key);
    snprintf(a->sid, sizeof(a->sid), "%s", tc->account_sid ? tc->account_sid : "");
    a->gate.max = s->cfg.account_concurrency;
    a->next = s->accounts;
    s->accounts = a;
    return a;
}

static void org_broken(sched_t *s, org_t *o, const char *why)
{
    char msg[200];

    snprintf(msg, sizeof(msg), "org %" PRId64 ": %s", o->id, why);
    log_cerror("sched", "%s; its messages are not sent", msg);
    set_error(s, "%s", msg);
    o->state = ORG_BROKEN;
    s->st.paused_reason = 1;
}

/*
 * The org's credentials: its own account when it has an account sid and a secret
 * that opens (an API key is preferred over the auth token, as for the environment),
 * the environment's when it has no account sid. An org whose stored secret cannot be
 * opened sends nothing rather than sending under another account.
 */
static void on_org_creds(db_t *db, const PGresult *res, const char *err, void *arg)
{
    org_t *o = arg;
    sched_t *s = o->s;
    char token[256], secret[256], key[200];
    const char *sid, *key_sid;
    twilio_config_t tc;
    account_t *a;

    (void)db;
    o->query_inflight = 0;
    s->misc_inflight--;
    if (err || PQntuples(res) != 1 || !PQgetvalue(res, 0, 0)[0]) {
        if (err) {
            log_cerror("sched", "org %" PRId64 ": cannot read its credentials: %s", o->id, err);
            o->retry_at = uv_now(s->loop) + 1000;
        } else {
            o->acct = s->env_acct;
            o->state = ORG_READY;
        }
        maybe_finish_stop(s);
        return;
    }
    sid = PQgetvalue(res, 0, 0);
    key_sid = PQgetvalue(res, 0, 2);
    token[0] = secret[0] = '\0';
    if (!PQgetisnull(res, 0, 3) && s->cfg.open_secret)
        (void)s->cfg.open_secret(s->cfg.open_secret_arg, PQgetvalue(res, 0, 3), secret, sizeof(secret));
    if (!PQgetisnull(res, 0, 1) && s->cfg.open_secret)
        (void)s->cfg.open_secret(s->cfg.open_secret_arg, PQgetvalue(res, 0, 1), token, sizeof(token));
    tc = s->tw_base;
    tc.account_sid = sid;
    tc.auth_token = NULL;
    tc.api_key_sid = NULL;
    tc.api_key_secret = NULL;
    if (key_sid[0] && secret[0]) {
        tc.api_key_sid = key_sid;
        tc.api_key_secret = secret;
    } else if (token[0]) {
        tc.auth_token = token;
    }
    snprintf(key, sizeof(key), "%s/%s", sid, tc.api_key_sid ? key_sid : "");
    if (!tc.auth_token && !tc.api_key_sid) {
        org_broken(s, o, "its Twilio credentials are stored but cannot be opened (HERALD_MASTER_KEY?)");
    } else if ((a = account_find(s, key)) || (a = account_new(s, key, &tc))) {
        o->acct = a;
        o->state = ORG_READY;
        log_cinfo("sched", "org %" PRId64 ": sending with its own account %s", o->id, sid);
    } else {
        org_broken(s, o, "its Twilio credentials are unusable");
    }
    memset(token, 0, sizeof(token));
    memset(secret, 0, sizeof(secret));
    maybe_finish_stop(s);
}

/* Starts reading the org's credentials unless they are read, being read, or failed a moment ago. */
static void org_load(sched_t *s, org_t *o, uint64_t now)
{
    char id[24];
    const char *p[1] = {id};

    if (o->state != ORG_LOADING || o->query_inflight || now < o->retry_at || !s->db || s->state != SS_RUNNING)
        return;
    snprintf(id, sizeof(id), "%" PRId64, o->id);
    if (db_query(s->db, sched_sql_org_creds, 1, p, on_org_creds, o) == 0) {
        o->query_inflight = 1;
        s->misc_inflight++;
    }
}

static org_t *org_get(sched_t *s, int64_t id)
{
    org_t *o;

    for (o = s->orgs; o; o = o->next)
        if (o->id == id)
            return o;
    o = xcalloc(1, sizeof(*o));
    o->id = id;
    o->s = s;
    o->next = s->orgs;
    s->orgs = o;
    org_load(s, o, uv_now(s->loop));
    return o;
}

/* ---- lanes and senders ---- */

static sender_t *sender_get(sched_t *s, const char *key)
{
    sender_t *sn;

    for (sn = s->senders; sn; sn = sn->next)
        if (strcmp(sn->key, key) == 0)
            return sn;
    sn = xcalloc(1, sizeof(*sn));
    snprintf(sn->key, sizeof(sn->key), "%s", key);
    bucket_init(&sn->bucket, 0, 1, now_us());
    sn->next = s->senders;
    s->senders = sn;
    return sn;
}

static void sender_set_rate(sched_t *s, sender_t *sn, double mps)
{
    if (mps != sn->mps) {
        sn->mps = mps;
        bucket_set_rate(&sn->bucket, mps, mps * s->cfg.default_burst_s, now_us());
    }
}

static void lane_attach(sender_t *sn, lane_t *l)
{
    l->snd = sn;
    if (!sn->rr) {
        l->snext = l;
        sn->rr = l;
    } else {
        l->snext = sn->rr->snext;
        sn->rr->snext = l;
    }
    sn->nlanes++;
}

static lane_t *lane_find(sched_t *s, int64_t campaign_id, int64_t org_id, const char *sender)
{
    for (lane_t *l = s->lanes; l; l = l->next)
        if (l->campaign_id == campaign_id && (campaign_id != 0 || (l->org_id == org_id && !strcmp(l->sender_key, sender))))
            return l;
    return NULL;
}

static lane_t *lane_get(sched_t *s, int64_t campaign_id, int64_t org_id, const char *sender, int is_mg)
{
    lane_t *l = lane_find(s, campaign_id, org_id, sender);

    if (l) {
        if (strcmp(l->sender_key, sender) != 0)
            log_cwarn("sched", "campaign %" PRId64 ": sender changed while running; keeping the first", campaign_id);
        return l;
    }
    l = xcalloc(1, sizeof(*l));
    l->s = s;
    l->campaign_id = campaign_id;
    l->org_id = org_id;
    l->org = org_get(s, org_id);
    snprintf(l->sender_key, sizeof(l->sender_key), "%s", sender);
    l->is_mg = is_mg;
    l->qs = l->qe = -1;
    bucket_init(&l->bucket, 0, 1, now_us());
    l->next = s->lanes;
    s->lanes = l;
    lane_attach(sender_get(s, sender), l);
    return l;
}

static void lane_set_rate(sched_t *s, lane_t *l, double rate)
{
    if (rate != l->rate) {
        l->rate = rate;
        bucket_set_rate(&l->bucket, rate, rate * s->cfg.default_burst_s, now_us());
    }
}

static int sender_throttled(const sender_t *sn)
{
    if (sn->mps > 0)
        return 1;
    for (lane_t *l = sn->rr, *first = sn->rr; l; l = l->snext) {
        if (l->rate > 0)
            return 1;
        if (l->snext == first)
            break;
    }
    return 0;
}

/* Gives back every message waiting in a lane: released, canceled, per the lane's mode. */
static void lane_drain_ready(sched_t *s, lane_t *l)
{
    while (l->head) {
        msg_t *m = l->head;
        l->head = m->next;
        l->ready--;
        if (!l->head)
            l->tail = NULL;
        msg_set_state(m, SCHED_MSG_DONE);
        if (l->mode == LANE_CANCELED) {
            s->st.canceled++;
            record(s, m, "canceled", NULL, 0, NULL, 0, 0, 0);
        } else {
            record(s, m, "sending", NULL, 0, NULL, 0, 0, -1);
        }
    }
}

/* ---- recording ---- */

static void on_misc_done(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    (void)res;
    s->misc_inflight--;
    if (err)
        log_cerror("sched", "statement failed: %s", err);
    maybe_finish_stop(s);
}

static void on_recorded(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->records_inflight--;
    if (err) {
        /* The rows stay leased; they come back after the lease and are reconciled. */
        log_cerror("sched", "recording outcomes failed: %s", err);
        set_error(s, "recording outcomes failed: %s", err);
    } else if (res) {
        s->st.records += strtoull(PQcmdTuples((PGresult *)res), NULL, 10);
    }
    maybe_finish_stop(s);
}

static void flush_records(sched_t *s)
{
    const char *p[9];

    if (s->nrec == 0 || !s->db)
        return;
    if (s->a_sent_id.n > 0) {
        p[0] = pg_array_str(&s->a_sent_id);
        p[1] = pg_array_str(&s->a_sent_sid);
        p[2] = s->owner;
        if (db_exec_prepared(s->db, STMT_RECORD_SENT, 3, p, on_recorded, s) == 0)
            s->records_inflight++;
        else
            log_cerror("sched", "cannot queue the outcome batch; rows come back after their lease");
        pg_array_reset(&s->a_sent_id);
        pg_array_reset(&s->a_sent_sid);
    }
    if (s->a_id.n == 0) {
        s->nrec = 0;
        return;
    }
    p[0] = pg_array_str(&s->a_id);
    p[1] = pg_array_str(&s->a_state);
    p[2] = pg_array_str(&s->a_sid);
    p[3] = pg_array_str(&s->a_code);
    p[4] = pg_array_str(&s->a_msg);
    p[5] = pg_array_str(&s->a_delay);
    p[6] = pg_array_str(&s->a_keep);
    p[7] = pg_array_str(&s->a_adelta);
    p[8] = s->owner;
    if (db_exec_prepared(s->db, STMT_RECORD, 9, p, on_recorded, s) == 0)
        s->records_inflight++;
    else
        log_cerror("sched", "cannot queue the outcome batch; rows come back after their lease");
    pg_array_reset(&s->a_id);
    pg_array_reset(&s->a_state);
    pg_array_reset(&s->a_sid);
    pg_array_reset(&s->a_code);
    pg_array_reset(&s->a_msg);
    pg_array_reset(&s->a_delay);
    pg_array_reset(&s->a_keep);
    pg_array_reset(&s->a_adelta);
    s->nrec = 0;
}

/*
 * Queues one outcome for the next batch and frees the message. state is the row's new
 * state; delay_ms when it is next due; keep_unknown keeps unknown_since (the attempt may
 * have reached Twilio); adelta corrects attempts (-1 when the lease was not an attempt).
 */
static void record(sched_t *s, msg_t *m, const char *state, const char *sid, int code, const char *emsg,
                   int64_t delay_ms, int keep_unknown, int adelta)
{
    if (s->nrec == 0)
        s->rec_first = uv_now(s->loop);
    s->nrec++;
    if (strcmp(state, "sent") == 0 && sid && *sid && !code && !(emsg && *emsg) && !delay_ms && !keep_unknown &&
        !adelta) {
        /* Nearly every outcome: six of the eight arrays would only repeat their defaults. */
        pg_array_add_int(&s->a_sent_id, m->id);
        pg_array_add_text(&s->a_sent_sid, sid);
        goto queued;
    }
    pg_array_add_int(&s->a_id, m->id);
    pg_array_add_text(&s->a_state, state);
    pg_array_add_text(&s->a_sid, sid && *sid ? sid : NULL);
    if (code)
        pg_array_add_int(&s->a_code, code);
    else
        pg_array_add_null(&s->a_code);
    pg_array_add_text(&s->a_msg, emsg && *emsg ? emsg : NULL);
    pg_array_add_int(&s->a_delay, delay_ms);
    pg_array_add_text(&s->a_keep, keep_unknown ? "t" : "f");
    pg_array_add_int(&s->a_adelta, adelta);
queued:
    msg_free(m);
    if (s->nrec >= RECORD_MAX)
        flush_records(s);
}

static void count_failure(sched_t *s, int code)
{
    char labels[48];

    s->st.failed++;
    if (!s->cfg.metrics)
        return;
    snprintf(labels, sizeof(labels), "code=\"%d\"", code);
    metrics_counter_add(metrics_counter(s->cfg.metrics, "herald_sched_failed_total",
                                        "Messages failed terminally, by Twilio error code.", labels),
                        1);
}

/* ---- sending ---- */

/*
 * Gives the row back for another attempt after a backoff. When the last attempt's
 * outcome is unknown (timeout, reset, lost response), the row waits at least
 * settle_ms: a request that timed out here may still be sitting in Twilio's (or the
 * simulator's) socket buffer, and reconciling before it lands would find nothing and
 * send the message a second time.
 */
static void retry_later(sched_t *s, msg_t *m, int keep_unknown, int code, const char *why)
{
    int64_t d = sched_backoff_ms(m->attempts, s->cfg.retry_base_ms, s->cfg.retry_max_ms, rand01(s));

    if (keep_unknown && d < s->settle_ms)
        d = s->settle_ms;

    s->st.retries++;
    metrics_counter_add(s->m_retries, 1);
    record(s, m, "sending", NULL, code, why, d, keep_unknown, 0);
}

static void on_created(const twilio_result_t *res, void *arg)
{
    msg_t *m = arg;
    sched_t *s = m->s;
    sched_action_t act;
    int code = res->code ? res->code : (int)res->http_status;

    bucket_gate_release(&m->acct->gate);
    s->st.in_flight--;
    metrics_histogram_observe(s->m_latency, (double)(uv_hrtime() - m->t_send_ns) / 1e9);
    msg_set_state(m, SCHED_MSG_DONE);
    act = sched_decide(&res->verdict, res->http_status, res->curl_code, m->attempts, s->cfg.max_attempts);
    switch (act) {
    case SCHED_ACT_SENT:
        s->st.sent++;
        metrics_counter_add(s->m_sent, 1);
        record(s, m, "sent", res->msg.sid, 0, NULL, 0, 0, 0);
        break;
    case SCHED_ACT_RETRY:
        retry_later(s, m, 0, code, res->message);
        break;
    case SCHED_ACT_RETRY_UNKNOWN:
        retry_later(s, m, 1, code, res->message);
        break;
    case SCHED_ACT_FAIL:
        count_failure(s, code);
        record(s, m, "failed", NULL, code, res->message, 0, 0, 0);
        break;
    case SCHED_ACT_SUPPRESS: {
        char org[24];
        const char *p[4] = {org, m->to, m->from, ""};
        snprintf(org, sizeof(org), "%" PRId64, m->org_id);
        s->st.suppressed++;
        metrics_counter_add(s->m_suppressed, 1);
        if (db_query(s->db, sched_sql_suppress, 4, p, on_misc_done, s) == 0)
            s->misc_inflight++;
        record(s, m, "suppressed", NULL, code, res->message, 0, 0, 0);
        break;
    }
    case SCHED_ACT_PAUSE:
        if (!m->acct->paused)
            log_cerror("sched", "Twilio refused account %s (%s, code %d): sending with it stopped", m->acct->sid,
                       res->verdict.reason, code);
        m->acct->paused = 1;
        s->st.paused_reason = 1;
        set_error(s, "Twilio refused the account: %.200s", res->message);
        record(s, m, "sending", NULL, code, res->message, 60000, 0, -1);
        break;
    }
    maybe_finish_stop(s);
}

static void send_msg(sched_t *s, msg_t *m)
{
    twilio_send_t ts;
    char cb[1100];
    int rc;

    memset(&ts, 0, sizeof(ts));
    ts.to = m->to;
    ts.body = m->body;
    ts.from = m->from[0] ? m->from : NULL;
    ts.messaging_service_sid = m->mg[0] ? m->mg : NULL;
    /* The row id rides in the callback URL, so a callback finds its row before the sid is recorded. */
    if (s->public_url) {
        snprintf(cb, sizeof(cb), "%s%s?o=%" PRId64, s->public_url, TWILIO_STATUS_CALLBACK_PATH, m->id);
        ts.status_callback = cb;
    } else {
        ts.status_callback = "";
    }
    ts.validity_period = m->validity;
    msg_set_state(m, SCHED_MSG_IN_FLIGHT);
    m->t_send_ns = uv_hrtime();
    m->acct = m->lane->org->acct;
    rc = twilio_message_create(m->acct->tw, &ts, on_created, m);
    if (rc != 0) {
        bucket_gate_release(&m->acct->gate);
        msg_set_state(m, SCHED_MSG_DONE);
        if (rc == TWILIO_EQUEUEFULL || rc == TWILIO_ECLOSED)
            retry_later(s, m, 0, 0, twilio_strerror(rc));
        else {
            count_failure(s, 21000);
            record(s, m, "failed", NULL, 21000, twilio_strerror(rc), 0, 0, 0);
        }
        return;
    }
    s->st.in_flight++;
}

/* Sends what the sender's and lanes' buckets allow now, one lane at a time in turn. */
static void dispatch_sender(sched_t *s, sender_t *sn, int64_t t)
{
    size_t idle_lanes = 0;

    if (!sn->rr)
        return;
    if (sn->throttled && !sn->held)
        return;
    while (idle_lanes < sn->nlanes) {
        lane_t *l = sn->rr;
        bucket_t *levels[2];
        msg_t *m = l->head;
        int64_t w;

        sn->rr = l->snext;
        if (!m || l->mode != LANE_RUNNING || l->org->acct->paused) {
            idle_lanes++;
            continue;
        }
        levels[0] = sn->throttled ? &sn->bucket : NULL;
        levels[1] = l->rate > 0 ? &l->bucket : NULL;
        w = bucket_take_all(levels, 2, &l->org->acct->gate, m->segments, t);
        if (w < 0) {
            /* The lane's account has its concurrency in flight: wait for a response. */
            idle_lanes++;
            continue;
        }
        if (w > 0) {
            if (levels[0] && bucket_wait_us(&sn->bucket, m->segments, t) > 0) {
                s->st.bucket_waits++;
                metrics_counter_add(s->m_waits, 1);
                return;
            }
            idle_lanes++;
            continue;
        }
        idle_lanes = 0;
        l->head = m->next;
        if (!l->head)
            l->tail = NULL;
        l->ready--;
        m->next = NULL;
        send_msg(s, m);
    }
}

/* ---- quiet hours, suppression, control, then ready ---- */

static void ready_or_defer(sched_t *s, msg_t *m)
{
    lane_t *l = m->lane;

    if (m->suppressed) {
        msg_set_state(m, SCHED_MSG_DONE);
        s->st.suppressed++;
        metrics_counter_add(s->m_suppressed, 1);
        record(s, m, "suppressed", NULL, 0, "suppressed at send time", 0, 0, 0);
        return;
    }
    if (l->mode == LANE_CANCELED) {
        msg_set_state(m, SCHED_MSG_DONE);
        s->st.canceled++;
        record(s, m, "canceled", NULL, 0, NULL, 0, 0, 0);
        return;
    }
    if (l->mode != LANE_RUNNING || s->state != SS_RUNNING || (l->snd->throttled && !l->snd->held)) {
        msg_set_state(m, SCHED_MSG_DONE);
        record(s, m, "sending", NULL, 0, NULL, 0, 0, -1);
        return;
    }
    m->validity = 0;
    if (l->campaign_id != 0) {
        int64_t now = (int64_t)time(NULL), next_open = 0, left = 0;
        int q = s->cfg.quiet_hours ? quiet_cache_check(s->qc, m->to, m->tz, l->tz, l->qs, l->qe, now, &next_open, &left)
                                   : -1;
        if (q == 0) {
            msg_set_state(m, SCHED_MSG_DONE);
            s->st.deferred++;
            metrics_counter_add(s->m_deferred, 1);
            record(s, m, "sending", NULL, 0, "quiet hours", (next_open - now) * 1000, 0, -1);
            return;
        }
        m->validity = s->cfg.validity_seconds;
        if (q == 1 && left < m->validity)
            m->validity = (int)left;
    }
    msg_set_state(m, SCHED_MSG_READY);
    m->next = NULL;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
    l->ready++;
}

/* ---- reconciliation ---- */

static int64_t parse_rfc2822(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4], zone[8] = "+0000";
    int d, y, hh, mm, ss;
    struct tm tm;
    const char *p = strchr(s, ',');
    const char *mp;
    int64_t t;

    p = p ? p + 1 : s;
    if (sscanf(p, " %d %3s %d %d:%d:%d %7s", &d, mon, &y, &hh, &mm, &ss, zone) < 6)
        return 0;
    mp = strstr(months, mon);
    if (!mp)
        return 0;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = (int)(mp - months) / 3;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = (int64_t)timegm(&tm);
    if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5) {
        int off = ((zone[1] - '0') * 10 + (zone[2] - '0')) * 3600 + ((zone[3] - '0') * 10 + (zone[4] - '0')) * 60;
        t += zone[0] == '+' ? -off : off;
    }
    return t;
}

static void on_reconciled(db_t *db, const PGresult *res, const char *err, void *arg)
{
    msg_t *m = arg;
    sched_t *s = m->s;

    (void)db;
    s->misc_inflight--;
    if (err || atoi(PQcmdTuples((PGresult *)res)) != 1) {
        /* The sid belongs to another row, or the lease was lost: look again later. */
        log_cwarn("sched", "outbox %" PRId64 ": reconciled sid not recorded (%s)", m->id, err ? err : "conflict");
        msg_set_state(m, SCHED_MSG_DONE);
        retry_later(s, m, 1, 0, "reconciliation conflict");
    } else {
        msg_set_state(m, SCHED_MSG_DONE);
        msg_free(m);
    }
    maybe_finish_stop(s);
}

static int on_reconcile_page(const twilio_result_t *res, const twilio_message_t *msgs, size_t n, int last, void *arg)
{
    msg_t *m = arg;
    sched_t *s = m->s;
    int64_t since = m->unknown_since_ms / 1000 - RECONCILE_SLACK_S;
    int older_seen = 0;

    for (size_t i = 0; i < n; i++) {
        const twilio_message_t *t = &msgs[i];
        int64_t created = parse_rfc2822(t->date_created);
        int same_sender = m->mg[0] ? strcmp(t->messaging_service_sid, m->mg) == 0 : strcmp(t->from, m->from) == 0;
        if (created && created < since) {
            older_seen = 1;
            continue;
        }
        if (strcmp(t->to, m->to) != 0 || !same_sender || strncmp(t->direction, "outbound", 8) != 0)
            continue;
        /* Another message to the same number (an auto-reply, another campaign) is not this row's. */
        if (t->has_body && t->body_hash != twilio_body_hash(m->body, strlen(m->body)))
            continue;
        /* Newest first: the last match is the earliest, the one our first unknown attempt made. */
        snprintf(m->found_sid, sizeof(m->found_sid), "%s", t->sid);
        m->found_created = created;
    }
    if (!last && !older_seen && res->verdict.outcome == TWILIO_OUTCOME_OK)
        return 0;
    if (res->verdict.outcome != TWILIO_OUTCOME_OK && !m->found_sid[0]) {
        msg_set_state(m, SCHED_MSG_DONE);
        retry_later(s, m, 1, res->code, "reconciliation failed");
        maybe_finish_stop(s);
        return 1;
    }
    if (m->found_sid[0]) {
        const char *p[3];
        char id[24];
        snprintf(id, sizeof(id), "%" PRId64, m->id);
        p[0] = id;
        p[1] = m->found_sid;
        p[2] = s->owner;
        s->st.reconciled_found++;
        s->st.sent++;
        metrics_counter_add(s->m_recon_found, 1);
        log_cinfo("sched", "outbox %" PRId64 ": Twilio already has it as %s; not sending again", m->id, m->found_sid);
        if (db_query(s->db, sched_sql_reconciled, 3, p, on_reconciled, m) != 0) {
            msg_set_state(m, SCHED_MSG_DONE);
            retry_later(s, m, 1, 0, "reconciliation not recorded");
        } else {
            s->misc_inflight++;
        }
        return 1;
    }
    s->st.reconciled_missing++;
    metrics_counter_add(s->m_recon_missing, 1);
    if (m->attempts > s->cfg.max_attempts) {
        msg_set_state(m, SCHED_MSG_DONE);
        count_failure(s, 0);
        record(s, m, "failed", NULL, 0, "retries exhausted", 0, 0, 0);
    } else {
        ready_or_defer(s, m);
    }
    maybe_finish_stop(s);
    return 1;
}

static void reconcile(sched_t *s, msg_t *m)
{
    twilio_list_query_t q;
    int rc;

    memset(&q, 0, sizeof(q));
    q.to = m->to;
    q.from = m->from[0] ? m->from : NULL;
    q.page_size = RECONCILE_PAGE;
    q.max_pages = 20;
    msg_set_state(m, SCHED_MSG_RECONCILING);
    m->acct = m->lane->org->acct;
    rc = twilio_message_list(m->acct->tw, &q, on_reconcile_page, m);
    if (rc != 0) {
        msg_set_state(m, SCHED_MSG_DONE);
        retry_later(s, m, 1, 0, twilio_strerror(rc));
    }
}

/* ---- leasing ---- */

static void on_leased(db_t *db, const PGresult *res, const char *err, void *arg)
{
    lane_t *l = arg;
    sched_t *s = l->s;
    int n;

    (void)db;
    l->leasing = 0;
    s->misc_inflight--;
    if (err) {
        log_cerror("sched", "lease failed: %s", err);
        set_error(s, "lease failed: %s", err);
        l->dry_until = uv_now(s->loop) + 1000;
        maybe_finish_stop(s);
        return;
    }
    n = PQntuples(res);
    if (n == 0)
        l->dry_until = uv_now(s->loop) + DRY_BACKOFF_MS;
    for (int i = 0; i < n; i++) {
        msg_t *m = msg_new(s, l, res, i);
        if (m->unknown_since_ms > 0 && s->state == SS_RUNNING)
            reconcile(s, m);
        else
            ready_or_defer(s, m);
    }
    maybe_finish_stop(s);
}

static size_t lane_target(const sched_t *s, const lane_t *l)
{
    double r = 0, t;
    size_t busy = 0;

    (void)s;
    if (l->snd->mps > 0)
        r = l->snd->mps;
    if (l->rate > 0 && (r == 0 || l->rate < r))
        r = l->rate;
    if (r == 0)
        return LANE_TARGET_UNTHROTTLED;
    for (lane_t *o = l->snd->rr, *first = l->snd->rr; o; o = o->snext) {
        if (o->due || o->held)
            busy++;
        if (o->snext == first)
            break;
    }
    /* About a second of sending, shared by the sender's busy lanes: far less than a lease. */
    t = (r + 5) / (double)(busy ? busy : 1);
    if (t < 2)
        t = 2;
    return t > LANE_TARGET_UNTHROTTLED ? LANE_TARGET_UNTHROTTLED : (size_t)t;
}

static void maybe_lease(sched_t *s, lane_t *l, uint64_t now)
{
    size_t target, want;
    char lim[16], secs[16], key[24];
    int rc;

    if (l->leasing || now < l->dry_until || !l->due)
        return;
    if (l->org->state != ORG_READY) {
        org_load(s, l->org, now);
        return;
    }
    if (l->org->acct->paused)
        return;
    if (l->mode != LANE_RUNNING && l->mode != LANE_CANCELED)
        return;
    /* A canceled lane only sweeps (reconcile, cancel): it sends nothing, so needs no sender lease. */
    if (l->snd->throttled && !l->snd->held && l->mode != LANE_CANCELED)
        return;
    target = l->mode == LANE_CANCELED ? LEASE_BATCH : lane_target(s, l);
    if (l->held >= target)
        return;
    want = target - l->held;
    if (want > LEASE_BATCH)
        want = LEASE_BATCH;
    if (want < target / 4 && l->held > 0)
        return;
    snprintf(lim, sizeof(lim), "%zu", want);
    snprintf(secs, sizeof(secs), "%d", s->cfg.lease_seconds);
    if (l->campaign_id) {
        const char *p[5] = {key, lim, s->owner, secs, l->cron ? "f" : "t"};
        snprintf(key, sizeof(key), "%" PRId64, l->campaign_id);
        rc = db_exec_prepared(s->db, STMT_LEASE_CAMPAIGN, 5, p, on_leased, l);
    } else {
        const char *p[5] = {key, lim, s->owner, secs, l->sender_key};
        snprintf(key, sizeof(key), "%" PRId64, l->org_id);
        rc = db_query(s->db, sched_sql_lease_direct, 5, p, on_leased, l);
    }
    if (rc == 0) {
        l->leasing = 1;
        s->misc_inflight++;
    }
}

/* ---- discovery ---- */

static void discovery_done(sched_t *s)
{
    int busy = 0;

    for (lane_t *l = s->lanes; l; l = l->next) {
        if (l->seen_gen != s->gen && l->mode != LANE_GONE) {
            l->mode = LANE_GONE;
            l->due = 0;
        }
        if (l->mode != LANE_RUNNING && l->mode != LANE_CANCELED)
            lane_drain_ready(s, l);
        if (l->due || l->held)
            busy = 1;
    }
    for (sender_t *sn = s->senders; sn; sn = sn->next)
        sn->throttled = sender_throttled(sn);
    s->discovered_idle = !busy;
    s->discover_inflight = 0;
}

static void on_discover_direct(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    if (err)
        log_cerror("sched", "discovery failed: %s", err);
    for (int i = 0; !err && i < PQntuples(res); i++) {
        int64_t org = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        const char *sender = PQgetvalue(res, i, 1);
        lane_t *l = lane_get(s, 0, org, sender, strncmp(sender, "MG", 2) == 0);
        l->mode = LANE_RUNNING;
        l->due = 1;
        l->seen_gen = s->gen;
        sender_set_rate(s, l->snd, strtod(PQgetvalue(res, i, 2), NULL));
    }
    /* Direct lanes not listed have nothing due now but stay, unless empty. */
    for (lane_t *l = s->lanes; l; l = l->next)
        if (l->campaign_id == 0 && l->seen_gen != s->gen) {
            l->seen_gen = s->gen;
            l->due = 0;
        }
    discovery_done(s);
    maybe_finish_stop(s);
}

static void on_discover(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    if (err) {
        log_cerror("sched", "discovery failed: %s", err);
        set_error(s, "discovery failed: %s", err);
        s->discover_inflight = 0;
        maybe_finish_stop(s);
        return;
    }
    s->gen++;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        const char *status = PQgetvalue(res, i, 2);
        lane_t *l = lane_get(s, id, strtoll(PQgetvalue(res, i, 1), NULL, 10), PQgetvalue(res, i, 3),
                             PQgetvalue(res, i, 4)[0] == 't');
        lane_mode_t mode = strcmp(status, "running") == 0    ? LANE_RUNNING
                           : strcmp(status, "canceled") == 0 ? LANE_CANCELED
                                                             : LANE_PAUSED;
        if (mode != l->mode) {
            char ctx[40];
            snprintf(ctx, sizeof(ctx), "campaign %" PRId64, id);
            log_cinfo(ctx, "now %s", status);
        }
        l->mode = mode;
        lane_set_rate(s, l, strtod(PQgetvalue(res, i, 5), NULL));
        sender_set_rate(s, l->snd, strtod(PQgetvalue(res, i, 6), NULL));
        snprintf(l->tz, sizeof(l->tz), "%s", PQgetvalue(res, i, 7));
        l->qs = atoi(PQgetvalue(res, i, 8));
        l->qe = atoi(PQgetvalue(res, i, 9));
        l->cron = PQgetvalue(res, i, 10)[0] == 't';
        l->due = PQgetvalue(res, i, 11)[0] == 't';
        if (l->due)
            l->dry_until = 0;
        l->seen_gen = s->gen;
    }
    if (s->cfg.include_direct && s->cfg.campaign_id == 0) {
        for (lane_t *l = s->lanes; l; l = l->next)
            if (l->campaign_id == 0)
                l->seen_gen = 0;
        if (db_query(s->db, sched_sql_discover_direct, 0, NULL, on_discover_direct, s) == 0) {
            s->misc_inflight++;
            return;
        }
    }
    for (lane_t *l = s->lanes; l; l = l->next)
        if (l->campaign_id == 0)
            l->seen_gen = s->gen;
    discovery_done(s);
    maybe_finish_stop(s);
}

static void discover(sched_t *s)
{
    pg_array_t ids;
    char filter[24];
    const char *p[2];

    pg_array_init(&ids);
    for (lane_t *l = s->lanes; l; l = l->next)
        if (l->campaign_id && (l->held || l->mode == LANE_RUNNING))
            pg_array_add_int(&ids, l->campaign_id);
    snprintf(filter, sizeof(filter), "%" PRId64, s->cfg.campaign_id);
    p[0] = s->cfg.campaign_id > 0 ? filter : NULL;
    p[1] = pg_array_str(&ids);
    if (db_query(s->db, sched_sql_discover, 2, p, on_discover, s) == 0) {
        s->discover_inflight = 1;
        s->misc_inflight++;
    }
    pg_array_close(&ids);
}

/* ---- schedules: due starts, cron runs, completion, sender leases ---- */

static void on_schedules_done(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    if (err)
        log_cerror("sched", "schedule pass failed: %s", err);
    else if (res && PQnfields((PGresult *)res) == 2 && strcmp(PQfname(res, 1), "status") == 0)
        for (int i = 0; i < PQntuples(res); i++)
            log_cinfo("sched", "campaign %s: %s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    maybe_finish_stop(s);
}

static void on_cron_fired(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    if (err)
        log_cerror("sched", "cron run failed: %s", err);
    else if (atoll(PQgetvalue(res, 0, 0)) >= 0)
        log_cinfo("sched", "cron run queued %s recipients", PQgetvalue(res, 0, 0));
    s->discovered_idle = 0;
    s->next_discover = 0;
    maybe_finish_stop(s);
}

static void on_cron_due(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    s->schedules_inflight = 0;
    if (err) {
        log_cerror("sched", "cron query failed: %s", err);
        maybe_finish_stop(s);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        cron_expr_t ce;
        char cerr[128], local[17], key[40], next_s[24], exp_s[24];
        const char *zone = PQgetvalue(res, i, 2);
        int64_t expected = strtoll(PQgetvalue(res, i, 3), NULL, 10), now = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        int64_t next;
        quiet_local_t lt;
        const char *p[5];
        if (cron_parse(PQgetvalue(res, i, 1), &ce, cerr, sizeof(cerr)) != 0 ||
            quiet_local_time(zone, expected, &lt) != 0 || cron_next(&ce, zone, now, &next, local) != 0) {
            log_cerror("sched", "campaign %s: bad cron or zone; not fired", PQgetvalue(res, i, 0));
            continue;
        }
        /* The run is named by its local wall time: the same run fired twice has one key. */
        snprintf(key, sizeof(key), "cron:%04d-%02d-%02dT%02d:%02d", lt.year, lt.month, lt.day, lt.hour, lt.minute);
        snprintf(next_s, sizeof(next_s), "%" PRId64, next);
        snprintf(exp_s, sizeof(exp_s), "%" PRId64, expected);
        p[0] = PQgetvalue(res, i, 0);
        p[1] = exp_s;
        p[2] = key;
        p[3] = next_s;
        p[4] = s->owner;
        log_cinfo("sched", "campaign %s: firing cron run %s", p[0], key);
        if (db_query(s->db, sched_sql_cron_fire, 5, p, on_cron_fired, s) == 0)
            s->misc_inflight++;
    }
    maybe_finish_stop(s);
}

static void on_sender_lease(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sender_t *sn = arg;
    sched_t *s = NULL;

    (void)db;
    sn->lease_inflight = 0;
    /* Senders do not point back at the scheduler; lanes do. */
    s = sn->rr ? sn->rr->s : NULL;
    if (s)
        s->misc_inflight--;
    if (err) {
        log_cerror("sched", "sender lease failed: %s", err);
    } else {
        int held = PQntuples(res) == 1;
        if (held != sn->held) {
            char masked[32];
            log_cinfo("sched", "sender %s: %s", log_mask_phone(sn->key, masked, sizeof(masked)),
                      held ? "driven by this process" : "driven by another process");
        }
        sn->held = held;
        /*
         * Postgres set the expiry at least TTL after we sent the renewal; counting from
         * the send (with a margin for clock drift) keeps us inside the lease however
         * late the answer came.
         */
        if (held && s)
            sn->held_until = sn->lease_sent_ms + SENDER_TTL_S * 1000 - 2000;
    }
    if (s)
        maybe_finish_stop(s);
}

static void schedules(sched_t *s, uint64_t now)
{
    char filter[24], ttl[8];
    const char *p[1];

    snprintf(filter, sizeof(filter), "%" PRId64, s->cfg.campaign_id);
    p[0] = s->cfg.campaign_id > 0 ? filter : NULL;
    if (s->cfg.fire_schedules) {
        if (db_query(s->db, sched_sql_promote, 1, p, on_schedules_done, s) == 0)
            s->misc_inflight++;
        if (db_query(s->db, sched_sql_cron_due, 1, p, on_cron_due, s) == 0) {
            s->misc_inflight++;
            s->schedules_inflight = 1;
        }
    }
    if (db_query(s->db, sched_sql_complete, 1, p, on_schedules_done, s) == 0)
        s->misc_inflight++;
    snprintf(ttl, sizeof(ttl), "%d", SENDER_TTL_S);
    for (sender_t *sn = s->senders; sn; sn = sn->next) {
        int active = 0;
        for (lane_t *l = sn->rr, *first = sn->rr; l; l = l->snext) {
            if (l->due || l->held)
                active = 1;
            if (l->snext == first)
                break;
        }
        if (!sn->throttled || sn->lease_inflight || (!active && !sn->held))
            continue;
        {
            const char *q[3] = {sn->key, s->owner, ttl};
            if (db_query(s->db, sched_sql_sender_lease, 3, q, on_sender_lease, sn) == 0) {
                sn->lease_inflight = 1;
                sn->lease_sent_ms = uv_now(s->loop);
                s->misc_inflight++;
            }
        }
    }
    (void)now;
}

static void on_depth(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    s->misc_inflight--;
    if (!err && PQntuples(res) == 1)
        metrics_gauge_set(s->m_depth, strtod(PQgetvalue(res, 0, 0), NULL));
    maybe_finish_stop(s);
}

/* ---- the tick ---- */

static void tick(uv_timer_t *t)
{
    sched_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    int64_t tus = now_us();

    if (s->state == SS_RUNNING && s->db_ready) {
        if (now >= s->next_discover && !s->discover_inflight) {
            s->next_discover = now + DISCOVER_MS;
            discover(s);
        }
        if (now >= s->next_schedules && !s->schedules_inflight) {
            s->next_schedules = now + SCHEDULES_MS;
            schedules(s, now);
        }
        if (s->m_depth && now >= s->next_depth) {
            s->next_depth = now + 10000;
            if (db_query(s->db,
                         "SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending') AND next_attempt_at <= now()",
                         0, NULL, on_depth, s) == 0)
                s->misc_inflight++;
        }
        for (sender_t *sn = s->senders; sn; sn = sn->next)
            if (sn->held && now > sn->held_until) {
                char masked[32];
                log_cwarn("sched", "sender %s: lease not renewed in time; pausing it",
                          log_mask_phone(sn->key, masked, sizeof(masked)));
                sn->held = 0;
            }
        for (lane_t *l = s->lanes; l; l = l->next) {
            if (l->snd->throttled && !l->snd->held && l->head)
                lane_drain_ready(s, l);
            /* Never hold a row near its lease expiry: another lease of it could send it twice. */
            while (l->head && now - l->head->leased_ms > (uint64_t)s->cfg.lease_seconds * 500) {
                msg_t *m = l->head;
                l->head = m->next;
                if (!l->head)
                    l->tail = NULL;
                l->ready--;
                msg_set_state(m, SCHED_MSG_DONE);
                record(s, m, "sending", NULL, 0, NULL, 0, 0, -1);
            }
            maybe_lease(s, l, now);
        }
        for (sender_t *sn = s->senders; sn; sn = sn->next)
            dispatch_sender(s, sn, tus);
        s->st.idle = s->discovered_idle && s->st.in_memory == 0 && s->nrec == 0 && s->records_inflight == 0;
    }
    if (s->nrec > 0 && (s->state != SS_RUNNING || now - s->rec_first >= RECORD_FLUSH_MS || s->nrec >= RECORD_MAX))
        flush_records(s);
    metrics_gauge_set(s->m_memory, (double)s->st.in_memory);
    metrics_gauge_set(s->m_inflight, (double)s->st.in_flight);
}

/* ---- lifecycle ---- */

static void on_connect(db_t *db, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    if (err) {
        log_cerror("sched", "cannot connect to Postgres: %s", err);
        set_error(s, "cannot connect to Postgres: %s", err);
        s->st.paused_reason = 2;
        return;
    }
    if (s->state == SS_CONNECTING) {
        if (db_query(s->db, "SET plan_cache_mode = force_generic_plan", 0, NULL, on_misc_done, s) == 0)
            s->misc_inflight++;
        if (db_prepare(s->db, STMT_LEASE_CAMPAIGN, sched_sql_lease_campaign, on_misc_done, s) == 0)
            s->misc_inflight++;
        if (db_prepare(s->db, STMT_RECORD, sched_sql_record, on_misc_done, s) == 0)
            s->misc_inflight++;
        if (db_prepare(s->db, STMT_RECORD_SENT, sched_sql_record_sent, on_misc_done, s) == 0)
            s->misc_inflight++;
    }
    s->db_ready = 1;
    if (s->state == SS_CONNECTING)
        s->state = SS_RUNNING;
    log_cinfo("sched", "scheduler %s running", s->owner);
}

void sched_config_init(sched_config_t *cfg)
{
    const char *v;

    memset(cfg, 0, sizeof(*cfg));
    twilio_config_from_env(&cfg->twilio);
    cfg->public_url = getenv("HERALD_PUBLIC_URL");
    cfg->include_direct = 1;
    cfg->fire_schedules = 1;
    cfg->quiet_hours = 1;
    if ((v = getenv("HERALD_QUIET_HOURS")) && strcmp(v, "off") == 0)
        cfg->quiet_hours = 0;
    if ((v = getenv("HERALD_LEASE_SECONDS")))
        cfg->lease_seconds = atoi(v);
    if ((v = getenv("HERALD_MAX_ATTEMPTS")))
        cfg->max_attempts = atoi(v);
    if ((v = getenv("HERALD_RETRY_BASE_MS")))
        cfg->retry_base_ms = atoll(v);
    if ((v = getenv("HERALD_RETRY_MAX_MS")))
        cfg->retry_max_ms = atoll(v);
    if ((v = getenv("HERALD_SEND_CONCURRENCY")))
        cfg->account_concurrency = (unsigned)atoi(v);
}

static char *dup_opt(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

static void init_metrics(sched_t *s)
{
    metrics_registry_t *r = s->cfg.metrics;
    static const char recon_help[] = "Rows with an unknown earlier outcome, by what the provider's list showed.";

    if (!r)
        return;
    s->m_sent = metrics_counter(r, "herald_sched_sent_total", "Messages accepted by Twilio.", "");
    s->m_retries = metrics_counter(r, "herald_sched_retries_total", "Send attempts to be retried.", "");
    s->m_suppressed = metrics_counter(r, "herald_sched_suppressed_total", "Messages not sent: recipient suppressed.", "");
    s->m_waits = metrics_counter(r, "herald_sched_bucket_waits_total", "Times a sender waited for its token bucket.", "");
    s->m_deferred = metrics_counter(r, "herald_sched_deferred_total", "Messages deferred to the next quiet-hours opening.", "");
    s->m_recon_found = metrics_counter(r, "herald_sched_reconciled_total", recon_help, "result=\"found\"");
    s->m_recon_missing = metrics_counter(r, "herald_sched_reconciled_total", recon_help, "result=\"missing\"");
    s->m_depth = metrics_gauge(r, "herald_sched_queue_depth", "Outbox rows due now (queued or retrying).", "");
    s->m_memory = metrics_gauge(r, "herald_sched_leased", "Rows leased by this process and not yet recorded.", "");
    s->m_inflight = metrics_gauge(r, "herald_sched_in_flight", "Create requests in flight.", "");
    s->m_latency = metrics_histogram(r, "herald_sched_send_seconds", "Twilio create request latency.", "",
                                     metrics_latency_buckets, metrics_latency_nbuckets);
}

int sched_start(uv_loop_t *loop, const sched_config_t *cfg, sched_t **out)
{
    sched_t *s;
    twilio_config_t tc;
    char host[64] = "host";

    if (!loop || !cfg || !out || !cfg->conninfo)
        return SCHED_EINVAL;
    s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.lease_seconds <= 0)
        s->cfg.lease_seconds = 30;
    if (s->cfg.max_attempts <= 0)
        s->cfg.max_attempts = 8;
    if (s->cfg.retry_base_ms <= 0)
        s->cfg.retry_base_ms = 1000;
    if (s->cfg.retry_max_ms <= 0)
        s->cfg.retry_max_ms = 300000;
    /* Twilio's usual account limit on concurrent REST requests: more answers 429 (20429). */
    if (s->cfg.account_concurrency == 0)
        s->cfg.account_concurrency = 100;
    if (s->cfg.default_burst_s <= 0)
        s->cfg.default_burst_s = 0.1;
    if (s->cfg.validity_seconds <= 0)
        s->cfg.validity_seconds = 14400;
    s->conninfo = xstrdup(cfg->conninfo);
    s->public_url = dup_opt(cfg->public_url);
    if (s->public_url) {
        size_t n = strlen(s->public_url);
        while (n > 0 && s->public_url[n - 1] == '/')
            s->public_url[--n] = '\0';
    }
    gethostname(host, sizeof(host) - 1);
    s->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    if (cfg->owner)
        s->owner = xstrdup(cfg->owner);
    else {
        char o[128];
        snprintf(o, sizeof(o), "%s:%d:%08x", host, (int)getpid(), (unsigned)(s->rng & 0xffffffffu));
        s->owner = xstrdup(o);
    }
    tc = cfg->twilio;
    tc.max_concurrency = s->cfg.account_concurrency;
    /* A request must end well before its lease does, or another process could resend it. */
    if (tc.timeout_ms <= 0 || tc.timeout_ms > (long)s->cfg.lease_seconds * 1000 / 3)
        tc.timeout_ms = (long)s->cfg.lease_seconds * 1000 / 3;
    s->settle_ms = 2 * (int64_t)tc.timeout_ms;
    tc.public_url = NULL;
    s->env_acct = account_new(s, "env", &tc);
    if (!s->env_acct) {
        free(s->conninfo);
        free(s->public_url);
        free(s->owner);
        free(s);
        return SCHED_ECONFIG;
    }
    /* Org accounts take the environment's settings (base URL, default sender, limits), not its secrets. */
    s->tw_base = tc;
    s->tw_base_url = dup_opt(tc.base_url);
    s->tw_from = dup_opt(tc.from_number);
    s->tw_mg = dup_opt(tc.messaging_service_sid);
    s->tw_base.base_url = s->tw_base_url;
    s->tw_base.from_number = s->tw_from;
    s->tw_base.messaging_service_sid = s->tw_mg;
    s->tw_base.account_sid = s->tw_base.auth_token = s->tw_base.api_key_sid = s->tw_base.api_key_secret = NULL;
    s->cfg.conninfo = s->conninfo;
    s->cfg.public_url = s->public_url;
    s->cfg.owner = s->owner;
    memset(&s->cfg.twilio, 0, sizeof(s->cfg.twilio)); /* the client has its own copy; do not keep borrowed secrets */
    s->qc = quiet_cache_new();
    pg_array_init(&s->a_id);
    pg_array_init(&s->a_state);
    pg_array_init(&s->a_sid);
    pg_array_init(&s->a_code);
    pg_array_init(&s->a_msg);
    pg_array_init(&s->a_delay);
    pg_array_init(&s->a_keep);
    pg_array_init(&s->a_adelta);
    pg_array_init(&s->a_sent_id);
    pg_array_init(&s->a_sent_sid);
    init_metrics(s);
    s->state = SS_CONNECTING;
    if (db_connect(loop, s->conninfo, on_connect, s, &s->db) != 0) {
        twilio_client_close(s->env_acct->tw, NULL, NULL);
        free(s->env_acct);
        free(s->tw_base_url);
        free(s->tw_from);
        free(s->tw_mg);
        s->db = NULL;
        s->state = SS_CLOSING;
        /* Nothing async is pending on s but the client's close, which does not call back into s. */
        pg_array_close(&s->a_id);
        pg_array_close(&s->a_state);
        pg_array_close(&s->a_sid);
        pg_array_close(&s->a_code);
        pg_array_close(&s->a_msg);
        pg_array_close(&s->a_delay);
        pg_array_close(&s->a_keep);
        pg_array_close(&s->a_adelta);
        pg_array_close(&s->a_sent_id);
        pg_array_close(&s->a_sent_sid);
        quiet_cache_free(s->qc);
        free(s->conninfo);
        free(s->public_url);
        free(s->owner);
        free(s);
        return SCHED_EINVAL;
    }
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, tick, TICK_MS, TICK_MS);
    *out = s;
    return 0;
}

static void free_all(sched_t *s)
{
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;

    while (s->lanes) {
        lane_t *l = s->lanes;
        s->lanes = l->next;
        free(l);
    }
    while (s->senders) {
        sender_t *sn = s->senders;
        s->senders = sn->next;
        free(sn);
    }
    while (s->orgs) {
        org_t *o = s->orgs;
        s->orgs = o->next;
        free(o);
    }
    while (s->accounts) {
        account_t *a = s->accounts;
        s->accounts = a->next;
        free(a);
    }
    free(s->tw_base_url);
    free(s->tw_from);
    free(s->tw_mg);
    pg_array_close(&s->a_id);
    pg_array_close(&s->a_state);
    pg_array_close(&s->a_sid);
    pg_array_close(&s->a_code);
    pg_array_close(&s->a_msg);
    pg_array_close(&s->a_delay);
    pg_array_close(&s->a_keep);
    pg_array_close(&s->a_adelta);
    pg_array_close(&s->a_sent_id);
    pg_array_close(&s->a_sent_sid);
    quiet_cache_free(s->qc);
    free(s->conninfo);
    free(s->public_url);
    free(s->owner);
    free(s);
    if (done)
        done(arg);
}

static void on_closed_part(sched_t *s)
{
    if (--s->closing_handles == 0)
        free_all(s);
}

static void on_tick_closed(uv_handle_t *h)
{
    on_closed_part(h->data);
}

static void on_db_closed(void *arg)
{
    on_closed_part(arg);
}

static void on_tw_closed(void *arg)
{
    on_closed_part(arg);
}

static void on_senders_released(db_t *db, const PGresult *res, const char *err, void *arg)
{
    sched_t *s = arg;

    (void)db;
    (void)res;
    (void)err;
    s->misc_inflight--;
    maybe_finish_stop(s);
}

/*
 * Stop progress: once nothing is in flight or reconciling, flush the last outcomes,
 * give back the sender leases, then close the handles.
 */
static void maybe_finish_stop(sched_t *s)
{
    if (s->state != SS_STOPPING)
        return;
    if (s->st.in_flight > 0 || s->reconciling > 0)
        return;
    for (lane_t *l = s->lanes; l; l = l->next)
        lane_drain_ready(s, l);
    if (s->nrec > 0) {
        flush_records(s);
        return;
    }
    if (s->records_inflight > 0 || s->misc_inflight > 0)
        return;
    if (s->db && s->db_ready && s->senders && !s->closing_handles) {
        const char *p[1] = {s->owner};
        s->closing_handles = -1; /* marks the release as sent */
        if (db_query(s->db, sched_sql_sender_release, 1, p, on_senders_released, s) == 0) {
            s->misc_inflight++;
            return;
        }
    }
    s->state = SS_CLOSING;
    s->closing_handles = 2;
    for (account_t *a = s->accounts; a; a = a->next)
        s->closing_handles++;
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
    db_close(s->db, on_db_closed, s);
    s->db = NULL;
    for (account_t *a = s->accounts; a; a = a->next) {
        twilio_client_close(a->tw, on_tw_closed, s);
        a->tw = NULL;
    }
}

void sched_stop(sched_t *s, void (*done)(void *arg), void *arg)
{
    if (!s || s->state == SS_STOPPING || s->state == SS_CLOSING)
        return;
    s->done = done;
    s->done_arg = arg;
    s->state = SS_STOPPING;
    log_cinfo("sched", "stopping: %zu in flight, %zu leased", s->st.in_flight, s->st.in_memory);
    if (!s->db_ready) {
        /* Never connected: nothing leased. */
        s->misc_inflight = 0;
    }
    maybe_finish_stop(s);
}

void sched_get_stats(const sched_t *s, sched_stats_t *out)
{
    *out = s->st;
}

void sched_poke(sched_t *s)
{
    if (s) {
        s->next_discover = 0;
        s->next_schedules = 0;
        s->discovered_idle = 0;
    }
}
