/*
 * The Twilio Messages API client (see twilio.h): builds form-encoded creates and
 * filtered list URLs, enforces the per-account concurrency bound with a FIFO queue
 * behind it, parses Twilio's JSON (message, page, error bodies) with jansson, and
 * turns every response — including garbage, truncated bodies and resets — into a
 * classified twilio_result_t. Each operation has one state (queued, in flight,
 * done) changed only by op_set_state().
 *
 * A list holds its concurrency slot while it walks next_page_uri, and only follows
 * URIs under this account's Messages path, so a hostile response cannot send our
 * credentials elsewhere or make us loop forever (max_pages).
 */
#include "provider/twilio.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/client.h"
#include "provider/form.h"
#include "provider/provider_int.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONCURRENCY 64
#define DEFAULT_QUEUE 100000
#define DEFAULT_TIMEOUT_MS 15000L
#define DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define DEFAULT_MAX_PAGES 10000
#define MAX_URL 8192
#define MAX_SID 64
#define API_PREFIX "/2010-04-01/Accounts/"

typedef enum op_kind { OP_CREATE, OP_FETCH, OP_LIST } op_kind_t;

typedef enum op_state {
    OP_NEW,
    OP_QUEUED,
    OP_IN_FLIGHT,
    OP_DONE,
} op_state_t;

typedef enum client_state { TC_RUNNING, TC_CLOSING } client_state_t;

typedef struct twilio_op twilio_op_t;
struct twilio_op {
    twilio_client_t *client;
    op_kind_t kind;
    op_state_t state;
    char *url;
    char *body; /* create only */
    size_t body_len;
    twilio_result_cb cb;
    twilio_page_cb page_cb;
    void *arg;
    size_t pages, max_pages;
    char to_masked[24];
    twilio_op_t *next;
};

struct twilio_client {
    uv_loop_t *loop;
    http_client_t *http;
    client_state_t state;
    char *account_sid;
    char *userpwd; /* secret: wiped on close, never logged */
    char *base_url; /* no trailing '/' */
    char *from_number;
    char *messaging_service_sid;
    char *status_callback;
    char *messages_url; /* base_url + API_PREFIX + sid + "/Messages" */
    size_t max_concurrency, max_queue;
    size_t in_flight, queued;
    twilio_op_t *q_head, *q_tail;
    void (*closed_cb)(void *arg);
    void *closed_arg;
};

static const char *const get_headers[] = {"Accept: application/json", "User-Agent: herald/0.1", NULL};
static const char *const post_headers[] = {"Accept: application/json", "User-Agent: herald/0.1",
                                           "Content-Type: application/x-www-form-urlencoded", NULL};

static const char *op_state_name(op_state_t s)
{
    static const char *const names[] = {"new", "queued", "in-flight", "done"};
    return names[s];
}

static const char *op_kind_name(op_kind_t k)
{
    static const char *const names[] = {"create", "fetch", "list"};
    return names[k];
}

/* The one place an operation changes state; it keeps the client's counters exact. */
static void op_set_state(twilio_op_t *op, op_state_t to)
{
    twilio_client_t *c = op->client;
    op_state_t from = op->state;
    int ok = (from == OP_NEW && (to == OP_QUEUED || to == OP_IN_FLIGHT)) || (from == OP_QUEUED && to == OP_IN_FLIGHT) ||
             (from == OP_QUEUED && to == OP_DONE) || (from == OP_IN_FLIGHT && to == OP_DONE);

    if (!ok) {
        log_cerror("twilio", "bad %s transition %s -> %s", op_kind_name(op->kind), op_state_name(from),
                   op_state_name(to));
        abort();
    }
    if (from == OP_QUEUED)
        c->queued--;
    else if (from == OP_IN_FLIGHT)
        c->in_flight--;
    if (to == OP_QUEUED)
        c->queued++;
    else if (to == OP_IN_FLIGHT)
        c->in_flight++;
    op->state = to;
    log_cdebug("twilio", "%s %s: %s -> %s", op_kind_name(op->kind), op->to_masked, op_state_name(from),
               op_state_name(to));
}

static void op_free(twilio_op_t *op)
{
    free(op->url);
    free(op->body);
    free(op);
}

/* ---- JSON helpers ---- */

