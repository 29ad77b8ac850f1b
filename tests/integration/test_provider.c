/*
 * Integration tests for provider/twilio and http/client over loopback.
 *
 * Part one runs against a small raw libuv TCP server written here, which answers
 * with whatever a test needs: well-formed Twilio bodies, garbage JSON, truncated
 * bodies, connection resets, silence (timeouts), hostile next_page_uri values. It
 * also records the last request, so tests check what the client sent (auth, form).
 *
 * Part two spawns the real simulator (TWILIO_SIM_BIN) on port 0 and proves create,
 * fetch, list with paging, magic-number errors, 429 and lost-response injection,
 * API key auth and 401. Those tests are skipped when the simulator is missing.
 *
 * Every test ends by closing all handles and asserting uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/log.h"
#include "http/client.h"
#include "provider/twilio.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define SID "AC00000000000000000000000000000001"
#define TOKEN "sim-token-123"
#define MSG_SID "SM0123456789abcdef0123456789abcdef"

/* ------------------------------------------------------------------ raw server */

typedef enum srv_mode {
    SRV_CREATED,     /* 201 with a message JSON */
    SRV_RAW,         /* srv->raw, as is, keep-alive */
    SRV_RAW_CLOSE,   /* srv->raw, then close */
    SRV_RESET,       /* RST instead of a response */
    SRV_SILENT,      /* never answer */
    SRV_PAGES,       /* two pages of a list */
    SRV_EVIL_NEXT,   /* a page whose next_page_uri points elsewhere */
} srv_mode_t;

typedef struct raw_conn raw_conn_t;

typedef struct raw_srv {
    uv_tcp_t tcp;
    int port;
    srv_mode_t mode;
    const char *raw;
    int accepted;
    int requests;
    char last_req[16384];
    raw_conn_t *conns;
} raw_srv_t;

struct raw_conn {
    uv_tcp_t tcp;
    raw_srv_t *srv;
    char buf[16384];
    size_t len;
    int closing;
    raw_conn_t *prev, *next;
};

typedef struct wreq {
    uv_write_t req;
    raw_conn_t *conn;
    int close_after;
    char data[];
} wreq_t;

static void conn_closed(uv_handle_t *h)
{
    raw_conn_t *c = h->data;

    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void conn_close(raw_conn_t *c)
{
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    }
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    (void)status;
    if (w->close_after)
        conn_close(w->conn);
    free(w);
}

static void conn_send(raw_conn_t *c, const char *data, size_t len, int close_after)
{
    wreq_t *w = malloc(sizeof(*w) + len);
    uv_buf_t b;

    assert_non_null(w);
    memcpy(w->data, data, len);
    w->conn = c;
    w->close_after = close_after;
    b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(w);
        conn_close(c);
    }
}

static void send_json(raw_conn_t *c, int status, const char *reason, const char *json)
{
    char head[256];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     status, reason, strlen(json));
    char *all = malloc((size_t)n + strlen(json));
    assert_non_null(all);
    memcpy(all, head, (size_t)n);
    memcpy(all + n, json, strlen(json));
    conn_send(c, all, (size_t)n + strlen(json), 0);
    free(all);
}

