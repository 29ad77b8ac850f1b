/*
 * The HTTP server over real loopback sockets: the server runs its own libuv loop on
 * a thread, the test talks to it with blocking sockets. Covers keep-alive,
 * pipelining, chunked bodies, async responses, the router's 404/405 and path
 * parameters, 400 on garbage, 413, 414, 431, the header timeout against a slowloris
 * client, Expect: 100-continue, and graceful shutdown with a request in flight.
 * Streamed bodies (http_router_add_stream): pieces bounded in size, chunked and
 * Content-Length bodies, keep-alive and pipelining after a stream, backpressure (a
 * consumer that holds a piece stops the server reading: the client cannot push more
 * than the socket buffers), 413 both declared and while streaming, an early refusal
 * without "100 Continue", a client that vanishes mid-body, and the silence timeout.
 * The idle keep-alive timeout, on a second server with a short one: an idle
 * connection (after a response, or before any request) is closed once it expires,
 * and one that keeps sending requests is not.
 * Ends by closing every handle and asserting uv_loop_close() == 0.
 */
#include "http/router.h"
#include "http/server.h"

#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The second server's idle_timeout_ms (the first one's is 2 s). */
#define IDLE_MS 300

typedef struct slow {
    uv_timer_t timer;
    http_request_t *req;
} slow_t;

static uv_loop_t loop;
static uv_thread_t thread;
static uv_async_t stop_async;
static http_server_t *server;
static http_server_t *idle_server; /* idle_timeout_ms = IDLE_MS */
static http_router_t *router;
static int port;
static int idle_port;
static int shutdown_done;
static int loop_closed_rc = -1;

static void echo(http_request_t *req, void *arg)
{
    (void)arg;
    char *out = http_arena_alloc(req->arena, req->body_len + 256);
    int n = snprintf(out, req->body_len + 256, "%s %s %s", req->method, req->target, req->body);
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
}

static void item(http_request_t *req, void *arg)
{
    (void)arg;
    char out[128];
    int n = snprintf(out, sizeof(out), "sid=%s", http_request_param(req, "Sid"));
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
}

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    slow_t *s = t->data;
    http_respond(s->req, 200, "text/plain", NULL, "slow", 4);
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow(http_request_t *req, void *arg)
{
    (void)arg;
    slow_t *s = calloc(1, sizeof(*s));
    s->req = req;
    uv_timer_init(&loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, 300, 0);
}

/* ---- a streaming consumer ---- */

/*
 * POST /upload?...: reads the body piece by piece and answers "n=BYTES hash=FNV
 * pieces=K max=LARGEST". Query flags: "refuse" answers 415 without reading; "async"
 * gives each piece back from a timer; "hold" keeps the first piece until the test
 * fires release_async; "max=N" caps the body.
 */
typedef struct upload {
    http_request_t *req;
    uint64_t n;
    uint32_t hash;
    size_t pieces, max_piece;
    int async, hold;
    uv_timer_t timer;
} upload_t;

static uv_async_t release_async;
static upload_t *_Atomic held_upload;
static atomic_int last_stream_error = -2; /* status of the last on_error, -2: none */
static atomic_int uploads_done;           /* uploads that ended (answered or failed) */

static void upload_closed(uv_handle_t *h)
{
    free(h->data);
}

static void upload_finish(upload_t *u)
{
    atomic_fetch_add(&uploads_done, 1);
    uv_close((uv_handle_t *)&u->timer, upload_closed);
}

static void upload_ack(uv_timer_t *t)
{
    upload_t *u = t->data;
    http_request_body_next(u->req);
}

static void upload_data(http_request_t *req, const char *data, size_t len, void *arg)
{
    upload_t *u = arg;
    assert_ptr_equal(req, u->req);
    for (size_t i = 0; i < len; i++)
        u->hash = (u->hash ^ (unsigned char)data[i]) * 16777619u;
    u->n += len;
    u->pieces++;
    if (len > u->max_piece)
        u->max_piece = len;
    if (u->hold) {
        u->hold = 0;
        atomic_store(&held_upload, u);
        return;
    }
    if (u->async)
        uv_timer_start(&u->timer, upload_ack, 5, 0);
    else
        http_request_body_next(req);
}

static void upload_end(http_request_t *req, void *arg)
{
    upload_t *u = arg;
    char out[160];
    int n = snprintf(out, sizeof(out), "n=%llu hash=%08x pieces=%zu max=%zu", (unsigned long long)u->n,
                     u->hash, u->pieces, u->max_piece);
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
    upload_finish(u);
}