static void copy_str(char *dst, size_t size, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;

    dst[0] = '\0';
    if (s != NULL)
        snprintf(dst, size, "%s", s);
}

/* Twilio sends some numbers as strings ("num_segments": "2"); accept both forms. */
static int get_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return (i > 0x7fffffff || i < -0x7fffffff) ? 0 : (int)i;
    }
    if (json_is_string(v)) {
        char *end;
        long l = strtol(json_string_value(v), &end, 10);
        return (*end == '\0' && l <= 0x7fffffff && l >= -0x7fffffff) ? (int)l : 0;
    }
    return 0;
}

static void parse_message(json_t *o, twilio_message_t *m)
{
    memset(m, 0, sizeof(*m));
    copy_str(m->sid, sizeof(m->sid), o, "sid");
    copy_str(m->account_sid, sizeof(m->account_sid), o, "account_sid");
    copy_str(m->messaging_service_sid, sizeof(m->messaging_service_sid), o, "messaging_service_sid");
    copy_str(m->to, sizeof(m->to), o, "to");
    copy_str(m->from, sizeof(m->from), o, "from");
    copy_str(m->status, sizeof(m->status), o, "status");
    copy_str(m->error_message, sizeof(m->error_message), o, "error_message");
    copy_str(m->date_created, sizeof(m->date_created), o, "date_created");
    copy_str(m->date_sent, sizeof(m->date_sent), o, "date_sent");
    copy_str(m->direction, sizeof(m->direction), o, "direction");
    m->num_segments = get_int(o, "num_segments");
    m->error_code = get_int(o, "error_code");
    json_t *body = json_object_get(o, "body");
    if (json_is_string(body)) {
        m->has_body = 1;
        m->body_hash = twilio_body_hash(json_string_value(body), json_string_length(body));
    }
}

uint64_t twilio_body_hash(const char *body, size_t len)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void set_malformed(twilio_result_t *res, const char *what)
{
    res->verdict.outcome = TWILIO_OUTCOME_RETRYABLE;
    res->verdict.suppress = 0;
    res->verdict.pause = 0;
    res->verdict.reason = "malformed response";
    snprintf(res->message, sizeof(res->message), "%s", what);
}

/*
 * Fills res from a transfer outcome and returns the parsed JSON object of a 2xx
 * response (caller decrefs), or NULL when there is none or it was not usable.
 */
static json_t *fill_result(twilio_result_t *res, const http_response_t *resp)
{
    json_t *root = NULL;
    json_error_t jerr;

    memset(res, 0, sizeof(*res));
    res->http_status = resp->status;
    res->curl_code = resp->curl_code;
    if (resp->curl_code != 0) {
        res->verdict = twilio_classify(resp->status, 0, resp->curl_code);
        snprintf(res->message, sizeof(res->message), "%s", resp->error ? resp->error : "transport error");
        return NULL;
    }
    root = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        root = NULL;
    }
    if (resp->status >= 200 && resp->status <= 299) {
        res->verdict = twilio_classify(resp->status, 0, 0);
        if (root == NULL)
            set_malformed(res, "success response is not a JSON object");
        return root;
    }
    if (root != NULL) {
        res->code = get_int(root, "code");
        copy_str(res->message, sizeof(res->message), root, "message");
        json_decref(root);
    }
    if (res->message[0] == '\0')
        snprintf(res->message, sizeof(res->message), "HTTP %ld", resp->status);
    res->verdict = twilio_classify(resp->status, res->code, 0);
    return NULL;
}

/* Copies a string field as copy_str() does, from the fast reader's result. */
static void copy_field(char *dst, size_t size, const msgjson_field_t *f)
{
    size_t n = 0;

    if (f->type == MSGJSON_STRING) {
        n = f->len < sizeof(f->str) ? f->len : sizeof(f->str) - 1;
        if (n >= size)
            n = size - 1;
        memcpy(dst, f->str, n);
    }
    dst[n] = '\0';
}