static void handle_request(raw_conn_t *c, const char *req)
{
    raw_srv_t *s = c->srv;

    s->requests++;
    snprintf(s->last_req, sizeof(s->last_req), "%s", req);
    switch (s->mode) {
    case SRV_CREATED:
        send_json(c, 201, "Created",
                  "{\"sid\":\"" MSG_SID "\",\"status\":\"queued\",\"num_segments\":\"2\",\"to\":\"+14155550100\","
                  "\"from\":\"+15005550006\",\"error_code\":null,\"date_created\":\"Mon, 01 Jun 2026 00:00:00 +0000\"}");
        break;
    case SRV_RAW:
    case SRV_RAW_CLOSE:
        conn_send(c, s->raw, strlen(s->raw), s->mode == SRV_RAW_CLOSE);
        break;
    case SRV_RESET:
        c->closing = 1;
        uv_tcp_close_reset(&c->tcp, conn_closed);
        break;
    case SRV_SILENT:
        break;
    case SRV_PAGES:
        if (strstr(req, "Page=1") != NULL)
            send_json(c, 200, "OK",
                      "{\"messages\":[{\"sid\":\"SM3\",\"status\":\"delivered\",\"num_segments\":1}],"
                      "\"next_page_uri\":null,\"page\":1}");
        else
            send_json(c, 200, "OK",
                      "{\"messages\":[{\"sid\":\"SM1\",\"status\":\"sent\"},{\"sid\":\"SM2\",\"status\":\"failed\","
                      "\"error_code\":30007}],\"next_page_uri\":\"/2010-04-01/Accounts/" SID
                      "/Messages.json?To=%2B14155550100&PageSize=2&Page=1&PageToken=PA1\",\"page\":0}");
        break;
    case SRV_EVIL_NEXT:
        send_json(c, 200, "OK",
                  "{\"messages\":[{\"sid\":\"SM1\",\"status\":\"sent\"}],"
                  "\"next_page_uri\":\"//evil.example/2010-04-01/Accounts/" SID "/Messages.json?Page=1\"}");
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    raw_conn_t *c = h->data;
    (void)suggested;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    raw_conn_t *c = st->data;
    (void)b;

    if (nread < 0 || (nread == 0 && c->len == sizeof(c->buf) - 1)) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    for (;;) {
        char *end = strstr(c->buf, "\r\n\r\n");
        size_t clen = 0, total;
        if (end == NULL || c->closing)
            return;
        for (char *p = c->buf; p < end; p++)
            if (strncasecmp(p, "\r\ncontent-length:", 17) == 0)
                clen = strtoul(p + 17, NULL, 10);
        total = (size_t)(end + 4 - c->buf) + clen;
        if (c->len < total)
            return;
        char save = c->buf[total];
        c->buf[total] = '\0';
        handle_request(c, c->buf);
        c->buf[total] = save;
        if (c->closing)
            return;
        memmove(c->buf, c->buf + total, c->len - total + 1);
        c->len -= total;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    raw_srv_t *s = server->data;
    raw_conn_t *c;

    assert_int_equal(status, 0);
    c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = s;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void raw_srv_start(uv_loop_t *loop, raw_srv_t *s, srv_mode_t mode)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);

    memset(s, 0, sizeof(*s));
    s->mode = mode;
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    s->tcp.data = s;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 128, on_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void raw_srv_close(raw_srv_t *s)
{
    for (raw_conn_t *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* ------------------------------------------------------------------ helpers */

typedef struct capture {
    int done;
    twilio_result_t res;
} capture_t;

static void on_result(const twilio_result_t *r, void *arg)
{
    capture_t *c = arg;
    c->res = *r;
    c->done++;
}

static void run_until(uv_loop_t *loop, const int *flag, int want)
{
    while (*flag < want)
        uv_run(loop, UV_RUN_ONCE);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

/* Closes the client, the server (if any) and asserts the loop has nothing left. */
static void finish(uv_loop_t *loop, twilio_client_t *tc, raw_srv_t *srv)
{
    int closed = 0;

    if (tc) {
        twilio_client_close(tc, count_cb, &closed);
        run_until(loop, &closed, 1);
    }
    if (srv)
        raw_srv_close(srv);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static twilio_client_t *client_for(uv_loop_t *loop, const char *base, const char *token, long timeout_ms)
{
    /* The simulator really calls StatusCallback: only the raw server gets a (fake) public URL. */
    int raw = strstr(base, "raw:") == base;
    twilio_config_t cfg;
    twilio_client_t *c = NULL;

    memset(&cfg, 0, sizeof(cfg));
    cfg.account_sid = SID;
    cfg.auth_token = token;
    cfg.base_url = raw ? base + 4 : base;
    cfg.from_number = "+15005550006";
    cfg.public_url = raw ? "https://herald.example/" : NULL;
    cfg.max_concurrency = 4;
    cfg.timeout_ms = timeout_ms;
    assert_int_equal(twilio_client_new(loop, &cfg, &c), 0);
    return c;
}

static twilio_client_t *raw_client(uv_loop_t *loop, raw_srv_t *s, long timeout_ms)
{
    char base[64];
    snprintf(base, sizeof(base), "raw:http://127.0.0.1:%d", s->port);
    return client_for(loop, base, TOKEN, timeout_ms);
}

static void create_one(uv_loop_t *loop, twilio_client_t *tc, const twilio_send_t *m, capture_t *cap)
{
    memset(cap, 0, sizeof(*cap));
    assert_int_equal(twilio_message_create(tc, m, on_result, cap), 0);
    assert_int_equal(cap->done, 0); /* never synchronously */
    run_until(loop, &cap->done, 1);
}

static const char *header_value(const char *req, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r\n");
            snprintf(out, outlen, "%.*s", (int)l, v);
            return out;
        }
    }
    return NULL;
}

static void expect_basic(const char *req, const char *userpwd)
{
    char got[512], want[512];
    unsigned char enc[256];

    EVP_EncodeBlock(enc, (const unsigned char *)userpwd, (int)strlen(userpwd));
    snprintf(want, sizeof(want), "Basic %s", enc);
    assert_non_null(header_value(req, "Authorization", got, sizeof(got)));
    assert_string_equal(got, want);
}

/* ------------------------------------------------------------------ raw tests */

static void test_raw_create_form_and_reuse(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    capture_t cap;
    const char *media[] = {"https://x.test/a.png", "https://x.test/b c.png"};
    twilio_send_t m = {.to = "+14155550100", .body = "Hi & bye 50%", .media_urls = media, .n_media = 2,
                       .validity_period = 600};
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_CREATED);
    twilio_client_t *tc = raw_client(&loop, &srv, 5000);
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    assert_int_equal(cap.res.http_status, 201);
    assert_string_equal(cap.res.msg.sid, MSG_SID);
    assert_string_equal(cap.res.msg.status, "queued");
    assert_int_equal(cap.res.msg.num_segments, 2);
    assert_non_null(strstr(srv.last_req, "POST /2010-04-01/Accounts/" SID "/Messages.json HTTP/1.1\r\n"));
    expect_basic(srv.last_req, SID ":" TOKEN);
    const char *body = strstr(srv.last_req, "\r\n\r\n") + 4;
    assert_string_equal(body, "To=%2B14155550100&From=%2B15005550006&Body=Hi+%26+bye+50%25"
                              "&StatusCallback=https%3A%2F%2Fherald.example%2Fconnect%2Fwebhook%2Ftwilio%2Fstatus"
                              "&MediaUrl=https%3A%2F%2Fx.test%2Fa.png&MediaUrl=https%3A%2F%2Fx.test%2Fb+c.png"
                              "&ValidityPeriod=600");

    /* A messaging service replaces From; "" drops StatusCallback. Same connection. */
    twilio_send_t m2 = {.to = "+14155550100", .body = "x", .messaging_service_sid = "MG123", .status_callback = ""};
    create_one(&loop, tc, &m2, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    body = strstr(srv.last_req, "\r\n\r\n") + 4;
    assert_string_equal(body, "To=%2B14155550100&MessagingServiceSid=MG123&Body=x");
    for (int i = 0; i < 5; i++)
        create_one(&loop, tc, &m2, &cap);
    assert_int_equal(srv.requests, 7);
    assert_int_equal(srv.accepted, 1);
    assert_int_equal(twilio_client_connections_opened(tc), 1);

    /* Synchronous refusals: nothing to send, no callback. */
    twilio_send_t bad = {.to = "+14155550100"};
    assert_int_equal(twilio_message_create(tc, &bad, on_result, &cap), TWILIO_EINVAL);
    assert_int_equal(twilio_message_fetch(tc, "SM../x", on_result, &cap), TWILIO_EINVAL);
    finish(&loop, tc, &srv);
}

/*
 * The duplicate-maker: Twilio accepted a create on a kept-alive connection and the
 * response was lost (the connection closed with no byte of answer). libcurl would
 * quietly send the same POST again on a fresh connection; the client must instead
 * report an unknown outcome and send the request exactly once.
 */
static void test_raw_lost_response_not_resent(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    capture_t cap;
    twilio_send_t m = {.to = "+14155550100", .body = "once only"};
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_CREATED);
    twilio_client_t *tc = raw_client(&loop, &srv, 5000);
    create_one(&loop, tc, &m, &cap); /* opens the connection that will be reused */
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);

    srv.mode = SRV_RAW_CLOSE;
    srv.raw = "";
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_RETRYABLE);
    assert_int_equal(cap.res.http_status, 0);
    assert_int_equal(cap.res.curl_code, 65); /* CURLE_SEND_FAIL_REWIND: re-send refused */
    assert_non_null(strstr(cap.res.message, "outcome unknown"));
    /* The second create reached the server once, not twice (curl may already have
     * opened a fresh connection for its re-send before asking to rewind). */
    assert_int_equal(srv.requests, 2);

    /* The client stays usable: the next create opens a fresh connection. */
    srv.mode = SRV_CREATED;
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    assert_int_equal(srv.requests, 3);
    finish(&loop, tc, &srv);
}

static void test_raw_api_key_preferred(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    capture_t cap;
    twilio_config_t cfg;
    twilio_client_t *tc = NULL;
    char base[64];
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_CREATED);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/", srv.port);
    memset(&cfg, 0, sizeof(cfg));
    cfg.account_sid = SID;
    cfg.auth_token = TOKEN;
    cfg.api_key_sid = "SK00000000000000000000000000000002";
    cfg.api_key_secret = "key-secret";
    cfg.base_url = base;
    cfg.messaging_service_sid = "MG00000000000000000000000000000003";
    cfg.from_number = "+15005550006";
    assert_int_equal(twilio_client_new(&loop, &cfg, &tc), 0);
    twilio_send_t m = {.to = "+14155550100", .body = "hello"};
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    expect_basic(srv.last_req, "SK00000000000000000000000000000002:key-secret");
    /* The configured messaging service is preferred over the From number; no public URL, no callback. */
    assert_string_equal(strstr(srv.last_req, "\r\n\r\n") + 4,
                        "To=%2B14155550100&MessagingServiceSid=MG00000000000000000000000000000003&Body=hello");

    /* No credentials at all is a configuration error. */
    twilio_client_t *none = NULL;
    cfg.auth_token = NULL;
    cfg.api_key_secret = NULL;
    assert_int_equal(twilio_client_new(&loop, &cfg, &none), TWILIO_ECONFIG);
    cfg.auth_token = TOKEN;
    cfg.base_url = "ftp://x";
    assert_int_equal(twilio_client_new(&loop, &cfg, &none), TWILIO_ECONFIG);
    finish(&loop, tc, &srv);
}