static void upload_error(http_request_t *req, int status, void *arg)
{
    upload_t *u = arg;
    atomic_store(&last_stream_error, status);
    if (status == 0)
        http_request_reset(req);
    else
        http_respond_status(req, status);
    upload_finish(u);
}

static void upload(http_request_t *req, void *arg)
{
    (void)arg;
    static const http_body_reader_t reader = {upload_data, upload_end, upload_error};
    const char *mx = strstr(req->query, "max=");
    uint64_t max = mx ? strtoull(mx + 4, NULL, 10) : 64u << 20;
    assert_int_equal(req->streaming, 1);
    assert_int_equal(req->body_len, 0);
    if (strstr(req->query, "refuse")) {
        http_respond_status(req, 415);
        return;
    }
    upload_t *u = calloc(1, sizeof(*u));
    u->req = req;
    u->hash = 2166136261u;
    u->async = strstr(req->query, "async") != NULL;
    u->hold = strstr(req->query, "hold") != NULL;
    uv_timer_init(&loop, &u->timer);
    u->timer.data = u;
    int rc = http_request_read_body(req, &reader, max, u);
    if (rc == HTTP_ETOOBIG) {
        http_respond_status(req, 413);
        uv_close((uv_handle_t *)&u->timer, upload_closed);
        return;
    }
    assert_int_equal(rc, 0);
}

static void on_release(uv_async_t *a)
{
    (void)a;
    upload_t *u = atomic_exchange(&held_upload, NULL);
    if (u)
        http_request_body_next(u->req);
}

static void on_shutdown_done(void *arg)
{
    (void)arg;
    shutdown_done++;
}

static void on_stop(uv_async_t *a)
{
    http_server_shutdown(server, on_shutdown_done, NULL);
    http_server_shutdown(idle_server, on_shutdown_done, NULL);
    uv_close((uv_handle_t *)a, NULL);
    uv_close((uv_handle_t *)&release_async, NULL);
}

static void loop_thread(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    http_router_free(router);
    loop_closed_rc = uv_loop_close(&loop);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(uv_loop_init(&loop), 0);
    router = http_router_new();
    assert_int_equal(http_router_add(router, "*", "/echo", echo, NULL), 0);
    assert_int_equal(http_router_add(router, "GET", "/items/{Sid}.json", item, NULL), 0);
    assert_int_equal(http_router_add(router, "GET", "/slow", slow, NULL), 0);
    assert_int_equal(http_router_add(router, "GET", "/only-get", echo, NULL), 0);
    assert_int_equal(http_router_add(router, "GET", "/bad/{x", echo, NULL), HTTP_ROUTER_EPATTERN);
    assert_int_equal(http_router_add_stream(router, "POST", "/upload", upload, NULL), 0);
    http_server_config_t cfg = {.max_header_bytes = 4096,
                                .max_headers = 20,
                                .max_url = 1024,
                                .max_body = 1024,
                                .header_timeout_ms = 400,
                                .body_timeout_ms = 400,
                                .idle_timeout_ms = 2000,
                                .shutdown_timeout_ms = 3000,
                                .stream_select = http_router_streams};
    http_server_new(&loop, &cfg, http_router_dispatch, router, &server);
    assert_int_equal(http_server_listen(server, "127.0.0.1", 0), 0);
    port = http_server_port(server);
    assert_true(port > 0);
    http_server_config_t idle_cfg = {
        .header_timeout_ms = 5000, .body_timeout_ms = 5000, .idle_timeout_ms = IDLE_MS};
    http_server_new(&loop, &idle_cfg, http_router_dispatch, router, &idle_server);
    assert_int_equal(http_server_listen(idle_server, "127.0.0.1", 0), 0);
    idle_port = http_server_port(idle_server);
    assert_true(idle_port > 0);
    assert_int_equal(uv_async_init(&loop, &stop_async, on_stop), 0);
    assert_int_equal(uv_async_init(&loop, &release_async, on_release), 0);
    assert_int_equal(uv_thread_create(&thread, loop_thread, NULL), 0);
    return 0;
}

/* ---- client side ---- */