/* get_int() on the fast reader's result; returns 0 with *ok = 0 when it cannot tell. */
static int field_int(const msgjson_field_t *f, int *ok)
{
    if (f->type == MSGJSON_INTEGER)
        return (f->integer > 0x7fffffff || f->integer < -0x7fffffff) ? 0 : (int)f->integer;
    if (f->type == MSGJSON_STRING) {
        char *end;
        long l;
        if (f->len >= sizeof(f->str)) {
            *ok = 0;
            return 0;
        }
        l = strtol(f->str, &end, 10);
        return (*end == '\0' && l <= 0x7fffffff && l >= -0x7fffffff) ? (int)l : 0;
    }
    return 0;
}

/*
 * fill_result() plus parse_message() for a create or fetch, through the fast JSON
 * reader (provider_int.h). Returns 0 when the body needs the full parser; res is
 * then to be filled by the jansson path instead.
 */
static int fill_message_result_fast(twilio_result_t *res, const http_response_t *resp, msgjson_t *mj)
{
    int ok = 1;

    if (resp->curl_code != 0 || !msgjson_scan(resp->body, resp->body_len, mj))
        return 0;
    memset(res, 0, sizeof(*res));
    res->http_status = resp->status;
    if (resp->status >= 200 && resp->status <= 299) {
        twilio_message_t *m = &res->msg;
        res->verdict = twilio_classify(resp->status, 0, 0);
        copy_field(m->sid, sizeof(m->sid), &mj->f[MJ_SID]);
        copy_field(m->account_sid, sizeof(m->account_sid), &mj->f[MJ_ACCOUNT_SID]);
        copy_field(m->messaging_service_sid, sizeof(m->messaging_service_sid), &mj->f[MJ_MESSAGING_SERVICE_SID]);
        copy_field(m->to, sizeof(m->to), &mj->f[MJ_TO]);
        copy_field(m->from, sizeof(m->from), &mj->f[MJ_FROM]);
        copy_field(m->status, sizeof(m->status), &mj->f[MJ_STATUS]);
        copy_field(m->error_message, sizeof(m->error_message), &mj->f[MJ_ERROR_MESSAGE]);
        copy_field(m->date_created, sizeof(m->date_created), &mj->f[MJ_DATE_CREATED]);
        copy_field(m->date_sent, sizeof(m->date_sent), &mj->f[MJ_DATE_SENT]);
        copy_field(m->direction, sizeof(m->direction), &mj->f[MJ_DIRECTION]);
        m->num_segments = field_int(&mj->f[MJ_NUM_SEGMENTS], &ok);
        m->error_code = field_int(&mj->f[MJ_ERROR_CODE], &ok);
        if (m->sid[0] == '\0')
            set_malformed(res, "response has no message sid");
        return ok;
    }
    res->code = field_int(&mj->f[MJ_CODE], &ok);
    copy_field(res->message, sizeof(res->message), &mj->f[MJ_MESSAGE]);
    if (res->message[0] == '\0')
        snprintf(res->message, sizeof(res->message), "HTTP %ld", resp->status);
    res->verdict = twilio_classify(resp->status, res->code, 0);
    return ok;
}

/* ---- dispatch ---- */

static void on_http_done(const http_response_t *resp, void *arg);

static void op_start(twilio_op_t *op)
{
    twilio_client_t *c = op->client;
    int rc;

    op_set_state(op, OP_IN_FLIGHT);
    if (op->kind == OP_CREATE)
        rc = http_client_request(c->http, "POST", op->url, post_headers, op->body, op->body_len, c->userpwd,
                                 on_http_done, op);
    else
        rc = http_client_request(c->http, "GET", op->url, get_headers, NULL, 0, c->userpwd, on_http_done, op);
    if (rc != 0) {
        /* Only possible if the http client were closed under a running client. */
        log_cerror("twilio", "http_client_request: %s", http_client_strerror(rc));
        abort();
    }
}

static void pump(twilio_client_t *c)
{
    while (c->state == TC_RUNNING && c->q_head != NULL && c->in_flight < c->max_concurrency) {
        twilio_op_t *op = c->q_head;
        c->q_head = op->next;
        if (c->q_head == NULL)
            c->q_tail = NULL;
        op->next = NULL;
        op_start(op);
    }
}

static int submit(twilio_client_t *c, twilio_op_t *op)
{
    if (c->in_flight < c->max_concurrency && c->q_head == NULL) {
        op_start(op);
        return 0;
    }
    if (c->queued >= c->max_queue) {
        op_free(op);
        return TWILIO_EQUEUEFULL;
    }
    op_set_state(op, OP_QUEUED);
    if (c->q_tail)
        c->q_tail->next = op;
    else
        c->q_head = op;
    c->q_tail = op;
    return 0;
}