typedef struct fault_case {
    const char *name;
    srv_mode_t mode;
    const char *raw;
    twilio_outcome_t outcome;
    long http_status;
    int code;
    int curl_nonzero;
} fault_case_t;

static void test_raw_faults(void **state)
{
    static const fault_case_t cases[] = {
        {"garbage json on 201", SRV_RAW, "HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"sid\":\"S", TWILIO_OUTCOME_RETRYABLE, 201, 0, 0},
        {"json array on 201", SRV_RAW, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n[]", TWILIO_OUTCOME_RETRYABLE, 201, 0, 0},
        {"201 without sid", SRV_RAW, "HTTP/1.1 201 Created\r\nContent-Length: 19\r\n\r\n{\"status\":\"queued\"}", TWILIO_OUTCOME_RETRYABLE, 201, 0, 0},
        {"garbage on 500", SRV_RAW, "HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\n<html>", TWILIO_OUTCOME_RETRYABLE, 500, 0, 0},
        {"garbage on 400", SRV_RAW, "HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\n{{{", TWILIO_OUTCOME_TERMINAL, 400, 0, 0},
        {"error body 21211", SRV_RAW,
         "HTTP/1.1 400 Bad\r\nContent-Length: 97\r\n\r\n{\"code\": 21211, \"message\": \"The 'To' number is not valid.\", "
         "\"more_info\": \"x\", \"status\": 400}     ",
         TWILIO_OUTCOME_TERMINAL, 400, 21211, 0},
        {"error code as string", SRV_RAW,
         "HTTP/1.1 429 Too Many\r\nContent-Length: 37\r\n\r\n{\"code\":\"20429\",\"message\":\"Too many\"}",
         TWILIO_OUTCOME_RETRYABLE, 429, 20429, 0},
        {"truncated 500", SRV_RAW_CLOSE, "HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{\"code\":", TWILIO_OUTCOME_RETRYABLE, 500, 0, 1},
        {"truncated 201", SRV_RAW_CLOSE, "HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"sid\":", TWILIO_OUTCOME_RETRYABLE, 201, 0, 1},
        {"truncated headers", SRV_RAW_CLOSE, "HTTP/1.1 201 Cre", TWILIO_OUTCOME_RETRYABLE, 0, 0, 1},
        {"not http", SRV_RAW_CLOSE, "SSH-2.0-OpenSSH\r\n\r\n", TWILIO_OUTCOME_RETRYABLE, 0, 0, 1},
        {"closed without answer", SRV_RAW_CLOSE, "", TWILIO_OUTCOME_RETRYABLE, 0, 0, 1},
        {"reset", SRV_RESET, NULL, TWILIO_OUTCOME_RETRYABLE, 0, 0, 1},
        {"silent (timeout)", SRV_SILENT, NULL, TWILIO_OUTCOME_RETRYABLE, 0, 0, 1},
        {"empty 204", SRV_RAW, "HTTP/1.1 204 No Content\r\n\r\n", TWILIO_OUTCOME_RETRYABLE, 204, 0, 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const fault_case_t *fc = &cases[i];
        uv_loop_t loop;
        raw_srv_t srv;
        capture_t cap;
        twilio_send_t m = {.to = "+14155550100", .body = "hi"};

        uv_loop_init(&loop);
        raw_srv_start(&loop, &srv, fc->mode);
        srv.raw = fc->raw;
        twilio_client_t *tc = raw_client(&loop, &srv, 300);
        create_one(&loop, tc, &m, &cap);
        if (cap.res.verdict.outcome != fc->outcome || cap.res.http_status != fc->http_status ||
            cap.res.code != fc->code || (cap.res.curl_code != 0) != fc->curl_nonzero)
            fail_msg("%s: outcome %d status %ld code %d curl %d (%s)", fc->name, cap.res.verdict.outcome,
                     cap.res.http_status, cap.res.code, cap.res.curl_code, cap.res.message);
        assert_true(cap.res.message[0] != '\0');
        if (fc->code == 21211)
            assert_string_equal(cap.res.message, "The 'To' number is not valid.");
        if (fc->mode == SRV_SILENT)
            assert_int_equal(cap.res.curl_code, CURLE_OPERATION_TIMEDOUT);
        /* The client keeps working after the fault. */
        srv.mode = SRV_CREATED;
        create_one(&loop, tc, &m, &cap);
        if (cap.res.verdict.outcome != TWILIO_OUTCOME_OK)
            fail_msg("%s: client did not recover: %s", fc->name, cap.res.message);
        finish(&loop, tc, &srv);
    }
}

typedef struct pages {
    int calls;
    int last_seen;
    size_t total;
    char sids[8][40]; /* room for a whole sid: the test only writes short ones */
    twilio_outcome_t outcome;
} pages_t;

static int on_page(const twilio_result_t *res, const twilio_message_t *msgs, size_t n, int last, void *arg)
{
    pages_t *p = arg;
    p->calls++;
    p->outcome = res->verdict.outcome;
    for (size_t i = 0; i < n && p->total < 8; i++)
        snprintf(p->sids[p->total++], sizeof(p->sids[0]), "%s", msgs[i].sid);
    if (last)
        p->last_seen++;
    return 0;
}

static void test_raw_list_paging(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    pages_t pg;
    twilio_list_query_t q = {.to = "+14155550100", .date_sent_after = "2026-05-31", .date_sent_before = "2026-06-02",
                             .page_size = 2};
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_PAGES);
    twilio_client_t *tc = raw_client(&loop, &srv, 5000);
    memset(&pg, 0, sizeof(pg));
    assert_int_equal(twilio_message_list(tc, &q, on_page, &pg), 0);
    run_until(&loop, &pg.last_seen, 1);
    assert_int_equal(pg.calls, 2);
    assert_int_equal(pg.total, 3);
    assert_string_equal(pg.sids[0], "SM1");
    assert_string_equal(pg.sids[2], "SM3");
    assert_int_equal(pg.outcome, TWILIO_OUTCOME_OK);
    assert_non_null(strstr(srv.last_req, "GET /2010-04-01/Accounts/" SID "/Messages.json?To=%2B14155550100&PageSize=2&Page=1"));

    /* The first request carried the filters, with < and > encoded. */
    srv.mode = SRV_EVIL_NEXT;
    memset(&pg, 0, sizeof(pg));
    assert_int_equal(twilio_message_list(tc, &q, on_page, &pg), 0);
    run_until(&loop, &pg.last_seen, 1);
    assert_non_null(strstr(srv.last_req, "Messages.json?To=%2B14155550100&DateSent%3C=2026-06-02"
                                         "&DateSent%3E=2026-05-31&PageSize=2 HTTP/1.1"));
    /* The hostile next_page_uri was not followed: one page, last set. */
    assert_int_equal(pg.calls, 1);
    assert_int_equal(pg.total, 1);
    finish(&loop, tc, &srv);
}

/* Concurrency bound: 4 in flight at most, the rest queued; close fails what is left. */
static void test_raw_queue_and_close(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    capture_t caps[10];
    twilio_send_t m = {.to = "+14155550100", .body = "hi"};
    int closed = 0;
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_SILENT);
    twilio_client_t *tc = raw_client(&loop, &srv, 10000);
    memset(caps, 0, sizeof(caps));
    for (int i = 0; i < 10; i++)
        assert_int_equal(twilio_message_create(tc, &m, on_result, &caps[i]), 0);
    assert_int_equal(twilio_client_pending(tc), 10);
    while (srv.requests < 4)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(srv.requests, 4);
    assert_int_equal(srv.accepted, 4);
    twilio_client_close(tc, count_cb, &closed);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(caps[i].done, 1);
        assert_int_equal(caps[i].res.verdict.outcome, TWILIO_OUTCOME_RETRYABLE);
        assert_string_equal(caps[i].res.message, "client closed");
    }
    assert_int_equal(twilio_message_create(tc, &m, on_result, &caps[0]), TWILIO_ECLOSED);
    run_until(&loop, &closed, 1);
    finish(&loop, NULL, &srv);
}

