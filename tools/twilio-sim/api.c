/*
 * The simulator's HTTP API: Twilio's Messages resource (create, fetch, list) with
 * Basic auth, Twilio's error bodies and magic test numbers, per-sender queues, the
 * account concurrency limit and the injected faults; plus /sim/inbound to inject
 * an inbound SMS and /sim/stats for tests.
 *
 * Every answer goes through respond(), which applies the injected latency (the
 * request is held on a timer, counting against the concurrency limit meanwhile) and
 * the "response lost" fault (the connection is reset instead of answered).
 */
#include "sim.h"

#include "common/log.h"
#include "common/xalloc.h"
#include "compliance/segments.h"
#include "http/form.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ACCOUNT_PREFIX "/" SIM_API_VERSION "/Accounts/"
#define MAX_PAGE_SIZE 1000
#define DEFAULT_PAGE_SIZE 50

typedef struct pending {
    uv_timer_t timer;
    sim_t *sim;
    http_request_t *req;
    int status;
    int reset; /* answer with a connection reset */
    char *body;
    size_t body_len;
    const char *const *headers;
} pending_t;

static const char *const json_headers_none[] = {NULL};
static const char *const auth_headers[] = {"WWW-Authenticate: Basic realm=\"Twilio API\"", NULL};

static void pending_closed(uv_handle_t *h)
{
    pending_t *p = h->data;
    free(p->body);
    free(p);
}

static void finish(sim_t *s, http_request_t *req, int status, const char *const *headers, const char *body,
                   size_t len, int reset)
{
    s->inflight_api--;
    if (reset)
        http_request_reset(req);
    else
        http_respond(req, status, "application/json; charset=utf-8", headers, body, len);
}

static void on_pending_timer(uv_timer_t *t)
{
    pending_t *p = t->data;
    finish(p->sim, p->req, p->status, p->headers, p->body, p->body_len, p->reset);
    uv_close((uv_handle_t *)&p->timer, pending_closed);
}

/* Answers now or after the configured latency; reset simulates a lost response. */
static void respond(sim_t *s, http_request_t *req, int status, const char *const *headers, const char *body,
                    size_t len, int reset)
{
    unsigned delay = s->cfg.latency_ms;
    if (s->cfg.latency_jitter_ms)
        delay += (unsigned)(sim_rand(s) % (s->cfg.latency_jitter_ms + 1));
    if (delay == 0 || s->stopping) {
        finish(s, req, status, headers, body, len, reset);
        return;
    }
    pending_t *p = xcalloc(1, sizeof(*p));
    p->sim = s;
    p->req = req;
    p->status = status;
    p->reset = reset;
    p->headers = headers;
    p->body = xmalloc(len + 1);
    memcpy(p->body, body, len);
    p->body_len = len;
    uv_timer_init(s->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_pending_timer, delay, 0);
}

static void respond_buf(sim_t *s, http_request_t *req, int status, buf_t *b, int reset)
{
    respond(s, req, status, json_headers_none, b->data ? b->data : "", b->len, reset);
}

/* Twilio's error body: {"code","message","more_info","status"}. */
static void respond_error(sim_t *s, http_request_t *req, int status, int code, const char *message)
{
    buf_t b;
    buf_init(&b, 16 * 1024);
    int rc = buf_printf(&b, "{\"code\":%d,\"message\":", code);
    rc |= sim_json_str(&b, message);
    rc |= buf_printf(&b, ",\"more_info\":\"https://www.twilio.com/docs/errors/%d\",\"status\":%d}", code,
                     status);
    (void)rc;
    respond(s, req, status, status == 401 ? auth_headers : json_headers_none, b.data, b.len, 0);
    buf_close(&b);
}

static void respond_errorf(sim_t *s, http_request_t *req, int status, int code, const char *fmt,
                           const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a ? a : "", b ? b : "");
    respond_error(s, req, status, code, msg);
}

/* ---- auth and common checks ---- */

/* The account whose credentials (auth token, or an API key of the main account) the request carries, or -1.
 */
