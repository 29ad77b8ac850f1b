/*
 * The scheduler: drains the outbox to Twilio on the libuv loop.
 *
 * Pure parts (tested table-driven, no loop, no database):
 *  - token buckets (bucket_*): one level per sender in segments/s, per campaign, and a
 *    concurrency gate per Twilio account; a message waits until every level allows it;
 *  - cron (cron_*): 5-field expressions evaluated in an IANA zone, across DST;
 *  - policy (sched_*): retry backoff with jitter, message and campaign state
 *    transitions, and the decision taken on each provider outcome.
 *
 * The engine (sched_t) leases due outbox rows with FOR UPDATE SKIP LOCKED, fair
 * between the campaigns sharing a sender, reconciles rows whose earlier attempt has
 * an unknown outcome with the provider's message list before sending them again,
 * applies quiet hours and suppression at send time, and records every outcome in
 * batched statements. Several processes may run it on one database: rows are leased,
 * and a throttled sender is driven by one process at a time (sched_senders lease).
 */
#ifndef HERALD_SCHEDULER_SCHEDULER_H
#define HERALD_SCHEDULER_SCHEDULER_H
#include "common/metrics.h"
#include "provider/twilio.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SCHED_MUSTCHECK __attribute__((warn_unused_result))

#define SCHED_EINVAL (-1)  /* bad argument or configuration */
#define SCHED_ESTATE (-2)  /* not allowed in the current state (e.g. campaign already completed) */
#define SCHED_ECONFIG (-3) /* Twilio configuration unusable (no account sid or credentials) */

/* ---- token buckets (bucket.c) ---- */

/*
 * A token bucket refilled at rate tokens/s up to its cap: the burst less 10 ms of the
 * rate (at least one token), which leaves room for the provider receiving messages
 * a little later than they leave (bucket.c). Times are microseconds on any monotonic
 * clock the caller chooses (tests use a fake one). A message may be taken when the
 * bucket holds at least min(cost, cap) tokens; it then takes its whole cost, possibly
 * going into debt, so a message costing more than the burst still passes and the
 * long-run rate stays exact. rate <= 0 means unlimited.
 */
typedef struct bucket {
    double rate;
    double burst;
    double tokens;
    int64_t last_us;
} bucket_t;

/* A limit on operations in flight (Twilio account API concurrency). max 0: unlimited. */
typedef struct bucket_gate {
    unsigned max;
    unsigned used;
} bucket_gate_t;

/* Initialises b full (tokens = cap) at now_us. burst <= 0 picks max(1, rate / 10). */
void bucket_init(bucket_t *b, double rate, double burst, int64_t now_us);

/* Changes rate and burst, keeping the tokens held (capped at the new cap). */
void bucket_set_rate(bucket_t *b, double rate, double burst, int64_t now_us);

/* Microseconds until cost could be taken (0: now). Refills b to now_us first. */
int64_t bucket_wait_us(bucket_t *b, double cost, int64_t now_us);

/*
 * Takes cost from every bucket of levels[0..n) (NULL entries are skipped) and one
 * slot from gate (may be NULL) if all allow it now: returns 0. Otherwise takes nothing
 * and returns the microseconds until the slowest bucket allows it, or -1 when only
 * the gate is full (wait for bucket_gate_release()).
 */
int64_t bucket_take_all(bucket_t *const *levels, size_t n, bucket_gate_t *gate, double cost, int64_t now_us);

/* Returns a slot taken by bucket_take_all(). */
void bucket_gate_release(bucket_gate_t *gate);

/* ---- cron (cron.c) ---- */

#define CRON_EINVAL (-1)  /* malformed expression (reason in the error text) */
#define CRON_EZONE (-2)   /* unknown time zone */
#define CRON_ENONE (-3)   /* no matching time within CRON_HORIZON_DAYS */
#define CRON_HORIZON_DAYS (366 * 8)

typedef struct cron_expr {
    uint64_t minute; /* bit i: minute i matches */
    uint32_t hour;
    uint32_t dom;   /* bits 1..31 */
    uint16_t month; /* bits 1..12 */
    uint8_t dow;    /* bits 0..6, Sunday = 0 (7 is folded into 0) */
    unsigned dom_star : 1;
    unsigned dow_star : 1;
} cron_expr_t;

/*
 * Parses "m h dom mon dow": each field is '*', a number, a range a-b, a step (*\/n or
 * a-b/n), or a comma list of those; months and weekdays also take names (jan, mon).
 * When both dom and dow are restricted a day matches either (Vixie cron). Returns 0,
 * or CRON_EINVAL with a reason in err (errlen bytes, may be NULL).
 */
SCHED_MUSTCHECK int cron_parse(const char *text, cron_expr_t *out, char *err, size_t errlen);

