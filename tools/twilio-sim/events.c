/*
 * The simulator's timeline: status callbacks (sent, then delivered, undelivered or
 * failed) and handset replies, kept in one min-heap on one uv_timer so a million
 * queued messages cost one timer. Callbacks and inbound-SMS webhooks are POSTed
 * with the shared HTTP client, through a bounded queue with retries (see below), and
 * signed exactly as Twilio signs them (X-Twilio-Signature over the URL and the sorted
 * form parameters) with the auth token of the message's account.
 */
#include "sim.h"

#include "common/log.h"
#include "common/xalloc.h"
#include "compliance/keywords.h"
#include "compliance/segments.h"
#include "provider/form.h"
#include "provider/signature.h"

#include <stdlib.h>
#include <string.h>

enum {
    EV_SENT = 1,
    EV_FINAL = 2,
    EV_REPLY = 3,
};

#define MAX_WEBHOOK_PARAMS 24

static void heap_push(sim_t *s, sim_event_t ev)
{
    if (s->nevents == s->events_cap) {
        s->events_cap = s->events_cap ? 2 * s->events_cap : 1024;
        s->events = xrealloc(s->events, s->events_cap * sizeof(*s->events));
    }
    size_t i = s->nevents++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->events[parent].at_ms <= ev.at_ms)
            break;
        s->events[i] = s->events[parent];
        i = parent;
    }
    s->events[i] = ev;
}

static sim_event_t heap_pop(sim_t *s)
{
    sim_event_t top = s->events[0];
    sim_event_t last = s->events[--s->nevents];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const sim_event_t *cur = &last;
        if (l < s->nevents && s->events[l].at_ms < cur->at_ms) {
            m = l;
            cur = &s->events[l];
        }
        if (r < s->nevents && s->events[r].at_ms < cur->at_ms)
            m = r;
        if (m == i)
            break;
        s->events[i] = s->events[m];
        i = m;
    }
    if (s->nevents > 0)
        s->events[i] = last;
    return top;
}

static void on_event_timer(uv_timer_t *t);

static void arm(sim_t *s)
{
    if (s->nevents == 0 || s->stopping) {
        uv_timer_stop(&s->event_timer);
        return;
    }
    int64_t delay = s->events[0].at_ms - sim_now_ms();
    uv_timer_start(&s->event_timer, on_event_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void schedule(sim_t *s, int64_t at, uint64_t seq, int kind)
{
    int earliest = s->nevents == 0 || at < s->events[0].at_ms;
    heap_push(s, (sim_event_t){.at_ms = at, .seq = seq, .kind = kind});
    if (earliest)
        arm(s);
}

static const sim_handset_t *find_handset(const sim_t *s, const char *number)
{
    for (size_t i = 0; i < s->cfg.nhandsets; i++)
        if (strcmp(s->cfg.handsets[i].number, number) == 0)
            return &s->cfg.handsets[i];
    return NULL;
}

void sim_events_message_created(sim_t *s, const sim_msg_t *m)
{
    if (m->status_callback) {
        if (!m->immediate_failed)
            schedule(s, m->sent_ms, m->seq, EV_SENT);
        schedule(s, m->final_ms, m->seq, EV_FINAL);
    }
    const sim_handset_t *h = find_handset(s, m->to);
    if (h && !m->immediate_failed && m->final == SIM_FINAL_DELIVERED)
        schedule(s, m->final_ms + h->delay_ms, m->seq, EV_REPLY);
}

/*
 * Outgoing webhooks (status callbacks and inbound SMS) wait in a FIFO and at most
 * SIM_WEBHOOK_INFLIGHT of them are handed to the HTTP client at a time, so none waits
 * inside curl long enough to time out there. A delivery that fails with no answer
 * (connection refused or reset, timeout), a 5xx or a 429 is tried again after an
 * exponential backoff with jitter, as Twilio does; any other answer is final (a 4xx
 * counts as an error, not a retry). The queue is bounded by the number of webhooks
 * waiting (--callback-queue-max): one that does not fit, or that failed
 * --callback-attempts times, is dropped, logged and counted (callbacks_dropped).
 */
typedef struct webhook webhook_t;
struct webhook {
    webhook_t *next;
    sim_t *sim;
    char *url;
    char *body;
    size_t body_len;
    char sighdr[64];
    unsigned attempts;
    int64_t due_ms;
};

#define WEBHOOK_BACKOFF_BASE_MS 250
#define WEBHOOK_BACKOFF_MAX_MS 30000

static void webhook_free(webhook_t *w)
{
    free(w->url);
    free(w->body);
    free(w);
}

static void webhook_drop(sim_t *s, webhook_t *w, const char *why)
{
    s->stat_callbacks_dropped++;
    log_warn("twilio-sim: webhook to %s dropped after %u attempts: %s", w->url, w->attempts, why);
    webhook_free(w);
}

/* ---- the retry heap: webhooks waiting for their backoff, earliest due first ---- */

static void retry_push(sim_t *s, webhook_t *w)
{
    if (s->nretry == s->retry_cap) {
        s->retry_cap = s->retry_cap ? 2 * s->retry_cap : 256;
        s->retry = xrealloc(s->retry, s->retry_cap * sizeof(*s->retry));
    }
    size_t i = s->nretry++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->retry[parent]->due_ms <= w->due_ms)
            break;
        s->retry[i] = s->retry[parent];
        i = parent;
    }
    s->retry[i] = w;
}