static int dial_port(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int dial(void)
{
    return dial_port(port);
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void sends(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads until n complete responses (Content-Length framed) are in out; returns bytes read. */
static size_t read_responses(int fd, int n, char *out, size_t cap)
{
    size_t len = 0;
    int done = 0;
    size_t pos = 0;
    while (done < n) {
        char *end = NULL;
        out[len] = '\0';
        if ((end = strstr(out + pos, "\r\n\r\n")) != NULL) {
            const char *cl = strstr(out + pos, "Content-Length: ");
            size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
            size_t total = (size_t)(end + 4 - out) + body;
            if (len >= total) {
                done++;
                pos = total;
                continue;
            }
        }
        assert_true(len + 1 < cap);
        ssize_t r = recv(fd, out + len, cap - len - 1, 0);
        if (r <= 0)
            fail_msg("connection ended after %d of %d responses: %.*s", done, n, (int)len, out);
        len += (size_t)r;
    }
    out[len] = '\0';
    return len;
}

/* Returns 1 when the server closes the connection within the receive timeout. */
static int closed_by_peer(int fd)
{
    char b[4096];
    for (;;) {
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0)
            return 1;
        if (r < 0)
            return errno == ECONNRESET;
    }
}

/* ---- tests ---- */

static void test_keep_alive(void **state)
{
    (void)state;
    int fd = dial();
    char buf[8192];
    for (int i = 0; i < 3; i++) {
        sends(fd, "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        read_responses(fd, 1, buf, sizeof(buf));
        assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
        assert_non_null(strstr(buf, "POST /echo?x=1 hello"));
        assert_null(strstr(buf, "Connection: close"));
    }
    close(fd);
}

static void test_pipelining(void **state)
{
    (void)state;
    int fd = dial();
    char buf[16384];
    sends(fd, "GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
              "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
              "POST /echo?n=3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
              "GET /items/SM123.json HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 4, buf, sizeof(buf));
    const char *a = strstr(buf, "GET /echo?n=1");
    const char *b = strstr(buf, "slow");
    const char *c = strstr(buf, "POST /echo?n=3 abc");
    const char *d = strstr(buf, "sid=SM123");
    assert_true(a && b && c && d);
    assert_true(a < b && b < c && c < d);
    close(fd);
}

static void test_chunked_and_continue(void **state)
{
    (void)state;
    int fd = dial();
    char buf[8192];
    sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
              "chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "POST /echo Wikipedia"));
    /* Trailers are accepted (and not exposed): the fuzzer found they used to move the headers. */
    sends(fd, "POST /echo?t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
              "X-Trailer-One: 1\r\nX-Trailer-Two: 2\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "POST /echo?t abc"));
    sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 100 Continue\r\n\r\n"));
    sends(fd, "body");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "POST /echo body"));
    /* Pipelined requests that each expect "100 Continue" (the fuzzer crashed libuv with these). */
    sends(fd,
          "POST /echo?p1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nBody=\r\n0\r\n\r\n"
          "POST /echo?p2 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
          "GET /echo?p3 HTTP/1.1\r\nHost: t\r\n\r\n");
    memset(buf, 0, sizeof(buf));
    size_t got = 0;
    while (!strstr(buf, "GET /echo?p3")) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_non_null(strstr(buf, "POST /echo?p1 Body="));
    assert_non_null(strstr(buf, "POST /echo?p2 ok"));
    close(fd);
}

static void test_router_errors(void **state)
{
    (void)state;
    int fd = dial();
    char buf[8192];
    sends(fd, "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 404 Not Found"));
    sends(fd, "DELETE /only-get HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 405 Method Not Allowed"));
    assert_non_null(strstr(buf, "Allow: GET"));
    sends(fd, "GET /items/.json HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 404"));
    close(fd);
}

static void expect_refusal(const char *request, size_t len, const char *status_line)
{
    int fd = dial();
    char buf[8192];
    send_all(fd, request, len);
    read_responses(fd, 1, buf, sizeof(buf));
    if (!strstr(buf, status_line))
        fail_msg("want %s, got %.80s", status_line, buf);
    assert_non_null(strstr(buf, "Connection: close"));
    assert_true(closed_by_peer(fd));
    close(fd);
}