static void log_result(const twilio_op_t *op, const twilio_result_t *res)
{
    if (res->verdict.outcome == TWILIO_OUTCOME_OK)
        log_cdebug("twilio", "%s %s: HTTP %ld %s %s", op_kind_name(op->kind), op->to_masked, res->http_status,
                   res->msg.sid, res->msg.status);
    else
        log_cinfo("twilio", "%s %s: %s (%s) HTTP %ld code %d curl %d: %s", op_kind_name(op->kind), op->to_masked,
                  res->verdict.outcome == TWILIO_OUTCOME_RETRYABLE ? "retryable" : "terminal", res->verdict.reason,
                  res->http_status, res->code, res->curl_code, res->message);
}

/* Returns 1 when uri may be followed: under this account's Messages path, printable, bounded. */
static int next_uri_ok(const twilio_client_t *c, const char *uri)
{
    size_t plen = strlen(API_PREFIX), slen = strlen(c->account_sid);

    if (strlen(uri) > MAX_URL / 2 || strncmp(uri, API_PREFIX, plen) != 0 ||
        strncmp(uri + plen, c->account_sid, slen) != 0 || strncmp(uri + plen + slen, "/Messages", 9) != 0)
        return 0;
    if (strstr(uri, "..") != NULL || strstr(uri, "//") != NULL)
        return 0;
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

/* Handles one page; returns 1 if the next page request was started (slot kept). */
static int list_page(twilio_op_t *op, const http_response_t *resp)
{
    twilio_client_t *c = op->client;
    twilio_result_t res;
    twilio_message_t *msgs = NULL;
    size_t n = 0;
    const char *next = NULL;
    json_t *root = fill_result(&res, resp);
    int more = 0, stop;

    if (res.verdict.outcome == TWILIO_OUTCOME_OK) {
        json_t *arr = json_object_get(root, "messages");
        json_t *nu = json_object_get(root, "next_page_uri");
        if (!json_is_array(arr) || json_array_size(arr) > TWILIO_MAX_PAGE_SIZE) {
            set_malformed(&res, "page has no messages array or too many entries");
        } else {
            n = json_array_size(arr);
            msgs = n ? xcalloc(n, sizeof(*msgs)) : NULL;
            for (size_t i = 0; i < n; i++) {
                json_t *m = json_array_get(arr, i);
                if (json_is_object(m))
                    parse_message(m, &msgs[i]);
            }
            if (json_is_string(nu) && json_string_value(nu)[0] != '\0') {
                next = json_string_value(nu);
                if (!next_uri_ok(c, next)) {
                    log_cwarn("twilio", "list: refusing next_page_uri outside the account's Messages path");
                    next = NULL;
                }
            }
        }
    }
    op->pages++;
    more = res.verdict.outcome == TWILIO_OUTCOME_OK && next != NULL && op->pages < op->max_pages &&
           c->state == TC_RUNNING;
    if (res.verdict.outcome != TWILIO_OUTCOME_OK) {
        log_result(op, &res);
        n = 0;
    }
    stop = op->page_cb(&res, msgs, n, !more, op->arg);
    if (more && !stop && c->state == TC_RUNNING) {
        free(op->url);
        op->url = xmalloc(strlen(c->base_url) + strlen(next) + 1);
        strcpy(op->url, c->base_url);
        strcat(op->url, next);
        json_decref(root);
        free(msgs);
        if (http_client_request(c->http, "GET", op->url, get_headers, NULL, 0, c->userpwd, on_http_done, op) != 0) {
            log_cerror("twilio", "list: could not request the next page");
            abort();
        }
        return 1;
    }
    json_decref(root);
    free(msgs);
    return 0;
}

static void on_http_done(const http_response_t *resp, void *arg)
{
    twilio_op_t *op = arg;
    twilio_client_t *c = op->client;

    if (op->kind == OP_LIST) {
        if (list_page(op, resp))
            return;
    } else {
        twilio_result_t res;
        msgjson_t mj;
        if (!fill_message_result_fast(&res, resp, &mj)) {
            json_t *root = fill_result(&res, resp);
            if (root != NULL) {
                parse_message(root, &res.msg);
                json_decref(root);
                if (res.msg.sid[0] == '\0')
                    set_malformed(&res, "response has no message sid");
            }
        }
        log_result(op, &res);
        op->cb(&res, op->arg);
    }
    op_set_state(op, OP_DONE);
    op_free(op);
    pump(c);
}

/* ---- construction ---- */

static int sid_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')))
            return 0;
    return n > 0 && n <= MAX_SID;
}