static int authorized(sim_t *s, http_request_t *req)
{
    const char *h = http_request_header(req, "Authorization");
    if (!h || strncasecmp(h, "Basic ", 6) != 0)
        return -1;
    h += 6;
    while (*h == ' ')
        h++;
    for (size_t i = 0; i < s->cfg.naccounts; i++)
        if (strcmp(h, s->basic_accounts[i]) == 0)
            return (int)i;
    for (size_t i = 0; i < s->cfg.napi_keys; i++)
        if (strcmp(h, s->basic_keys[i]) == 0)
            return 0;
    return -1;
}

/*
 * Auth, account and concurrency checks shared by the Messages endpoints: returns the
 * account (index into cfg.accounts) when the request may go on, else -1 after
 * answering. Credentials of one account do not open another's resources (404, as
 * Twilio answers for an account that is not yours). The concurrency limit counts
 * the requests of every account together.
 */
static int api_enter(sim_t *s, http_request_t *req)
{
    s->inflight_api++;
    int account = authorized(s, req);
    if (account < 0) {
        respond_error(s, req, 401, 20003, "Authenticate");
        return -1;
    }
    const char *acct = http_request_param(req, "AccountSid");
    if (!acct || strcmp(acct, s->cfg.accounts[account].sid) != 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "The requested resource %.500s was not found", req->path);
        respond_error(s, req, 404, 20404, msg);
        return -1;
    }
    if (s->cfg.concurrency && s->inflight_api > s->cfg.concurrency) {
        respond_error(s, req, 429, 20429, "Too Many Requests");
        return -1;
    }
    return account;
}

int sim_opted_out(sim_t *s, const char *to, const char *from)
{
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", to, from);
    return sim_strmap_get(s->optouts, key, 0) != NULL;
}

void sim_set_opt_out(sim_t *s, const char *handset, const char *sender, int out)
{
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", handset, sender);
    if (out)
        (void)sim_strmap_get(s->optouts, key, 1);
    else
        (void)sim_strmap_del(s->optouts, key);
}

static int valid_e164(const char *p)
{
    if (p[0] != '+' || p[1] < '1' || p[1] > '9')
        return 0;
    size_t n = 0;
    for (p++; *p; p++, n++)
        if (*p < '0' || *p > '9')
            return 0;
    return n >= 8 && n <= 15;
}

/* Segments per second for a sender, by number kind. */
static double sender_mps(const sim_t *s, const char *from)
{
    if (s->cfg.mps_override > 0)
        return s->cfg.mps_override;
    size_t n = strlen(from);
    int digits_only = n > 0;
    for (size_t i = 0; i < n; i++)
        digits_only &= from[i] >= '0' && from[i] <= '9';
    if (digits_only && n >= 5 && n <= 6)
        return s->cfg.mps_short;
    static const char *const tollfree[] = {"+1800", "+1833", "+1844", "+1855", "+1866", "+1877", "+1888"};
    for (size_t i = 0; i < sizeof(tollfree) / sizeof(tollfree[0]); i++)
        if (strncmp(from, tollfree[i], 5) == 0)
            return s->cfg.mps_tollfree;
    return s->cfg.mps_long;
}

typedef struct magic {
    const char *number;
    int code;
    const char *message;
} magic_t;

static const magic_t magic_from[] = {
    {"+15005550001", 21212,
     "The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID."},
    {"+15005550007", 21606,
     "The From phone number %s is not a valid, SMS-capable inbound phone number or short code for your "
     "account."},
    {"+15005550008", 21611, "This 'From' number %s has exceeded the maximum number of queued messages."},
};

static const magic_t magic_to[] = {
    {"+15005550001", 21211, "The 'To' number %s is not a valid phone number."},
    {"+15005550002", 21612,
     "The 'To' phone number: %s, is not currently reachable using the 'From' phone number: %s via SMS."},
    {"+15005550003", 21408,
     "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s."},
    {"+15005550004", 21610, "Attempt to send to unsubscribed recipient"},
    {"+15005550009", 21614, "'To' number %s is not a valid mobile number"},
};