/* The generic client alone: body cap, custom method, closing from a callback. */
typedef struct hcap {
    int done;
    long status;
    int curl_code;
    size_t body_len;
    http_client_t *close_me;
    int closed;
} hcap_t;

static void on_http(const http_response_t *r, void *arg)
{
    hcap_t *h = arg;
    h->done++;
    h->status = r->status;
    h->curl_code = r->curl_code;
    h->body_len = r->body_len;
    assert_non_null(r->body);
    if (h->close_me) {
        http_client_close(h->close_me, count_cb, &h->closed);
        h->close_me = NULL;
    }
}

static void test_http_client_limits(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    http_client_t *hc = NULL;
    http_client_config_t cfg = {.max_connections = 2, .timeout_ms = 2000, .max_response_body = 16};
    hcap_t h;
    char url[64];
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_RAW);
    srv.raw = "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", srv.port);
    assert_int_equal(http_client_new(&loop, &cfg, &hc), 0);
    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "DELETE", url, NULL, NULL, 0, NULL, on_http, &h), 0);
    assert_int_equal(h.done, 0);
    run_until(&loop, &h.done, 1);
    assert_int_equal(h.body_len, 0);
    assert_true(h.curl_code == CURLE_FILESIZE_EXCEEDED || h.curl_code == CURLE_WRITE_ERROR);
    assert_non_null(strstr(srv.last_req, "DELETE /x HTTP/1.1"));
    assert_int_equal(http_client_request(hc, "BAD METHOD", url, NULL, NULL, 0, NULL, on_http, &h),
                     HTTP_CLIENT_EINVAL);

    /* Small responses pass; the client can be closed from inside a callback. */
    srv.raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    memset(&h, 0, sizeof(h));
    h.close_me = hc;
    assert_int_equal(http_client_request(hc, "PUT", url, NULL, "abc", 3, "u:p", on_http, &h), 0);
    run_until(&loop, &h.closed, 1);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.body_len, 2);
    raw_srv_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * Easy handles are pooled and never reset, so run requests one after another on
 * a one-connection client (the same handle each time) and check that nothing of
 * one request leaks into the next: method, body, headers, credentials.
 */