static char *dup_or_null(const char *s)
{
    return (s != NULL && *s != '\0') ? xstrdup(s) : NULL;
}

static char *join3(const char *a, const char *b, const char *d)
{
    size_t la = strlen(a), lb = strlen(b), ld = strlen(d);
    char *s = xmalloc(la + lb + ld + 1);

    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, d, ld + 1);
    return s;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void client_free(twilio_client_t *c)
{
    wipe_free(c->userpwd);
    free(c->account_sid);
    free(c->base_url);
    free(c->from_number);
    free(c->messaging_service_sid);
    free(c->status_callback);
    free(c->messages_url);
    free(c);
}

void twilio_config_from_env(twilio_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->account_sid = getenv("TWILIO_ACCOUNT_SID");
    cfg->auth_token = getenv("TWILIO_AUTH_TOKEN");
    cfg->api_key_sid = getenv("TWILIO_API_KEY");
    cfg->api_key_secret = getenv("TWILIO_API_SECRET");
    cfg->base_url = getenv("TWILIO_API_BASE_URL");
    cfg->from_number = getenv("TWILIO_FROM_NUMBER");
    cfg->messaging_service_sid = getenv("TWILIO_MESSAGING_SERVICE_SID");
    cfg->public_url = getenv("HERALD_PUBLIC_URL");
}

int twilio_client_new(uv_loop_t *loop, const twilio_config_t *cfg, twilio_client_t **out)
{
    twilio_client_t *c;
    http_client_config_t hc;
    const char *base;
    size_t blen;

    if (loop == NULL || cfg == NULL || out == NULL || !sid_ok(cfg->account_sid))
        return TWILIO_ECONFIG;
    base = (cfg->base_url && *cfg->base_url) ? cfg->base_url : TWILIO_DEFAULT_BASE_URL;
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return TWILIO_ECONFIG;
    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    if (cfg->api_key_sid && *cfg->api_key_sid && cfg->api_key_secret && *cfg->api_key_secret)
        c->userpwd = join3(cfg->api_key_sid, ":", cfg->api_key_secret);
    else if (cfg->auth_token && *cfg->auth_token)
        c->userpwd = join3(cfg->account_sid, ":", cfg->auth_token);
    else {
        free(c);
        return TWILIO_ECONFIG;
    }
    c->account_sid = xstrdup(cfg->account_sid);
    blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    c->base_url = xstrndup(base, blen);
    c->from_number = dup_or_null(cfg->from_number);
    c->messaging_service_sid = dup_or_null(cfg->messaging_service_sid);
    if (cfg->public_url && *cfg->public_url) {
        size_t plen = strlen(cfg->public_url);
        char *p;
        while (plen > 0 && cfg->public_url[plen - 1] == '/')
            plen--;
        p = xstrndup(cfg->public_url, plen);
        c->status_callback = join3(p, TWILIO_STATUS_CALLBACK_PATH, "");
        free(p);
    }
    {
        char *prefix = join3(c->base_url, API_PREFIX, c->account_sid);
        c->messages_url = join3(prefix, "/Messages", "");
        free(prefix);
    }
    c->max_concurrency = cfg->max_concurrency ? cfg->max_concurrency : DEFAULT_CONCURRENCY;
    c->max_queue = cfg->max_queue ? cfg->max_queue : DEFAULT_QUEUE;
    memset(&hc, 0, sizeof(hc));
    hc.max_connections = c->max_concurrency;
    hc.max_host_connections = c->max_concurrency;
    hc.timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    hc.connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    hc.max_response_body = TWILIO_MAX_RESPONSE_BODY;
    if (http_client_new(loop, &hc, &c->http) != 0) {
        client_free(c);
        return TWILIO_ECONFIG;
    }
    c->state = TC_RUNNING;
    log_cinfo("twilio", "client for %s at %s (%s auth, %zu in flight)", c->account_sid, c->base_url,
              (cfg->api_key_sid && *cfg->api_key_sid && cfg->api_key_secret && *cfg->api_key_secret) ? "API key"
                                                                                                   : "auth token",
              c->max_concurrency);
    *out = c;
    return 0;
}