static const magic_t *find_magic(const magic_t *tbl, size_t n, const char *number)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tbl[i].number, number) == 0)
            return &tbl[i];
    return NULL;
}

/* A stable pool number for a Messaging Service, standing in for the sender it would pick. */
static void service_sender(const char *msid, char out[16])
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = msid; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(out, 16, "+1555%07u", (unsigned)(h % 10000000u));
}

static void schedule(sim_t *s, sim_msg_t *m, int64_t now, const char *sender)
{
    int64_t *next_free = sim_strmap_get(s->senders, sender, 1);
    double mps = sender_mps(s, sender);
    int64_t start = *next_free > now ? *next_free : now;
    if (s->cfg.queue_max_s && start - now > (int64_t)s->cfg.queue_max_s * 1000) {
        m->immediate_failed = 1;
        m->error_code = 30001;
        m->send_ms = m->sent_ms = m->final_ms = now;
        m->final = SIM_FINAL_FAILED;
        return;
    }
    int64_t dur = (int64_t)((double)m->segments * 1000.0 / (mps > 0 ? mps : 1.0));
    *next_free = start + dur;
    m->send_ms = start;
    m->sent_ms = start + s->cfg.sending_ms;
    m->final_ms = m->sent_ms + s->cfg.delivery_ms;
    double r = sim_rand01(s);
    if (r < s->cfg.ratio_failed) {
        m->final = SIM_FINAL_FAILED;
        m->error_code = 30008;
    } else if (r < s->cfg.ratio_failed + s->cfg.ratio_undelivered) {
        m->final = SIM_FINAL_UNDELIVERED;
        m->error_code = 30003;
    } else {
        m->final = SIM_FINAL_DELIVERED;
    }
}

static int parse_body_form(sim_t *s, http_request_t *req, http_form_t *form)
{
    http_form_limits_t lim = {.max_fields = 128, .max_field_len = 64 * 1024, .max_input = 1024 * 1024};
    http_form_error_t err;
    int rc = http_form_parse(req->body, req->body_len, &lim, req->arena, form, &err);
    if (rc != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Unable to parse request body: %s at byte %zu", err.reason, err.offset);
        respond_error(s, req, 400, 20001, msg);
    }
    return rc;
}

/* ---- handlers ---- */