static void test_http_client_no_state_leak(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    http_client_t *hc = NULL;
    http_client_config_t cfg = {.max_connections = 1, .timeout_ms = 2000};
    const char *const hdr_a[] = {"X-One: 1", "Content-Type: text/plain", NULL};
    const char *const hdr_b[] = {"X-Two: 2", NULL};
    hcap_t h;
    char url[64], got[256];
    (void)state;

    uv_loop_init(&loop);
    raw_srv_start(&loop, &srv, SRV_RAW);
    srv.raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", srv.port);
    assert_int_equal(http_client_new(&loop, &cfg, &hc), 0);

    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "POST", url, hdr_a, "a=1", 3, "user1:pw1", on_http, &h), 0);
    run_until(&loop, &h.done, 1);
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(srv.last_req, "POST /x HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.last_req, "\r\nX-One: 1\r\n"));
    assert_string_equal(strstr(srv.last_req, "\r\n\r\n") + 4, "a=1");
    expect_basic(srv.last_req, "user1:pw1");

    /* GET with other headers and other credentials: no body, no old header, new auth. */
    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "GET", url, hdr_b, NULL, 0, "user2:pw2", on_http, &h), 0);
    run_until(&loop, &h.done, 1);
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(srv.last_req, "GET /x HTTP/1.1\r\n"));
    assert_null(strstr(srv.last_req, "X-One"));
    assert_null(header_value(srv.last_req, "Content-Length", got, sizeof(got)));
    assert_non_null(strstr(srv.last_req, "\r\nX-Two: 2\r\n"));
    assert_string_equal(strstr(srv.last_req, "\r\n\r\n") + 4, "");
    expect_basic(srv.last_req, "user2:pw2");

    /* No credentials at all: no Authorization header. A custom method with a body. */
    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "PATCH", url, NULL, "zz", 2, NULL, on_http, &h), 0);
    run_until(&loop, &h.done, 1);
    assert_non_null(strstr(srv.last_req, "PATCH /x HTTP/1.1\r\n"));
    assert_null(header_value(srv.last_req, "Authorization", got, sizeof(got)));
    assert_null(strstr(srv.last_req, "X-Two"));
    assert_string_equal(strstr(srv.last_req, "\r\n\r\n") + 4, "zz");

    /* HEAD, then POST again with the first credentials: the handle is a POST again. */
    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "HEAD", url, NULL, NULL, 0, NULL, on_http, &h), 0);
    run_until(&loop, &h.done, 1);
    assert_non_null(strstr(srv.last_req, "HEAD /x HTTP/1.1\r\n"));
    memset(&h, 0, sizeof(h));
    assert_int_equal(http_client_request(hc, "POST", url, hdr_a, "b=2", 3, "user1:pw1", on_http, &h), 0);
    run_until(&loop, &h.done, 1);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.body_len, 2);
    assert_non_null(strstr(srv.last_req, "POST /x HTTP/1.1\r\n"));
    assert_string_equal(strstr(srv.last_req, "\r\n\r\n") + 4, "b=2");
    expect_basic(srv.last_req, "user1:pw1");
    assert_int_equal(srv.accepted, 1); /* all of it on one kept-alive connection */

    memset(&h, 0, sizeof(h));
    h.close_me = hc;
    assert_int_equal(http_client_request(hc, "GET", url, NULL, NULL, 0, NULL, on_http, &h), 0);
    run_until(&loop, &h.closed, 1);
    raw_srv_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * Requests that time out while still connecting: a listener that never accepts, its
 * queue full, drops the SYNs. curl 7.88 to 8.1 close such a socket without the
 * close-socket callback and then say REMOVE; watching that fd again made libuv abort
 * (epoll_ctl: EBADF). Then a request on the same client to a server that answers.
 */