static void test_bad_requests(void **state)
{
    (void)state;
    const char garbage[] = "\x16\x03\x01 garbage\r\n\r\n";
    expect_refusal(garbage, sizeof(garbage) - 1, "HTTP/1.1 400 Bad Request");
    const char bad_cl[] = "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n";
    expect_refusal(bad_cl, sizeof(bad_cl) - 1, "HTTP/1.1 400");
    const char big_body[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n";
    expect_refusal(big_body, sizeof(big_body) - 1, "HTTP/1.1 413 Payload Too Large");

    char req[16384];
    int n = snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: %06000d\r\n\r\n", 0);
    expect_refusal(req, (size_t)n, "HTTP/1.1 431");
    size_t o = (size_t)snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 25; i++)
        o += (size_t)snprintf(req + o, sizeof(req) - o, "X-H%d: v\r\n", i);
    o += (size_t)snprintf(req + o, sizeof(req) - o, "\r\n");
    expect_refusal(req, o, "HTTP/1.1 431");
    n = snprintf(req, sizeof(req), "GET /echo?q=%01200d HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    expect_refusal(req, (size_t)n, "HTTP/1.1 414");

    /* A chunked body over the cap is refused while it streams in. */
    int fd = dial();
    sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        sends(fd, "2bc\r\n");
        send_all(fd, chunk, sizeof(chunk));
        sends(fd, "\r\n");
    }
    char buf[4096];
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    close(fd);
}

static void test_slowloris(void **state)
{
    (void)state;
    int fd = dial();
    sends(fd, "GET /echo HTTP/1.1\r\nHost: t\r\n");
    usleep(150 * 1000);
    sends(fd, "X-Slow: 1\r\n");
    /* No more bytes: the 400 ms header timeout must close the socket. */
    assert_true(closed_by_peer(fd));
    close(fd);

    /* A slow body times out as well. */
    fd = dial();
    sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_true(closed_by_peer(fd));
    close(fd);
}

/* ---- streamed bodies ---- */

static uint32_t fnv(const char *d, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)d[i]) * 16777619u;
    return h;
}

static char *pattern(size_t n)
{
    char *b = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (char)(x >> 16);
    }
    return b;
}

/* Waits up to 3 s for uploads_done to reach want. */
static void wait_uploads(int want)
{
    for (int i = 0; i < 300 && atomic_load(&uploads_done) < want; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&uploads_done), want);
}

static void check_upload_answer(const char *buf, size_t n, uint32_t hash)
{
    char want[96];
    snprintf(want, sizeof(want), "n=%zu hash=%08x ", n, hash);
    if (!strstr(buf, want))
        fail_msg("want %s in %.200s", want, buf);
    const char *m = strstr(buf, " max=");
    assert_non_null(m);
    /* A piece is at most HTTP_STREAM_CHUNK plus one read buffer (64 KiB). */
    assert_true(strtoul(m + 5, NULL, 10) <= HTTP_STREAM_CHUNK + 64 * 1024);
}