static twilio_op_t *op_new(twilio_client_t *c, op_kind_t kind, void *arg)
{
    twilio_op_t *op = xcalloc(1, sizeof(*op));

    op->client = c;
    op->kind = kind;
    op->state = OP_NEW;
    op->arg = arg;
    op->to_masked[0] = '-';
    return op;
}

int twilio_message_create(twilio_client_t *c, const twilio_send_t *m, twilio_result_cb cb, void *arg)
{
    const char *from, *mg, *cbu;
    buf_t b;
    twilio_op_t *op;
    int rc = 0;
    char vp[16];

    if (c == NULL || m == NULL || cb == NULL || m->to == NULL || *m->to == '\0' ||
        ((m->body == NULL || *m->body == '\0') && m->n_media == 0) || m->n_media > TWILIO_MAX_MEDIA ||
        (m->n_media > 0 && m->media_urls == NULL) || m->validity_period < 0 || m->validity_period > 36000)
        return TWILIO_EINVAL;
    if (c->state != TC_RUNNING)
        return TWILIO_ECLOSED;
    from = m->from;
    mg = m->messaging_service_sid;
    if ((from == NULL || !*from) && (mg == NULL || !*mg)) {
        mg = c->messaging_service_sid;
        from = mg ? NULL : c->from_number;
    }
    if ((from == NULL || !*from) && (mg == NULL || !*mg))
        return TWILIO_EINVAL;
    cbu = m->status_callback ? m->status_callback : c->status_callback;

    buf_init(&b, TWILIO_MAX_REQUEST_BODY);
    if (twilio_form_add(&b, "To", m->to) != 0 || (from && *from && twilio_form_add(&b, "From", from) != 0) ||
        (mg && *mg && twilio_form_add(&b, "MessagingServiceSid", mg) != 0) ||
        (m->body && *m->body && twilio_form_add(&b, "Body", m->body) != 0) ||
        (cbu && *cbu && twilio_form_add(&b, "StatusCallback", cbu) != 0))
        rc = TWILIO_ETOOBIG;
    for (size_t i = 0; rc == 0 && i < m->n_media; i++)
        if (m->media_urls[i] == NULL)
            rc = TWILIO_EINVAL;
        else if (twilio_form_add(&b, "MediaUrl", m->media_urls[i]) != 0)
            rc = TWILIO_ETOOBIG;
    if (rc == 0 && m->validity_period > 0) {
        snprintf(vp, sizeof(vp), "%d", m->validity_period);
        if (twilio_form_add(&b, "ValidityPeriod", vp) != 0)
            rc = TWILIO_ETOOBIG;
    }
    if (rc != 0) {
        buf_close(&b);
        return rc;
    }
    op = op_new(c, OP_CREATE, arg);
    op->cb = cb;
    op->url = join3(c->messages_url, ".json", "");
    op->body = buf_take(&b, &op->body_len);
    log_mask_phone(m->to, op->to_masked, sizeof(op->to_masked));
    return submit(c, op);
}

int twilio_message_fetch(twilio_client_t *c, const char *sid, twilio_result_cb cb, void *arg)
{
    twilio_op_t *op;

    if (c == NULL || cb == NULL || !sid_ok(sid))
        return TWILIO_EINVAL;
    if (c->state != TC_RUNNING)
        return TWILIO_ECLOSED;
    op = op_new(c, OP_FETCH, arg);
    op->cb = cb;
    {
        char *p = join3(c->messages_url, "/", sid);
        op->url = join3(p, ".json", "");
        free(p);
    }
    return submit(c, op);
}

