/*
 * The scheduler's decisions, as pure functions: which message and campaign state
 * transitions are allowed, how long to wait before a retry, what a provider
 * outcome means for the message, and what a control verb does to a campaign.
 * The engine and the control commands call these and nothing else decides.
 */
#include "scheduler/scheduler.h"

#include <stdio.h>
#include <string.h>

/* Error codes with which a retry is pointless even though Twilio calls them retryable. */
#define CURLE_COULDNT_CONNECT_ 7
#define CURLE_COULDNT_RESOLVE_HOST_ 6

int sched_msg_transition_ok(sched_msg_state_t from, sched_msg_state_t to)
{
    switch (from) {
    case SCHED_MSG_LEASED:
        return to == SCHED_MSG_RECONCILING || to == SCHED_MSG_READY || to == SCHED_MSG_DONE;
    case SCHED_MSG_RECONCILING:
        return to == SCHED_MSG_READY || to == SCHED_MSG_DONE;
    case SCHED_MSG_READY:
        return to == SCHED_MSG_IN_FLIGHT || to == SCHED_MSG_DONE;
    case SCHED_MSG_IN_FLIGHT:
        return to == SCHED_MSG_DONE;
    case SCHED_MSG_DONE:
        return 0;
    }
    return 0;
}

const char *sched_msg_state_name(sched_msg_state_t s)
{
    static const char *const names[] = {"leased", "reconciling", "ready", "in-flight", "done"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static const char *const status_names[] = {"draft", "scheduled", "running", "paused", "completed", "canceled"};

sched_campaign_status_t sched_campaign_status_parse(const char *s)
{
    for (int i = 0; s && i < SCHED_C_INVALID; i++)
        if (strcmp(s, status_names[i]) == 0)
            return (sched_campaign_status_t)i;
    return SCHED_C_INVALID;
}

const char *sched_campaign_status_name(sched_campaign_status_t s)
{
    return (unsigned)s < SCHED_C_INVALID ? status_names[s] : "invalid";
}

sched_verb_t sched_verb_parse(const char *s)
{
    static const char *const verbs[] = {"start", "pause", "resume", "cancel"};
    for (int i = 0; s && i < SCHED_VERB_INVALID; i++)
        if (strcmp(s, verbs[i]) == 0)
            return (sched_verb_t)i;
    return SCHED_VERB_INVALID;
}

int sched_campaign_transition(sched_campaign_status_t from, sched_verb_t verb, int deferred,
                              sched_campaign_status_t *to)
{
    sched_campaign_status_t t = SCHED_C_INVALID;

    switch (verb) {
    case SCHED_START:
        if (from == SCHED_C_DRAFT)
            t = deferred ? SCHED_C_SCHEDULED : SCHED_C_RUNNING;
        else if (from == SCHED_C_SCHEDULED && !deferred)
            t = SCHED_C_RUNNING;
        break;
    case SCHED_PAUSE:
        if (from == SCHED_C_RUNNING || from == SCHED_C_SCHEDULED)
            t = SCHED_C_PAUSED;
        break;
    case SCHED_RESUME:
        if (from == SCHED_C_PAUSED)
            t = SCHED_C_RUNNING;
        break;
    case SCHED_CANCEL:
        if (from == SCHED_C_DRAFT || from == SCHED_C_SCHEDULED || from == SCHED_C_RUNNING || from == SCHED_C_PAUSED)
            t = SCHED_C_CANCELED;
        break;
    case SCHED_VERB_INVALID:
        break;
    }
    if (t == SCHED_C_INVALID)
        return SCHED_ESTATE;
    *to = t;
    return 0;
}

int64_t sched_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double rand01)
{
    int64_t d = base_ms;

    if (attempt < 1)
        attempt = 1;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    if (rand01 < 0)
        rand01 = 0;
    if (rand01 >= 1)
        rand01 = 0.999999;
    return d / 2 + (int64_t)((double)(d - d / 2) * rand01);
}

sched_action_t sched_decide(const twilio_verdict_t *v, long http_status, int curl_code, int attempts,
                            int max_attempts)
{
    int unknown;

    if (v->outcome == TWILIO_OUTCOME_OK)
        return SCHED_ACT_SENT;
    if (v->pause)
        return SCHED_ACT_PAUSE;
    if (v->outcome == TWILIO_OUTCOME_TERMINAL)
        return v->suppress ? SCHED_ACT_SUPPRESS : SCHED_ACT_FAIL;
    /*
     * Retryable. Twilio may have accepted the message when the transfer broke after
     * the request was written (reset, timeout, lost response) or when it answered 5xx;
     * only a refused connection and a 429 prove nothing was created.
     */
    unknown = 1;
    if (curl_code == 0 && (http_status == 429 || (http_status >= 400 && http_status < 500)))
        unknown = 0;
    if (curl_code == CURLE_COULDNT_CONNECT_ || curl_code == CURLE_COULDNT_RESOLVE_HOST_)
        unknown = 0;
    if (attempts >= max_attempts && !unknown)
        return SCHED_ACT_FAIL;
    return unknown ? SCHED_ACT_RETRY_UNKNOWN : SCHED_ACT_RETRY;
}

const char *sched_status_to_state(const char *st)
{
    static const struct {
        const char *twilio, *state;
    } map[] = {
        {"accepted", "sent"},       {"scheduled", "sent"},     {"queued", "sent"},   {"sending", "sent"},
        {"sent", "sent"},           {"delivered", "delivered"}, {"read", "delivered"}, {"undelivered", "undelivered"},
        {"failed", "failed"},       {"canceled", "canceled"},
    };
    for (size_t i = 0; st && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(st, map[i].twilio) == 0)
            return map[i].state;
    return NULL;
}

int sched_control_plan(const char *status, const char *cron, const char *timezone, int start_future,
                       sched_verb_t verb, int64_t now_utc, sched_campaign_status_t *to, int64_t *next_run,
                       char *err, size_t errlen)
{
    sched_campaign_status_t from = sched_campaign_status_parse(status);
    int has_cron = cron && *cron;
    cron_expr_t ce;

    *next_run = 0;
    if (from == SCHED_C_INVALID || verb == SCHED_VERB_INVALID) {
        snprintf(err, errlen, "unknown status or verb");
        return SCHED_EINVAL;
    }
    if (sched_campaign_transition(from, verb, has_cron || start_future, to) != 0) {
        static const char *const vn[] = {"start", "pause", "resume", "cancel"};
        snprintf(err, errlen, "cannot %s a campaign that is %s", vn[verb], status);
        return SCHED_ESTATE;
    }
    if (has_cron && *to == SCHED_C_SCHEDULED) {
        char cerr[128];
        if (cron_parse(cron, &ce, cerr, sizeof(cerr)) != 0) {
            snprintf(err, errlen, "cron: %s", cerr);
            return SCHED_EINVAL;
        }
        if (cron_next(&ce, timezone && *timezone ? timezone : "UTC", now_utc, next_run, NULL) != 0) {
            snprintf(err, errlen, "cron: no next run in zone %s", timezone ? timezone : "UTC");
            return SCHED_EINVAL;
        }
    }
    return 0;
}