static void on_create(http_request_t *req, void *arg)
{
    sim_t *s = arg;
    int account = api_enter(s, req);
    if (account < 0)
        return;
    if (s->cfg.drop_connection > 0 && sim_rand01(s) < s->cfg.drop_connection) {
        finish(s, req, 0, NULL, NULL, 0, 1);
        return;
    }
    if (s->cfg.fail_429 > 0 && sim_rand01(s) < s->cfg.fail_429) {
        respond_error(s, req, 429, 20429, "Too Many Requests");
        return;
    }
    if (s->cfg.fail_500 > 0 && sim_rand01(s) < s->cfg.fail_500) {
        respond_error(s, req, 500, 20500, "An internal server error has occurred");
        return;
    }
    http_form_t form;
    if (parse_body_form(s, req, &form) != 0)
        return;
    const char *to = http_form_get(&form, "To");
    const char *from = http_form_get(&form, "From");
    const char *msid = http_form_get(&form, "MessagingServiceSid");
    const char *body = http_form_get(&form, "Body");
    const char *cb = http_form_get(&form, "StatusCallback");
    const char *smart = http_form_get(&form, "SmartEncoded");
    const char *validity = http_form_get(&form, "ValidityPeriod");
    size_t nmedia = http_form_count(&form, "MediaUrl");
    if (from && !*from)
        from = NULL;
    if (msid && !*msid)
        msid = NULL;

    if (!to || !*to) {
        respond_error(s, req, 400, 21604, "A 'To' phone number is required.");
        return;
    }
    if (!from && !msid) {
        respond_error(s, req, 400, 21603, "A 'From' phone number is required.");
        return;
    }
    if ((!body || !*body) && nmedia == 0) {
        respond_error(s, req, 400, 21602, "Message body is required.");
        return;
    }
    if (nmedia > 10) {
        respond_error(s, req, 400, 21623, "Number of media files exceeds allowed limit.");
        return;
    }
    if (validity) {
        char *end;
        long v = strtol(validity, &end, 10);
        if (*end || v < 1 || v > 36000) {
            respond_error(s, req, 400, 21609,
                          "Invalid ValidityPeriod value. Must be between 1 and 36000 seconds.");
            return;
        }
    }
    if (from) {
        const magic_t *mf = find_magic(magic_from, sizeof(magic_from) / sizeof(magic_from[0]), from);
        if (mf) {
            respond_errorf(s, req, 400, mf->code, mf->message, from, NULL);
            return;
        }
        if (s->cfg.test_credentials && strcmp(from, "+15005550006") != 0) {
            respond_errorf(s, req, 400, 21606, magic_from[1].message, from, NULL);
            return;
        }
    } else if (s->cfg.test_credentials) {
        respond_error(s, req, 400, 21606, "Messaging Services are not supported with test credentials.");
        return;
    }
    const magic_t *mt = find_magic(magic_to, sizeof(magic_to) / sizeof(magic_to[0]), to);
    if (mt) {
        respond_errorf(s, req, 400, mt->code, mt->message, to, from ? from : msid);
        return;
    }
    if (!valid_e164(to)) {
        respond_errorf(s, req, 400, 21211, "The 'To' number %s is not a valid phone number.", to, NULL);
        return;
    }
    sms_info_t info;
    const char *text = body ? body : "";
    unsigned flags = smart && strcasecmp(smart, "true") == 0 ? SMS_SMART_ENCODING : 0;
    if (sms_analyze(text, strlen(text), flags, &info) != 0) {
        /* Not UTF-8: count bytes as UCS-2 units, which is what a lenient gateway would bill. */
        memset(&info, 0, sizeof(info));
        info.units = strlen(text);
        info.segments = info.units <= SMS_UCS2_SINGLE
                            ? 1
                            : (unsigned)((info.units + SMS_UCS2_MULTI - 1) / SMS_UCS2_MULTI);
        info.over_limit = info.units > SMS_MAX_UNITS;
    }
    if (info.over_limit) {
        respond_error(s, req, 400, 21617, "The concatenated message body exceeds the 1600 character limit.");
        return;
    }
    char pool[16];
    const char *sender = from;
    if (!sender) {
        service_sender(msid, pool);
        sender = pool;
    }
    if (sim_opted_out(s, to, sender)) {
        respond_error(s, req, 400, 21610, "Attempt to send to unsubscribed recipient");
        return;
    }

    int64_t now = sim_now_ms();
    sim_msg_t *m = sim_store_add(s);
    sim_msg_set_strings(m, sender, to, text, msid, cb && *cb ? cb : NULL);
    m->account = (unsigned)account;
    m->segments = info.segments ? info.segments : 1;
    m->num_media = (unsigned)nmedia;
    m->created_ms = now;
    schedule(s, m, now, sender);
    s->stat_created++;

    int lost = s->cfg.lose_response > 0 && sim_rand01(s) < s->cfg.lose_response;
    sim_ledger_write(s, m, lost);
    if (!s->cfg.test_credentials)
        sim_events_message_created(s, m);
    if (lost) {
        s->stat_lost++;
        respond(s, req, 0, NULL, "", 0, 1);
        return;
    }
    /* One scratch buffer serves every create: respond() copies what it keeps. */
    buf_reset(&s->scratch);
    if (sim_msg_json(s, m, now, &s->scratch) != 0) {
        respond_error(s, req, 500, 20500, "An internal server error has occurred");
        return;
    }
    respond_buf(s, req, 201, &s->scratch, 0);
}