int twilio_message_list(twilio_client_t *c, const twilio_list_query_t *q, twilio_page_cb cb, void *arg)
{
    buf_t b;
    twilio_op_t *op;
    char ps[16];
    int rc = 0;

    if (c == NULL || q == NULL || cb == NULL)
        return TWILIO_EINVAL;
    if (c->state != TC_RUNNING)
        return TWILIO_ECLOSED;
    buf_init(&b, MAX_URL);
    if (buf_puts(&b, c->messages_url) != 0 || buf_puts(&b, ".json?") != 0)
        rc = TWILIO_ETOOBIG;
    /* The "?" is followed by pairs; twilio_form_add puts "&" only after the first. */
    {
        buf_t qs;
        buf_init(&qs, MAX_URL);
        if ((q->to && twilio_form_add(&qs, "To", q->to) != 0) ||
            (q->from && twilio_form_add(&qs, "From", q->from) != 0) ||
            (q->date_sent && twilio_form_add(&qs, "DateSent", q->date_sent) != 0) ||
            (q->date_sent_before && twilio_form_add(&qs, "DateSent<", q->date_sent_before) != 0) ||
            (q->date_sent_after && twilio_form_add(&qs, "DateSent>", q->date_sent_after) != 0))
            rc = TWILIO_ETOOBIG;
        if (rc == 0 && q->page_size > 0) {
            snprintf(ps, sizeof(ps), "%u", q->page_size > TWILIO_MAX_PAGE_SIZE ? TWILIO_MAX_PAGE_SIZE : q->page_size);
            if (twilio_form_add(&qs, "PageSize", ps) != 0)
                rc = TWILIO_ETOOBIG;
        }
        if (rc == 0 && buf_append(&b, qs.data ? qs.data : "", qs.len) != 0)
            rc = TWILIO_ETOOBIG;
        buf_close(&qs);
    }
    if (rc != 0) {
        buf_close(&b);
        return rc;
    }
    op = op_new(c, OP_LIST, arg);
    op->page_cb = cb;
    op->max_pages = q->max_pages ? q->max_pages : DEFAULT_MAX_PAGES;
    op->url = buf_take(&b, NULL);
    if (q->to)
        log_mask_phone(q->to, op->to_masked, sizeof(op->to_masked));
    return submit(c, op);
}

size_t twilio_client_pending(const twilio_client_t *c)
{
    return c->in_flight + c->queued;
}

unsigned long long twilio_client_connections_opened(const twilio_client_t *c)
{
    http_client_stats_t st;

    http_client_stats(c->http, &st);
    return (unsigned long long)st.connections_opened;
}

static void fail_queued(twilio_client_t *c)
{
    twilio_result_t res;

    memset(&res, 0, sizeof(res));
    res.verdict = twilio_classify(0, 0, CURLE_ABORTED_BY_CALLBACK);
    res.curl_code = CURLE_ABORTED_BY_CALLBACK;
    snprintf(res.message, sizeof(res.message), "client closed");
    while (c->q_head != NULL) {
        twilio_op_t *op = c->q_head;
        c->q_head = op->next;
        if (c->q_head == NULL)
            c->q_tail = NULL;
        op_set_state(op, OP_DONE);
        if (op->kind == OP_LIST)
            (void)op->page_cb(&res, NULL, 0, 1, op->arg);
        else
            op->cb(&res, op->arg);
        op_free(op);
    }
}

static void on_http_closed(void *arg)
{
    twilio_client_t *c = arg;
    void (*cb)(void *) = c->closed_cb;
    void *cb_arg = c->closed_arg;

    client_free(c);
    if (cb)
        cb(cb_arg);
}

void twilio_client_close(twilio_client_t *c, void (*closed_cb)(void *arg), void *arg)
{
    if (c == NULL || c->state != TC_RUNNING)
        return;
    c->state = TC_CLOSING;
    c->closed_cb = closed_cb;
    c->closed_arg = arg;
    fail_queued(c);
    /* In-flight operations are failed by the http client, through on_http_done. */
    http_client_close(c->http, on_http_closed, c);
}

const char *twilio_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case TWILIO_EINVAL:
        return "invalid argument";
    case TWILIO_ECONFIG:
        return "Twilio configuration lacks an account sid, credentials or a valid base URL";
    case TWILIO_EQUEUEFULL:
        return "too many Twilio requests queued";
    case TWILIO_ECLOSED:
        return "Twilio client is closed";
    case TWILIO_ETOOBIG:
        return "request too large";
    default:
        return "unknown Twilio client error";
    }
}