/*
 * The first run strictly after after_utc (epoch seconds) in zone, into *next_utc, and
 * its local wall time "YYYY-MM-DDTHH:MM" into local (17 bytes, may be NULL), which
 * identifies the run. DST: a local time skipped by a spring-forward gap runs at the
 * same distance after the gap's start (02:30 becomes 03:30); a local time repeated
 * by a fall-back runs once, at its first occurrence. Returns 0, CRON_EZONE or CRON_ENONE.
 */
SCHED_MUSTCHECK int cron_next(const cron_expr_t *e, const char *zone, int64_t after_utc, int64_t *next_utc,
                              char local[17]);

/* ---- policy (policy.c) ---- */

/* A queued message inside one scheduler process. */
typedef enum sched_msg_state {
    SCHED_MSG_LEASED = 0, /* leased from the outbox, not yet looked at */
    SCHED_MSG_RECONCILING, /* an earlier attempt's outcome is unknown: asking the provider */
    SCHED_MSG_READY,       /* waiting for tokens in its lane */
    SCHED_MSG_IN_FLIGHT,   /* create request sent */
    SCHED_MSG_DONE,        /* outcome queued for recording; freed after the record */
} sched_msg_state_t;

/* Returns 1 when a message may move from -> to. */
int sched_msg_transition_ok(sched_msg_state_t from, sched_msg_state_t to);

/* Returns a static name of a message state. */
const char *sched_msg_state_name(sched_msg_state_t s);

typedef enum sched_campaign_status {
    SCHED_C_DRAFT = 0,
    SCHED_C_SCHEDULED,
    SCHED_C_RUNNING,
    SCHED_C_PAUSED,
    SCHED_C_COMPLETED,
    SCHED_C_CANCELED,
    SCHED_C_INVALID,
} sched_campaign_status_t;

typedef enum sched_verb { SCHED_START = 0, SCHED_PAUSE, SCHED_RESUME, SCHED_CANCEL, SCHED_VERB_INVALID } sched_verb_t;

/* Parses "draft", "running", ... (SCHED_C_INVALID when unknown). */
sched_campaign_status_t sched_campaign_status_parse(const char *s);

/* Returns the status's name as stored in campaigns.status. */
const char *sched_campaign_status_name(sched_campaign_status_t s);

/* Parses "start", "pause", "resume", "cancel" (SCHED_VERB_INVALID when unknown). */
sched_verb_t sched_verb_parse(const char *s);

/*
 * The campaign state machine: the status after verb in status from. deferred says
 * whether the campaign waits for a start time in the future or a cron schedule
 * (start then leads to scheduled). Returns 0 and sets *to, or SCHED_ESTATE.
 */
SCHED_MUSTCHECK int sched_campaign_transition(sched_campaign_status_t from, sched_verb_t verb, int deferred,
                                              sched_campaign_status_t *to);

/*
 * Retry delay in milliseconds before attempt number attempt + 1 (attempt >= 1 is the
 * attempt that just failed): base * 2^(attempt-1), capped at max, then a uniform
 * jitter into [delay/2, delay] from rand01 in [0, 1).
 */
int64_t sched_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double rand01);

/* What to do with a message after a create request. */
typedef enum sched_action {
    SCHED_ACT_SENT = 0,   /* record sent with the sid */
    SCHED_ACT_RETRY,      /* retry later; nothing was sent */
    SCHED_ACT_RETRY_UNKNOWN, /* retry later, but reconcile first: the request may have been accepted */
    SCHED_ACT_FAIL,       /* terminal failure with the provider's code */
    SCHED_ACT_SUPPRESS,   /* terminal, and add the recipient to suppression (21610) */
    SCHED_ACT_PAUSE,      /* account or configuration broken: fail nothing, stop sending */
} sched_action_t;

/*
 * Decides on a create outcome: verdict and transport details from twilio_result_t,
 * attempts made so far and the limit (a retryable outcome at the limit fails).
 */
sched_action_t sched_decide(const twilio_verdict_t *v, long http_status, int curl_code, int attempts,
                            int max_attempts);

/* Maps a Twilio message status ("delivered", "queued", ...) to an outbox state, or NULL. */
const char *sched_status_to_state(const char *twilio_status);

/* ---- the engine (dispatch.c) ---- */

typedef struct sched sched_t;