static void on_fetch(http_request_t *req, void *arg)
{
    sim_t *s = arg;
    int account = api_enter(s, req);
    if (account < 0)
        return;
    const char *sid = http_request_param(req, "MessageSid");
    sim_msg_t *m = sid ? sim_store_find(s, sid) : NULL;
    if (!m || m->account != (unsigned)account) {
        char msg[600];
        snprintf(msg, sizeof(msg), "The requested resource %.500s was not found", req->path);
        respond_error(s, req, 404, 20404, msg);
        return;
    }
    buf_t b;
    buf_init(&b, 64 * 1024);
    int rc = sim_msg_json(s, m, sim_now_ms(), &b);
    (void)rc;
    respond_buf(s, req, 200, &b, 0);
    buf_close(&b);
}

/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS[Z|+00:00]" into ms; *date_only says which. */
static int parse_date(const char *v, int64_t *ms, int *date_only)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(v, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
        return -1;
    *date_only = v[n] == '\0';
    if (!*date_only) {
        int n2 = 0;
        if (sscanf(v + n, "T%2d:%2d:%2d%n", &h, &mi, &sec, &n2) != 3)
            return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    *ms = (int64_t)timegm(&tm) * 1000;
    return 0;
}

typedef struct list_filter {
    const char *to, *from;
    int has_on, has_before, has_after;
    int64_t on_lo, on_hi, before, after;
} list_filter_t;

static int filter_match(const list_filter_t *f, const sim_msg_t *m, int64_t now)
{
    if (f->to && (!m->to || strcmp(f->to, m->to) != 0))
        return 0;
    if (f->from && (!m->from || strcmp(f->from, m->from) != 0))
        return 0;
    if (f->has_on || f->has_before || f->has_after) {
        int sent = m->inbound || (!m->immediate_failed && now >= m->sent_ms);
        if (!sent)
            return 0;
        int64_t t = (m->inbound ? m->created_ms : m->sent_ms) / 1000 * 1000;
        if (f->has_on && (t < f->on_lo || t > f->on_hi))
            return 0;
        if (f->has_before && t > f->before)
            return 0;
        if (f->has_after && t < f->after)
            return 0;
    }
    return 1;
}

static int add_query(buf_t *b, const char *name, const char *value)
{
    char enc[1024];
    if (!value || http_form_encode(value, enc, sizeof(enc)) < 0)
        return 0;
    return buf_printf(b, "%s=%s&", name, enc);
}

static void on_list(http_request_t *req, void *arg)
{
    sim_t *s = arg;
    int account = api_enter(s, req);
    if (account < 0)
        return;
    http_form_t q;
    http_form_error_t err;
    if (http_form_parse(req->query, strlen(req->query), NULL, req->arena, &q, &err) != 0) {
        respond_error(s, req, 400, 20001, "Unable to parse the query string");
        return;
    }
    list_filter_t f = {.to = http_form_get(&q, "To"), .from = http_form_get(&q, "From")};
    const char *on = http_form_get(&q, "DateSent");
    const char *before = http_form_get(&q, "DateSent<");
    const char *after = http_form_get(&q, "DateSent>");
    int date_only;
    int64_t t;
    if (on) {
        if (parse_date(on, &t, &date_only) != 0)
            goto bad_date;
        f.has_on = 1;
        f.on_lo = t;
        f.on_hi = date_only ? t + 86399999 : t;
    }
    if (before) {
        if (parse_date(before, &t, &date_only) != 0)
            goto bad_date;
        f.has_before = 1;
        f.before = date_only ? t + 86399999 : t;
    }
    if (after) {
        if (parse_date(after, &t, &date_only) != 0)
            goto bad_date;
        f.has_after = 1;
        f.after = t;
    }
    long page_size = DEFAULT_PAGE_SIZE, page = 0;
    const char *ps = http_form_get(&q, "PageSize");
    const char *pg = http_form_get(&q, "Page");
    const char *token = http_form_get(&q, "PageToken");
    if (ps) {
        char *end;
        page_size = strtol(ps, &end, 10);
        if (*end || page_size < 1)
            page_size = DEFAULT_PAGE_SIZE;
        if (page_size > MAX_PAGE_SIZE)
            page_size = MAX_PAGE_SIZE;
    }
    if (pg) {
        char *end;
        page = strtol(pg, &end, 10);
        if (*end || page < 0)
            page = 0;
    }

    int64_t now = sim_now_ms();
    uint64_t oldest = s->next_seq > s->cfg.max_messages ? s->next_seq - s->cfg.max_messages : 1;
    uint64_t seq = s->next_seq - 1;
    long skip = 0;
    if (token && strncmp(token, "PA", 2) == 0) {
        sim_msg_t *anchor = sim_store_find(s, token + 2);
        seq = anchor ? anchor->seq - 1 : 0;
    } else {
        skip = page * page_size;
    }

    buf_t b;
    buf_init(&b, 64 * 1024 * 1024);
    buf_t filt;
    buf_init(&filt, 16 * 1024);
    int rc = add_query(&filt, "To", f.to) | add_query(&filt, "From", f.from) |
             add_query(&filt, "DateSent", on) | add_query(&filt, "DateSent%3C", before) |
             add_query(&filt, "DateSent%3E", after);
    const char *base = ACCOUNT_PREFIX;
    const char *acct = s->cfg.accounts[account].sid;
    rc |= buf_puts(&b, "{\"messages\":[");
    long n = 0;
    sim_msg_t *last = NULL;
    int more = 0;
    for (; seq >= oldest && seq > 0; seq--) {
        sim_msg_t *m = sim_store_by_seq(s, seq);
        if (!m || m->account != (unsigned)account || !filter_match(&f, m, now))
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        if (n == page_size) {
            more = 1;
            break;
        }
        if (n > 0)
            rc |= buf_append(&b, ",", 1);
        rc |= sim_msg_json(s, m, now, &b);
        last = m;
        n++;
    }
    const char *fq = buf_str(&filt);
    rc |= buf_printf(
        &b,
        "],\"end\":%ld,\"first_page_uri\":\"%s%s/Messages.json?%sPageSize=%ld&Page=0\",\"next_page_uri\":",
        page * page_size + (n > 0 ? n - 1 : 0), base, acct, fq, page_size);
    if (more && last)
        rc |= buf_printf(&b, "\"%s%s/Messages.json?%sPageSize=%ld&Page=%ld&PageToken=PA%s\"", base, acct, fq,
                         page_size, page + 1, last->sid);
    else
        rc |= buf_puts(&b, "null");
    rc |= buf_printf(&b, ",\"page\":%ld,\"page_size\":%ld,\"previous_page_uri\":", page, page_size);
    if (page > 0)
        rc |= buf_printf(&b, "\"%s%s/Messages.json?%sPageSize=%ld&Page=%ld\"", base, acct, fq, page_size,
                         page - 1);
    else
        rc |= buf_puts(&b, "null");
    rc |= buf_printf(&b, ",\"start\":%ld,\"uri\":\"%s%s/Messages.json?%sPageSize=%ld&Page=%ld%s%s\"}",
                     page * page_size, base, acct, fq, page_size, page, token ? "&PageToken=" : "",
                     token ? token : "");
    if (rc != 0) {
        buf_close(&b);
        buf_close(&filt);
        respond_error(s, req, 500, 20500, "An internal server error has occurred");
        return;
    }
    respond_buf(s, req, 200, &b, 0);
    buf_close(&b);
    buf_close(&filt);
    return;
bad_date:
    respond_error(s, req, 400, 20001, "Invalid DateSent filter: use YYYY-MM-DD");
}

static void on_sim_inbound(http_request_t *req, void *arg)
{
    sim_t *s = arg;
    s->inflight_api++;
    http_form_t form;
    if (parse_body_form(s, req, &form) != 0)
        return;
    const char *from = http_form_get(&form, "From");
    const char *to = http_form_get(&form, "To");
    const char *body = http_form_get(&form, "Body");
    if (!from || !*from || !to || !*to) {
        respond_error(s, req, 400, 21604, "From and To are required.");
        return;
    }
    sim_inbound(s, 0, from, to, body ? body : "");
    char out[160];
    int n = snprintf(out, sizeof(out), "{\"status\":\"received\",\"inbound_url\":%s}",
                     s->cfg.inbound_url ? "true" : "false");
    finish(s, req, 201, json_headers_none, out, (size_t)n, 0);
}

static void on_sim_stats(http_request_t *req, void *arg)
{
    sim_t *s = arg;
    char out[768];
    int n = snprintf(out, sizeof(out),
                     "{\"created\":%" PRIu64 ",\"responses_lost\":%" PRIu64 ",\"callbacks\":%" PRIu64
                     ",\"callback_errors\":%" PRIu64 ",\"callbacks_delivered\":%" PRIu64
                     ",\"callback_retries\":%" PRIu64 ",\"callbacks_dropped\":%" PRIu64
                     ",\"callbacks_waiting\":%zu,\"connections\":%zu,\"inflight\":%zu}",
                     s->stat_created, s->stat_lost, s->stat_callbacks, s->stat_callback_errors,
                     s->stat_callbacks_delivered, s->stat_callback_retries, s->stat_callbacks_dropped,
                     s->webhooks_waiting, http_server_connections(s->server), s->inflight_api);
    http_respond(req, 200, "application/json", NULL, out, (size_t)n);
}

static void on_healthz(http_request_t *req, void *arg)
{
    (void)arg;
    http_respond(req, 200, "text/plain", NULL, "ok\n", 3);
}

static void add_route(sim_t *s, const char *method, const char *pattern, http_handler_cb cb)
{
    if (http_router_add(s->router, method, pattern, cb, s) != 0) {
        log_error("twilio-sim: bad route %s", pattern);
        abort();
    }
}

void sim_api_init(sim_t *s)
{
    buf_init(&s->scratch, 64 * 1024);
    s->router = http_router_new();
    s->optouts = sim_strmap_new();
    s->senders = sim_strmap_new();
    add_route(s, "POST", ACCOUNT_PREFIX "{AccountSid}/Messages.json", on_create);
    add_route(s, "GET", ACCOUNT_PREFIX "{AccountSid}/Messages.json", on_list);
    add_route(s, "GET", ACCOUNT_PREFIX "{AccountSid}/Messages/{MessageSid}.json", on_fetch);
    add_route(s, "POST", "/sim/inbound", on_sim_inbound);
    add_route(s, "GET", "/sim/stats", on_sim_stats);
    add_route(s, "GET", "/healthz", on_healthz);

    char raw[512];
    for (size_t i = 0; i < s->cfg.naccounts; i++) {
        snprintf(raw, sizeof(raw), "%s:%s", s->cfg.accounts[i].sid, s->cfg.accounts[i].secret);
        s->basic_accounts[i] = xmalloc(4 * (strlen(raw) + 2) / 3 + 4);
        sim_base64((const unsigned char *)raw, strlen(raw), s->basic_accounts[i]);
    }
    for (size_t i = 0; i < s->cfg.napi_keys; i++) {
        snprintf(raw, sizeof(raw), "%s:%s", s->cfg.api_keys[i].sid, s->cfg.api_keys[i].secret);
        s->basic_keys[i] = xmalloc(4 * (strlen(raw) + 2) / 3 + 4);
        sim_base64((const unsigned char *)raw, strlen(raw), s->basic_keys[i]);
    }
}

void sim_api_close(sim_t *s)
{
    http_router_free(s->router);
    s->router = NULL;
    buf_close(&s->scratch);
    sim_strmap_free(s->optouts);
    sim_strmap_free(s->senders);
    for (size_t i = 0; i < s->cfg.napi_keys; i++)
        free(s->basic_keys[i]);
    for (size_t i = 0; i < s->cfg.naccounts; i++)
        free(s->basic_accounts[i]);
}