static webhook_t *retry_pop(sim_t *s)
{
    webhook_t *top = s->retry[0];
    webhook_t *last = s->retry[--s->nretry];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t cur = last->due_ms;
        if (l < s->nretry && s->retry[l]->due_ms < cur) {
            m = l;
            cur = s->retry[l]->due_ms;
        }
        if (r < s->nretry && s->retry[r]->due_ms < cur)
            m = r;
        if (m == i)
            break;
        s->retry[i] = s->retry[m];
        i = m;
    }
    if (s->nretry > 0)
        s->retry[i] = last;
    return top;
}

static void pump(sim_t *s);

static void on_retry_timer(uv_timer_t *t)
{
    sim_t *s = t->data;
    int64_t now = sim_now_ms();
    while (s->nretry > 0 && s->retry[0]->due_ms <= now) {
        webhook_t *w = retry_pop(s);
        w->next = NULL;
        if (s->wh_tail)
            s->wh_tail->next = w;
        else
            s->wh_head = w;
        s->wh_tail = w;
    }
    pump(s);
}

static void arm_retry(sim_t *s)
{
    if (s->nretry == 0 || s->stopping || !s->retry_timer_init)
        return;
    int64_t delay = s->retry[0]->due_ms - sim_now_ms();
    uv_timer_start(&s->retry_timer, on_retry_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* ---- delivery ---- */

static void on_webhook_done(const http_response_t *resp, void *arg)
{
    webhook_t *w = arg;
    sim_t *s = w->sim;
    s->webhooks_pending--;
    if (resp->status >= 200 && resp->status < 300) {
        s->stat_callbacks_delivered++;
        s->webhooks_waiting--;
        webhook_free(w);
    } else if (resp->status != 0 && resp->status < 500 && resp->status != 429) {
        /* The receiver answered and refused: Twilio does not retry that either. */
        s->stat_callback_errors++;
        s->webhooks_waiting--;
        log_warn("twilio-sim: webhook %s: HTTP %ld", w->url, resp->status);
        webhook_free(w);
    } else if (s->stopping || !s->client) {
        s->webhooks_waiting--;
        webhook_drop(s, w, "shutting down");
    } else if (w->attempts >= s->cfg.callback_attempts) {
        s->stat_callback_errors++;
        s->webhooks_waiting--;
        webhook_drop(s, w,
                     resp->status ? "receiver kept failing" : (resp->error ? resp->error : "no answer"));
    } else {
        /* Backoff base * 2^(attempts-1), capped, with jitter into [d/2, d]. */
        int64_t d = s->cfg.callback_backoff_ms;
        for (unsigned i = 1; i < w->attempts && d < WEBHOOK_BACKOFF_MAX_MS; i++)
            d *= 2;
        if (d > WEBHOOK_BACKOFF_MAX_MS)
            d = WEBHOOK_BACKOFF_MAX_MS;
        d = d / 2 + (int64_t)(sim_rand01(s) * (double)(d / 2));
        w->due_ms = sim_now_ms() + d;
        s->stat_callback_retries++;
        log_info("twilio-sim: webhook %s: %ld %s; retrying in %lld ms", w->url, resp->status,
                 resp->error ? resp->error : "", (long long)d);
        int earliest = s->nretry == 0 || w->due_ms < s->retry[0]->due_ms;
        retry_push(s, w);
        if (earliest)
            arm_retry(s);
    }
    pump(s);
}

/* Hands queued webhooks to the client while fewer than SIM_WEBHOOK_INFLIGHT are out. */
static void pump(sim_t *s)
{
    while (s->wh_head && s->webhooks_pending < SIM_WEBHOOK_INFLIGHT && s->client && !s->stopping) {
        webhook_t *w = s->wh_head;
        s->wh_head = w->next;
        if (!s->wh_head)
            s->wh_tail = NULL;
        w->next = NULL;
        const char *headers[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8", w->sighdr,
                                 "User-Agent: TwilioProxy/1.1", "Accept: */*", NULL};
        w->attempts++;
        if (http_client_request(s->client, "POST", w->url, headers, w->body, w->body_len, NULL,
                                on_webhook_done, w) != 0) {
            s->webhooks_waiting--;
            webhook_drop(s, w, "cannot start the request");
            continue;
        }
        s->webhooks_pending++;
        s->stat_callbacks++;
    }
    arm_retry(s);
}

/* Queues params as a form POST to url, signed with the auth token of account. */
static void post_signed(sim_t *s, unsigned account, const char *url, const twilio_param_t *params, size_t n)
{
    if (!s->client || s->stopping)
        return;
    char sig[29];
    if (twilio_signature_compute(s->cfg.accounts[account].secret, url, params, n, sig) != 0) {
        log_warn("twilio-sim: cannot sign for %s", url);
        return;
    }
    buf_t body;
    buf_init(&body, 256 * 1024);
    for (size_t i = 0; i < n; i++)
        if (twilio_form_add(&body, params[i].name, params[i].value) != 0)
            break;
    webhook_t *w = xcalloc(1, sizeof(*w));
    w->sim = s;
    w->url = xstrdup(url);
    w->body_len = body.len;
    w->body = xmalloc(body.len + 1);
    memcpy(w->body, buf_str(&body), body.len + 1);
    buf_close(&body);
    snprintf(w->sighdr, sizeof(w->sighdr), "X-Twilio-Signature: %s", sig);
    if (s->webhooks_waiting >= s->cfg.callback_queue_max) {
        webhook_drop(s, w, "queue full (--callback-queue-max)");
        return;
    }
    s->webhooks_waiting++;
    if (s->wh_tail)
        s->wh_tail->next = w;
    else
        s->wh_head = w;
    s->wh_tail = w;
    pump(s);
}

static void status_callback(sim_t *s, const sim_msg_t *m, int final)
{
    const char *status = final ? sim_msg_status(m, m->final_ms) : "sent";
    char err[16];
    twilio_param_t p[MAX_WEBHOOK_PARAMS];
    size_t n = 0;
    p[n++] = (twilio_param_t){"AccountSid", s->cfg.accounts[m->account].sid};
    p[n++] = (twilio_param_t){"ApiVersion", SIM_API_VERSION};
    p[n++] = (twilio_param_t){"From", m->from ? m->from : ""};
    p[n++] = (twilio_param_t){"MessageSid", m->sid};
    p[n++] = (twilio_param_t){"MessageStatus", status};
    p[n++] = (twilio_param_t){"SmsSid", m->sid};
    p[n++] = (twilio_param_t){"SmsStatus", status};
    p[n++] = (twilio_param_t){"To", m->to};
    if (m->msid)
        p[n++] = (twilio_param_t){"MessagingServiceSid", m->msid};
    if (final && m->final != SIM_FINAL_DELIVERED) {
        snprintf(err, sizeof(err), "%d", m->error_code);
        p[n++] = (twilio_param_t){"ErrorCode", err};
    }
    post_signed(s, m->account, m->status_callback, p, n);
}

static void handset_reply(sim_t *s, const sim_msg_t *m)
{
    const sim_handset_t *h = find_handset(s, m->to);
    if (!h || !m->from)
        return;
    const char *text = NULL;
    if (h->stop_ratio > 0 && sim_rand01(s) < h->stop_ratio)
        text = "STOP";
    else if (h->reply)
        text = h->reply;
    if (text)
        sim_inbound(s, m->account, m->to, m->from, text);
}

static void on_event_timer(uv_timer_t *t)
{
    sim_t *s = t->data;
    int64_t now = sim_now_ms();
    while (s->nevents > 0 && s->events[0].at_ms <= now) {
        sim_event_t ev = heap_pop(s);
        const sim_msg_t *m = sim_store_by_seq(s, ev.seq);
        if (!m)
            continue;
        switch (ev.kind) {
        case EV_SENT:
            status_callback(s, m, 0);
            break;
        case EV_FINAL:
            status_callback(s, m, 1);
            break;
        case EV_REPLY:
            handset_reply(s, m);
            break;
        }
    }
    arm(s);
}

void sim_inbound(sim_t *s, unsigned account, const char *from, const char *to, const char *body)
{
    kw_result_t kw;
    keywords_classify(body, strlen(body), &kw);
    if (kw.cls == KW_OPT_OUT)
        sim_set_opt_out(s, from, to, 1);
    else if (kw.cls == KW_OPT_IN)
        sim_set_opt_out(s, from, to, 0);

    sim_msg_t *m = sim_store_add(s);
    sim_msg_set_strings(m, from, to, body, NULL, NULL);
    m->account = account;
    sms_info_t info;
    m->segments = sms_analyze(body, strlen(body), 0, &info) == 0 ? info.segments : 1;
    m->inbound = 1;
    m->created_ms = sim_now_ms();
    m->send_ms = m->sent_ms = m->final_ms = m->created_ms;
    sim_ledger_write(s, m, 0);
    if (!s->cfg.inbound_url)
        return;

    char segs[16];
    snprintf(segs, sizeof(segs), "%u", m->segments);
    twilio_param_t p[] = {
        {"ToCountry", "US"},
        {"ToState", ""},
        {"SmsMessageSid", m->sid},
        {"NumMedia", "0"},
        {"ToCity", ""},
        {"FromZip", ""},
        {"SmsSid", m->sid},
        {"FromState", ""},
        {"SmsStatus", "received"},
        {"FromCity", ""},
        {"Body", body},
        {"FromCountry", "US"},
        {"To", to},
        {"ToZip", ""},
        {"NumSegments", segs},
        {"MessageSid", m->sid},
        {"AccountSid", s->cfg.accounts[account].sid},
        {"From", from},
        {"ApiVersion", SIM_API_VERSION},
    };
    post_signed(s, account, s->cfg.inbound_url, p, sizeof(p) / sizeof(p[0]));
}

void sim_events_init(sim_t *s)
{
    uv_timer_init(s->loop, &s->event_timer);
    s->event_timer.data = s;
    uv_timer_init(s->loop, &s->retry_timer);
    s->retry_timer.data = s;
    s->retry_timer_init = 1;
    if (s->cfg.callback_queue_max == 0)
        s->cfg.callback_queue_max = SIM_WEBHOOK_QUEUE_MAX;
    if (s->cfg.callback_attempts == 0)
        s->cfg.callback_attempts = SIM_WEBHOOK_ATTEMPTS;
    if (s->cfg.callback_backoff_ms == 0)
        s->cfg.callback_backoff_ms = WEBHOOK_BACKOFF_BASE_MS;
    http_client_config_t cfg = {
        .max_connections = 64, .max_host_connections = 32, .timeout_ms = 10000, .connect_timeout_ms = 3000};
    if (http_client_new(s->loop, &cfg, &s->client) != 0) {
        log_warn("twilio-sim: no HTTP client; callbacks and webhooks disabled");
        s->client = NULL;
    }
}

size_t sim_events_stop(sim_t *s)
{
    size_t left = s->webhooks_waiting - s->webhooks_pending;
    while (s->wh_head) {
        webhook_t *w = s->wh_head;
        s->wh_head = w->next;
        webhook_free(w);
    }
    s->wh_tail = NULL;
    while (s->nretry > 0)
        webhook_free(s->retry[--s->nretry]);
    free(s->retry);
    s->retry = NULL;
    s->retry_cap = 0;
    s->webhooks_waiting = s->webhooks_pending;
    s->stat_callbacks_dropped += left;
    return left;
}

void sim_events_close(sim_t *s)
{
    free(s->events);
    s->events = NULL;
    s->nevents = 0;
}
