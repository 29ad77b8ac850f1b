/*
 * libFuzzer driver for the HTTP server: each input is written to a real loopback
 * connection (then half-closed) and the server's loop runs until it closes the
 * connection. Any crash, sanitizer report or hang (the server must always close
 * after EOF) is a finding. Handlers echo the request and parse the body as a form;
 * POST /s streams its body (http_router_add_stream) to a consumer that gives every
 * other piece back from a zero timer, so both the synchronous and the deferred paths
 * of the streaming state machine see fuzzed framing, early EOFs and pipelining.
 */
#include "http/form.h"
#include "http/router.h"
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t *loop;
static http_server_t *server;
static int port;

static void echo(http_request_t *req, void *arg)
{
    (void)arg;
    http_form_t f;
    int rc = http_form_parse(req->body, req->body_len, NULL, req->arena, &f, NULL);
    const char *v = rc == 0 ? http_form_get(&f, "Body") : NULL;
    const char *hdr = http_request_header(req, "Host");
    char out[256];
    int n =
        snprintf(out, sizeof(out), "%s %zu %s %s", req->method, req->body_len, v ? v : "-", hdr ? hdr : "-");
    if (n >= (int)sizeof(out))
        n = (int)sizeof(out) - 1; /* snprintf answers the length it wanted, not what it wrote */
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
}

typedef struct sink {
    uv_timer_t timer;
    http_request_t *req;
    size_t n, pieces;
} sink_t;

static void sink_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sink_ack(uv_timer_t *t)
{
    sink_t *k = t->data;
    http_request_body_next(k->req);
}

static void sink_data(http_request_t *req, const char *data, size_t len, void *arg)
{
    sink_t *k = arg;
    (void)data;
    k->n += len;
    if (k->pieces++ % 2)
        uv_timer_start(&k->timer, sink_ack, 0, 0);
    else
        http_request_body_next(req);
}

static void sink_end(http_request_t *req, void *arg)
{
    sink_t *k = arg;
    char out[64];
    int n = snprintf(out, sizeof(out), "%zu", k->n);
    http_respond(req, 200, "text/plain", NULL, out, (size_t)n);
    uv_close((uv_handle_t *)&k->timer, sink_closed);
}

static void sink_error(http_request_t *req, int status, void *arg)
{
    sink_t *k = arg;
    if (status == 0)
        http_request_reset(req);
    else
        http_respond_status(req, status);
    uv_close((uv_handle_t *)&k->timer, sink_closed);
}

static void stream(http_request_t *req, void *arg)
{
    static const http_body_reader_t reader = {sink_data, sink_end, sink_error};
    (void)arg;
    sink_t *k = calloc(1, sizeof(*k));
    k->req = req;
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    if (http_request_read_body(req, &reader, 4096, k) != 0) {
        http_respond_status(req, 413);
        uv_close((uv_handle_t *)&k->timer, sink_closed);
    }
}

static void init(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    http_router_t *r = http_router_new();
    if (http_router_add(r, "*", "/a/{x}/b.json", echo, NULL) != 0 ||
        http_router_add(r, "POST", "/", echo, NULL) != 0 ||
        http_router_add_stream(r, "POST", "/s", stream, NULL) != 0)
        abort();
    http_server_config_t cfg = {.max_header_bytes = 2048,
                                .max_headers = 16,
                                .max_url = 512,
                                .max_body = 2048,
                                .stream_select = http_router_streams};
    http_server_new(loop, &cfg, http_router_dispatch, r, &server);
    if (http_server_listen(server, "127.0.0.1", 0) != 0)
        abort();
    port = http_server_port(server);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        init();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS)
        abort();
    size_t off = 0;
    int shut = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (off < size) {
            ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != ENOTCONN)
                off = size; /* reset by the server: fine */
        } else if (!shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != ENOTCONN))
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 5)
            abort(); /* the server never closed the connection */
    }
    close(fd);
    /* Let the server finish closing its side before the next input. */
    while (http_server_connections(server) > 0)
        uv_run(loop, UV_RUN_ONCE);
    return 0;
}
