/*
 * The HTTP server over real loopback sockets: the server runs its own libuv loop on
 * a thread, the test talks to it with blocking sockets. Covers keep-alive,
 * pipelining, chunked bodies, async responses, the router's 404/405 and path
 * parameters, 400 on garbage, 413, 414, 431, the header timeout against a slowloris
 * client, Expect: 100-continue, and graceful shutdown with a request in flight.
 * Ends by closing every handle and asserting uv_loop_close() == 0.
 */
#include "http/router.h"
#include "http/server.h"

#include <setjmp.h>
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
#include <unistd.h>

typedef struct slow {
    uv_timer_t timer;
    http_request_t *req;
} slow_t;

static uv_loop_t loop;
static uv_thread_t thread;
static uv_async_t stop_async;
static http_server_t *server;
static http_router_t *router;
static int port;
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

static void on_shutdown_done(void *arg)
{
    (void)arg;
    shutdown_done = 1;
}

static void on_stop(uv_async_t *a)
{
    http_server_shutdown(server, on_shutdown_done, NULL);
    uv_close((uv_handle_t *)a, NULL);
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
    http_server_config_t cfg = {.max_header_bytes = 4096,
                                .max_headers = 20,
                                .max_url = 1024,
                                .max_body = 1024,
                                .header_timeout_ms = 400,
                                .body_timeout_ms = 400,
                                .idle_timeout_ms = 2000,
                                .shutdown_timeout_ms = 3000};
    http_server_new(&loop, &cfg, http_router_dispatch, router, &server);
    assert_int_equal(http_server_listen(server, "127.0.0.1", 0), 0);
    port = http_server_port(server);
    assert_true(port > 0);
    assert_int_equal(uv_async_init(&loop, &stop_async, on_stop), 0);
    assert_int_equal(uv_thread_create(&thread, loop_thread, NULL), 0);
    return 0;
}

/* ---- client side ---- */

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
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
    assert_int_equal(shutdown_done, 1);
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
        cmocka_unit_test(test_keep_alive),           cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_chunked_and_continue), cmocka_unit_test(test_router_errors),
        cmocka_unit_test(test_bad_requests),         cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_graceful_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown_after_shutdown);
}