static void test_stream_content_length(void **state)
{
    (void)state;
    int fd = dial();
    size_t n = 3 * 1024 * 1024 + 123;
    char *body = pattern(n);
    char hdr[128], buf[8192];
    snprintf(hdr, sizeof(hdr), "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
    sends(fd, hdr);
    send_all(fd, body, n);
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_null(strstr(buf, "Connection: close"));
    check_upload_answer(buf, n, fnv(body, n, 2166136261u));
    assert_true(strtoul(strstr(buf, "pieces=") + 7, NULL, 10) >= n / (HTTP_STREAM_CHUNK + 64 * 1024));
    /* Keep-alive and pipelining go on after a streamed body; an empty one ends at once. */
    sends(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
              "GET /echo?after HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 2, buf, sizeof(buf));
    assert_non_null(strstr(buf, "n=0 hash=811c9dc5 pieces=0"));
    assert_non_null(strstr(buf, "GET /echo?after"));
    free(body);
    close(fd);
}

static void test_stream_chunked_continue(void **state)
{
    (void)state;
    int fd = dial();
    size_t n = 2 * 1024 * 1024 + 7, off = 0;
    char *body = pattern(n);
    char buf[8192], line[32];
    sends(fd, "POST /upload?async HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
    /* "100 Continue" comes once the handler asks for the body. */
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 100 Continue\r\n\r\n"));
    for (size_t k = 1; off < n; k++) {
        size_t len = (k * 7919) % 100000 + 1;
        if (len > n - off)
            len = n - off;
        snprintf(line, sizeof(line), "%zx\r\n", len);
        sends(fd, line);
        send_all(fd, body + off, len);
        sends(fd, "\r\n");
        off += len;
    }
    sends(fd, "0\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    check_upload_answer(buf, n, fnv(body, n, 2166136261u));
    free(body);
    close(fd);
}

static void test_stream_backpressure(void **state)
{
    (void)state;
    int fd = dial();
    const size_t total = 64u << 20;
    size_t sent = 0;
    char chunk[64 * 1024], buf[8192], hdr[128];
    uint32_t hash = 2166136261u;
    memset(chunk, 'a', sizeof(chunk));
    snprintf(hdr, sizeof(hdr), "POST /upload?hold HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", total);
    sends(fd, hdr);
    /* The consumer holds its first piece: the server must stop reading, so the kernel stops taking bytes. */
    int idle_ms = 0;
    while (sent < total && idle_ms < 400) {
        ssize_t w = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            hash = fnv(chunk, (size_t)w, hash);
            sent += (size_t)w;
            idle_ms = 0;
        } else {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            usleep(20 * 1000);
            idle_ms += 20;
        }
    }
    assert_non_null(atomic_load(&held_upload));
    print_message("backpressure: %zu bytes taken while the consumer held a piece\n", sent);
    if (sent >= 32u << 20)
        fail_msg("the server kept reading while its consumer was busy: %zu bytes taken", sent);
    uv_async_send(&release_async);
    while (sent < total) {
        size_t len = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);
        send_all(fd, chunk, len);
        hash = fnv(chunk, len, hash);
        sent += len;
    }
    read_responses(fd, 1, buf, sizeof(buf));
    check_upload_answer(buf, total, hash);
    close(fd);
}

static void test_stream_limits(void **state)
{
    (void)state;
    /* Declared too large: refused before any "100 Continue". */
    const char big[] = "POST /upload?max=1000 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                       "Content-Length: 5000\r\n\r\n";
    expect_refusal(big, sizeof(big) - 1, "HTTP/1.1 413 Payload Too Large");
    /* Refused by the handler before it reads: no "100 Continue", connection closed. */
    const char refuse[] = "POST /upload?refuse HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                          "Content-Length: 1000\r\n\r\n";
    expect_refusal(refuse, sizeof(refuse) - 1, "HTTP/1.1 415 Unsupported Media Type");

    /* Chunked past the cap: the consumer hears 413 while the body streams in. */
    int before = atomic_load(&uploads_done);
    int fd = dial();
    char chunk[10000], buf[4096];
    memset(chunk, 'q', sizeof(chunk));
    sends(fd, "POST /upload?max=100000 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        if (send(fd, "2710\r\n", 6, MSG_NOSIGNAL) < 0 || send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) < 0 ||
            send(fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
            break;
    }
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    assert_non_null(strstr(buf, "Connection: close"));
    assert_true(closed_by_peer(fd));
    close(fd);
    wait_uploads(before + 1);
    assert_int_equal(atomic_load(&last_stream_error), 413);
}

static void test_stream_client_gone(void **state)
{
    (void)state;
    char chunk[64 * 1024], buf[4096];
    memset(chunk, 'z', sizeof(chunk));

    /* A reset mid-body: the consumer hears 0 (or 400 if the FIN was seen first). */
    int before = atomic_load(&uploads_done);
    int fd = dial();
    sends(fd, "POST /upload?async HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n");
    for (int i = 0; i < 16; i++)
        send_all(fd, chunk, sizeof(chunk));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    wait_uploads(before + 1);
    int e = atomic_load(&last_stream_error);
    assert_true(e == 0 || e == 400);

    /* A half-close mid-body: the body can never complete; the answer still reaches the client. */
    fd = dial();
    sends(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    send_all(fd, chunk, sizeof(chunk));
    shutdown(fd, SHUT_WR);
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 400"));
    close(fd);
    wait_uploads(before + 2);
    assert_int_equal(atomic_load(&last_stream_error), 400);

    /* The whole body then a half-close is fine. */
    fd = dial();
    sends(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n");
    send_all(fd, chunk, sizeof(chunk));
    shutdown(fd, SHUT_WR);
    read_responses(fd, 1, buf, sizeof(buf));
    check_upload_answer(buf, sizeof(chunk), fnv(chunk, sizeof(chunk), 2166136261u));
    close(fd);

    /* And the server goes on serving. */
    fd = dial();
    sends(fd, "GET /echo?still HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "GET /echo?still"));
    close(fd);
}

static void test_stream_silence(void **state)
{
    (void)state;
    int before = atomic_load(&uploads_done);
    int fd = dial();
    sends(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789");
    /* No more bytes: after the 400 ms body timeout the consumer hears 408 and the socket closes. */
    assert_true(closed_by_peer(fd));
    close(fd);
    wait_uploads(before + 1);
    assert_int_equal(atomic_load(&last_stream_error), 408);
}

/* ---- idle keep-alive timeout ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/*
 * Waits for the server to close fd without sending anything (FIN or RST) and checks
 * that this happened between IDLE_MS (less 50 ms of timer granularity) and IDLE_MS
 * plus 2 s (a loaded or sanitized run) after since.
 */
static void expect_idle_close(int fd, double since, const char *what)
{
    char b[256];
    ssize_t r = recv(fd, b, sizeof(b), 0);
    double ms = now_ms() - since;
    if (r > 0)
        fail_msg("%s: %zd unexpected bytes while idle: %.*s", what, r, (int)r, b);
    if (r < 0 && errno != ECONNRESET)
        fail_msg("%s: still open after %.0f ms (errno %d)", what, ms, errno);
    print_message("idle timeout: %s closed after %.0f ms (idle_timeout_ms %d)\n", what, ms, IDLE_MS);
    if (ms < IDLE_MS - 50 || ms > IDLE_MS + 2000)
        fail_msg("%s: closed after %.0f ms, want about %d", what, ms, IDLE_MS);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    char buf[4096], req[96];

    /* Kept alive after a response, then silent: closed once the idle timeout expires. */
    int fd = dial_port(idle_port);
    sends(fd, "GET /echo?idle HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    double t0 = now_ms();
    assert_non_null(strstr(buf, "GET /echo?idle"));
    assert_null(strstr(buf, "Connection: close"));
    expect_idle_close(fd, t0, "after a response");
    close(fd);

    /* A connection that never sends a request is idle from the start. */
    t0 = now_ms();
    fd = dial_port(idle_port);
    expect_idle_close(fd, t0, "without a request");
    close(fd);

    /*
     * Activity re-arms the timer: a request every IDLE_MS / 3 for 4 x IDLE_MS is
     * answered every time on the one connection (read_responses() fails if the server
     * closes it), so the deadline counts from the last response, not from the connect.
     */
    fd = dial_port(idle_port);
    t0 = now_ms();
    int n = 0;
    while (now_ms() - t0 < 4 * IDLE_MS) {
        snprintf(req, sizeof(req), "GET /echo?n=%d HTTP/1.1\r\nHost: t\r\n\r\n", n);
        sends(fd, req);
        read_responses(fd, 1, buf, sizeof(buf));
        snprintf(req, sizeof(req), "GET /echo?n=%d", n);
        assert_non_null(strstr(buf, req));
        assert_null(strstr(buf, "Connection: close"));
        n++;
        usleep(IDLE_MS / 3 * 1000);
    }
    assert_true(n >= 4);
    print_message("idle timeout: %d requests over %.0f ms on one connection\n", n, now_ms() - t0);
    /* And once it stops, the idle timeout closes it after all. */
    sends(fd, "GET /echo?last HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    t0 = now_ms();
    assert_non_null(strstr(buf, "GET /echo?last"));
    expect_idle_close(fd, t0, "after the last of many requests");
    close(fd);

    /* The other server (idle_timeout_ms 2 s) keeps a connection idle that long open. */
    fd = dial();
    sends(fd, "GET /echo?long HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    usleep(2 * IDLE_MS * 1000);
    sends(fd, "GET /echo?still-open HTTP/1.1\r\nHost: t\r\n\r\n");
    read_responses(fd, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "GET /echo?still-open"));
    close(fd);
}

static void test_graceful_shutdown(void **state)
{
    (void)state;
    int idle = dial();
    int busy = dial();
    sends(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    usleep(50 * 1000);
    uv_async_send(&stop_async);
    char buf[4096];
    read_responses(busy, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "Connection: close"));
    assert_non_null(strstr(buf, "slow"));
    assert_true(closed_by_peer(busy));
    assert_true(closed_by_peer(idle));
    close(busy);
    close(idle);
    uv_thread_join(&thread);
    assert_int_equal(shutdown_done, 2);
    assert_int_equal(loop_closed_rc, 0);
    /* Nothing listens any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
}

static int teardown_after_shutdown(void **state)
{
    (void)state;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_chunked_and_continue),
        cmocka_unit_test(test_router_errors),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_stream_content_length),
        cmocka_unit_test(test_stream_chunked_continue),
        cmocka_unit_test(test_stream_backpressure),
        cmocka_unit_test(test_stream_limits),
        cmocka_unit_test(test_stream_client_gone),
        cmocka_unit_test(test_stream_silence),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_graceful_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown_after_shutdown);
}