typedef struct sched_config {
    const char *conninfo;         /* Postgres; the scheduler opens its own connection (copied) */
    twilio_config_t twilio;       /* copied by sched_new() (strings too) */
    const char *public_url;       /* StatusCallback base; NULL or "": no callbacks requested */
    int64_t campaign_id;          /* > 0: only this campaign (herald campaign run) */
    int include_direct;           /* also send outbox rows without a campaign (replies, forwards) */
    int fire_schedules;           /* start campaigns whose start time is due and fire cron runs */
    int lease_seconds;            /* 0: 30 */
    int max_attempts;             /* 0: 8 */
    int64_t retry_base_ms;        /* 0: 1000 */
    int64_t retry_max_ms;         /* 0: 300000 */
    unsigned account_concurrency; /* requests in flight per Twilio account; 0: 100 */
    double default_burst_s;       /* burst in seconds of rate; 0: 0.1 */
    int quiet_hours;              /* 1: apply quiet hours to campaign messages (default in sched_config_init) */
    int validity_seconds;         /* ValidityPeriod upper bound for campaign messages; 0: 14400 */
    metrics_registry_t *metrics;  /* borrowed, may be NULL */
    const char *owner;            /* lease owner name; NULL: host:pid:random */
    /*
     * Opens a sealed org secret (a bytea column as text, "\x...") into out (outlen bytes,
     * NUL-terminated); returns 0 or -1. The messages of an org with its own Twilio account
     * (orgs.twilio_account_sid and a sealed auth token or API key secret) are sent with
     * it, each account with its own client and concurrency gate; orgs without one use
     * twilio (the environment's). NULL: no secret can be opened, so orgs with their own
     * account send nothing (never under another account). app/org_creds.c provides it.
     */
    int (*open_secret)(void *arg, const char *bytea_text, char *out, size_t outlen);
    void *open_secret_arg;
} sched_config_t;

/* Counters since start, for progress lines, run-due and benches. */
typedef struct sched_stats {
    uint64_t leased, sent, failed, suppressed, retries, reconciled_found, reconciled_missing, deferred,
        canceled, records, bucket_waits;
    size_t in_memory; /* leased and not yet recorded */
    size_t in_flight;
    int idle;          /* nothing due was found in the last full discovery and nothing is in memory */
    int paused_reason; /* the provider refused an account (auth/config), or an org's credentials are
                          unusable: sending with them stopped (the others go on) */
    char last_error[256];
} sched_stats_t;

/* Fills cfg with defaults (twilio from the environment, quiet hours on unless HERALD_QUIET_HOURS=off). */
void sched_config_init(sched_config_t *cfg);

/*
 * Creates a scheduler on loop and starts it: connects, and from then on discovers,
 * leases, sends and records on its own timers. cfg is copied. Returns 0 and sets
 * *out, or SCHED_EINVAL / SCHED_ECONFIG (then nothing was started). Stop with
 * sched_stop().
 */
SCHED_MUSTCHECK int sched_start(uv_loop_t *loop, const sched_config_t *cfg, sched_t **out);

/*
 * Stops leasing, waits for requests in flight and their records, releases the rows
 * still leased (back to the queue), closes the connection and every handle, frees s
 * and then calls done(arg) (may be NULL). Safe to call from a callback; once only.
 */
void sched_stop(sched_t *s, void (*done)(void *arg), void *arg);

/* Copies the counters into *out. */
void sched_get_stats(const sched_t *s, sched_stats_t *out);

/* Asks for a discovery pass at once (after a control change). */
void sched_poke(sched_t *s);

/* ---- SQL shared by the CLI, serve and the engine (store.c) ---- */

/* $1 org, $2 id: status, cron, timezone, start_at epoch (0 if none), start_at > now(). */
extern const char sched_sql_campaign_get[];
/* $1 org, $2 id, $3 from status, $4 to status, $5 next_run_at epoch or NULL: returns t when applied. */
extern const char sched_sql_campaign_set[];
/* $1 id: counts by state, then rate over the last 10 s and 60 s (see campaign status). */
extern const char sched_sql_campaign_counts[];
extern const char sched_sql_campaign_rate[];
/* Status callback: $1 outbox id or NULL, $2 MessageSid, $3 outbox state, $4 error code or NULL. */
extern const char sched_sql_status_update[];
/* $1 outbox id or NULL, $2 MessageSid: org id and sealed auth token of the row's org. */
extern const char sched_sql_status_org[];

/*
 * Applies verb to campaign id of org synchronously-free: computes the transition with
 * sched_campaign_transition() from the status read by the caller and returns the SQL
 * parameters for sched_sql_campaign_set (next_run: epoch text for cron campaigns, or
 * "" for none). Returns 0 or SCHED_ESTATE/SCHED_EINVAL (reason in err).
 */
SCHED_MUSTCHECK int sched_control_plan(const char *status, const char *cron, const char *timezone, int start_future,
                                       sched_verb_t verb, int64_t now_utc, sched_campaign_status_t *to,
                                       int64_t *next_run, char *err, size_t errlen);

#endif