static void test_http_client_connect_timeout(void **state)
{
    uv_loop_t loop;
    raw_srv_t srv;
    http_client_t *hc = NULL;
    http_client_config_t cfg = {.max_connections = 4, .timeout_ms = 300};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    int lfd, filler[3];
    hcap_t h[4];
    char url[64];
    (void)state;

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    for (int i = 0; i < 3; i++) {
        filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(filler[i] >= 0);
        assert_true(connect(filler[i], (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sa.sin_port));

    uv_loop_init(&loop);
    assert_int_equal(http_client_new(&loop, &cfg, &hc), 0);
    memset(h, 0, sizeof(h));
    for (int i = 0; i < 4; i++)
        assert_int_equal(http_client_request(hc, "POST", url, NULL, "a=1", 3, NULL, on_http, &h[i]), 0);
    for (int i = 0; i < 4; i++) {
        run_until(&loop, &h[i].done, 1);
        assert_int_equal(h[i].curl_code, CURLE_OPERATION_TIMEDOUT);
    }
    for (int i = 0; i < 3; i++)
        close(filler[i]);
    close(lfd);

    raw_srv_start(&loop, &srv, SRV_RAW);
    srv.raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", srv.port);
    memset(h, 0, sizeof(h));
    h[0].close_me = hc;
    assert_int_equal(http_client_request(hc, "GET", url, NULL, NULL, 0, NULL, on_http, &h[0]), 0);
    run_until(&loop, &h[0].closed, 1);
    assert_int_equal(h[0].status, 200);
    raw_srv_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ------------------------------------------------------------------ simulator */

typedef struct sim {
    pid_t pid;
    int out_fd;
    char base[64];
} sim_t;

/* Spawns the simulator on port 0 with extra flags; returns 0 or skips the test. */
static int sim_start(sim_t *s, const char *const *extra)
{
    const char *bin = getenv("TWILIO_SIM_BIN");
    const char *argv[32];
    int n = 0, fds[2], port = 0;
    posix_spawn_file_actions_t fa;
    char line[256];
    size_t len = 0;

    if (bin == NULL || access(bin, X_OK) != 0) {
        print_message("TWILIO_SIM_BIN not set or not executable: skipping\n");
        return -1;
    }
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--account-sid";
    argv[n++] = SID;
    argv[n++] = "--auth-token";
    argv[n++] = TOKEN;
    for (size_t i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    assert_int_equal(posix_spawn(&s->pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    s->out_fd = fds[0];
    while (len < sizeof(line) - 1) {
        struct pollfd pfd = {.fd = s->out_fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        ssize_t r = read(s->out_fd, line + len, 1);
        if (r <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    if (sscanf(line, "listening on 127.0.0.1:%d", &port) != 1 || port <= 0) {
        print_message("simulator did not report its port (got \"%s\"): skipping\n", line);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        close(s->out_fd);
        return -1;
    }
    snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", port);
    return 0;
}

static void sim_stop(sim_t *s)
{
    int st;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &st, 0);
    close(s->out_fd);
}

#define SIM_OR_SKIP(s, extra)          \
    do {                               \
        if (sim_start((s), (extra)) != 0) { \
            skip();                    \
        }                              \
    } while (0)

static void test_sim_create_fetch_list(void **state)
{
    sim_t sim;
    uv_loop_t loop;
    capture_t cap;
    pages_t pg;
    char sid[40];
    (void)state;

    SIM_OR_SKIP(&sim, NULL);
    uv_loop_init(&loop);
    twilio_client_t *tc = client_for(&loop, sim.base, TOKEN, 5000);

    twilio_send_t m = {.to = "+14155550123", .body = "Hello from herald", .from = "+15005550006"};
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    assert_int_equal(cap.res.http_status, 201);
    assert_int_equal(strlen(cap.res.msg.sid), 34);
    assert_memory_equal(cap.res.msg.sid, "SM", 2);
    assert_string_equal(cap.res.msg.status, "queued");
    assert_int_equal(cap.res.msg.num_segments, 1);
    snprintf(sid, sizeof(sid), "%s", cap.res.msg.sid);

    twilio_send_t mg = {.to = "+14155550124", .body = "Via service",
                        .messaging_service_sid = "MG00000000000000000000000000000009"};
    create_one(&loop, tc, &mg, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    assert_string_equal(cap.res.msg.status, "accepted");
    assert_string_equal(cap.res.msg.messaging_service_sid, "MG00000000000000000000000000000009");

    memset(&cap, 0, sizeof(cap));
    assert_int_equal(twilio_message_fetch(tc, sid, on_result, &cap), 0);
    run_until(&loop, &cap.done, 1);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    assert_string_equal(cap.res.msg.sid, sid);
    assert_string_equal(cap.res.msg.to, "+14155550123");

    memset(&cap, 0, sizeof(cap));
    assert_int_equal(twilio_message_fetch(tc, "SM00000000000000000000000000000000", on_result, &cap), 0);
    run_until(&loop, &cap.done, 1);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_TERMINAL);
    assert_int_equal(cap.res.http_status, 404);

    /* Five messages to one number, listed two per page. */
    twilio_send_t five = {.to = "+14155550177", .body = "page me", .from = "+15005550006"};
    for (int i = 0; i < 5; i++) {
        create_one(&loop, tc, &five, &cap);
        assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_OK);
    }
    twilio_list_query_t q = {.to = "+14155550177", .page_size = 2};
    memset(&pg, 0, sizeof(pg));
    assert_int_equal(twilio_message_list(tc, &q, on_page, &pg), 0);
    run_until(&loop, &pg.last_seen, 1);
    assert_int_equal(pg.outcome, TWILIO_OUTCOME_OK);
    assert_int_equal(pg.calls, 3);
    assert_int_equal(pg.total, 5);
    finish(&loop, tc, NULL);
    sim_stop(&sim);
}

typedef struct magic {
    const char *from, *to;
    int code;
    int suppress;
} magic_t;

static void test_sim_magic_numbers(void **state)
{
    static const magic_t cases[] = {
        {"+15005550006", "+15005550001", 21211, 0}, {"+15005550006", "+15005550002", 21612, 0},
        {"+15005550006", "+15005550003", 21408, 0}, {"+15005550006", "+15005550004", 21610, 1},
        {"+15005550006", "+15005550009", 21614, 0}, {"+15005550001", "+14155550100", 21212, 0},
        {"+15005550007", "+14155550100", 21606, 0},
    };
    sim_t sim;
    uv_loop_t loop;
    capture_t cap;
    (void)state;

    SIM_OR_SKIP(&sim, NULL);
    uv_loop_init(&loop);
    twilio_client_t *tc = client_for(&loop, sim.base, TOKEN, 5000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        twilio_send_t m = {.to = cases[i].to, .from = cases[i].from, .body = "magic"};
        create_one(&loop, tc, &m, &cap);
        if (cap.res.verdict.outcome != TWILIO_OUTCOME_TERMINAL || cap.res.code != cases[i].code ||
            (int)cap.res.verdict.suppress != cases[i].suppress)
            fail_msg("%s -> %s: outcome %d code %d (%s)", cases[i].from, cases[i].to, cap.res.verdict.outcome,
                     cap.res.code, cap.res.message);
        assert_int_equal(cap.res.http_status, 400);
        assert_true(cap.res.message[0] != '\0');
    }
    /* Missing Body → 21602 from the simulator (media-less and body-less is refused here first). */
    twilio_send_t big = {.to = "+14155550100", .from = "+15005550006", .body = NULL};
    char body[1700];
    memset(body, 'a', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    big.body = body;
    create_one(&loop, tc, &big, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_TERMINAL);
    assert_int_equal(cap.res.code, 21617);
    finish(&loop, tc, NULL);
    sim_stop(&sim);
}

static void test_sim_faults(void **state)
{
    static const char *const f429[] = {"--fail-429", "1", NULL};
    static const char *const lose[] = {"--lose-response", "1", NULL};
    static const char *const f500[] = {"--fail-500", "1", NULL};
    sim_t sim;
    uv_loop_t loop;
    capture_t cap;
    twilio_send_t m = {.to = "+14155550100", .from = "+15005550006", .body = "x"};
    (void)state;

    SIM_OR_SKIP(&sim, f429);
    uv_loop_init(&loop);
    twilio_client_t *tc = client_for(&loop, sim.base, TOKEN, 5000);
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_RETRYABLE);
    assert_int_equal(cap.res.http_status, 429);
    assert_int_equal(cap.res.code, 20429);
    finish(&loop, tc, NULL);
    sim_stop(&sim);

    SIM_OR_SKIP(&sim, lose);
    uv_loop_init(&loop);
    tc = client_for(&loop, sim.base, TOKEN, 5000);
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_RETRYABLE);
    assert_int_equal(cap.res.http_status, 0);
    assert_true(cap.res.curl_code == CURLE_GOT_NOTHING || cap.res.curl_code == CURLE_RECV_ERROR ||
                cap.res.curl_code == CURLE_SEND_ERROR);
    finish(&loop, tc, NULL);
    sim_stop(&sim);

    SIM_OR_SKIP(&sim, f500);
    uv_loop_init(&loop);
    tc = client_for(&loop, sim.base, TOKEN, 5000);
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_RETRYABLE);
    assert_int_equal(cap.res.http_status, 500);
    finish(&loop, tc, NULL);
    sim_stop(&sim);
}

static void test_sim_auth(void **state)
{
    sim_t sim;
    uv_loop_t loop;
    capture_t cap;
    twilio_send_t m = {.to = "+14155550100", .from = "+15005550006", .body = "x"};
    static const char *const keys[] = {"--api-key", "SK00000000000000000000000000000002:key-secret", NULL};
    (void)state;

    SIM_OR_SKIP(&sim, keys);
    uv_loop_init(&loop);
    twilio_client_t *tc = client_for(&loop, sim.base, "wrong-token", 5000);
    create_one(&loop, tc, &m, &cap);
    assert_int_equal(cap.res.verdict.outcome, TWILIO_OUTCOME_TERMINAL);
    assert_int_equal(cap.res.http_status, 401);
    assert_int_equal(cap.res.code, 20003);
    assert_true(cap.res.verdict.pause);
    finish(&loop, tc, NULL);

    /* API key auth, with a wrong auth token that must not be used. */
    twilio_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.account_sid = SID;
    cfg.auth_token = "wrong-token";
    cfg.api_key_sid = "SK00000000000000000000000000000002";
    cfg.api_key_secret = "key-secret";
    cfg.base_url = sim.base;
    cfg.from_number = "+15005550006";
    uv_loop_init(&loop);
    tc = NULL;
    assert_int_equal(twilio_client_new(&loop, &cfg, &tc), 0);
    create_one(&loop, tc, &m, &cap);
    if (cap.res.verdict.outcome != TWILIO_OUTCOME_OK)
        fail_msg("API key auth: HTTP %ld code %d %s", cap.res.http_status, cap.res.code, cap.res.message);
    finish(&loop, tc, NULL);
    sim_stop(&sim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_create_form_and_reuse),
        cmocka_unit_test(test_raw_api_key_preferred),
        cmocka_unit_test(test_raw_lost_response_not_resent),
        cmocka_unit_test(test_raw_faults),
        cmocka_unit_test(test_raw_list_paging),
        cmocka_unit_test(test_raw_queue_and_close),
        cmocka_unit_test(test_http_client_limits),
        cmocka_unit_test(test_http_client_no_state_leak),
        cmocka_unit_test(test_http_client_connect_timeout),
        cmocka_unit_test(test_sim_create_fetch_list),
        cmocka_unit_test(test_sim_magic_numbers),
        cmocka_unit_test(test_sim_faults),
        cmocka_unit_test(test_sim_auth),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("HERALD_LOG_LEVEL"))
        log_set_level_name(getenv("HERALD_LOG_LEVEL"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
