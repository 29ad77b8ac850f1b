/*
 * The asynchronous HTTP client (see client.h): libcurl's multi_socket interface on
 * the libuv loop. curl tells us which sockets to watch (socket callback → one
 * uv_poll per socket) and when to wake it (timer callback → one uv_timer); we hand
 * readiness back with curl_multi_socket_action() and then collect finished transfers.
 *
 * Requests and their easy handles are pooled, since at tens of thousands of requests
 * per second creating them dominates. A pooled easy handle keeps the options that
 * never change (callbacks, timeouts, limits) from its first use and is never
 * curl_easy_reset(): a request sets only what differs (URL, method, body size), and
 * reuses its header list when the headers are the same as last time. Basic auth is
 * sent as a precomputed Authorization header rather than CURLOPT_USERPWD, which
 * would make curl split, base64-encode and format the credentials per transfer.
 *
 * Each request moves through one state machine (req_set_state). Failures that
 * happen while starting a request are delivered from a zero-delay timer so callers
 * never see their callback run inside the call. The client itself is freed only
 * once every uv handle it owns has been closed.
 */
#include "http/client.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <curl/curl.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define MAX_POOLED_REQUESTS 1024

typedef enum req_state {
    REQ_IDLE,    /* in the pool */
    REQ_ACTIVE,  /* added to the multi handle */
    REQ_FAILING, /* failed to start; waiting on the defer timer */
    REQ_DONE,    /* its callback is running */
} req_state_t;

typedef enum client_state {
    CLIENT_RUNNING,
    CLIENT_CLOSING, /* close requested while callbacks were being dispatched */
    CLIENT_CLOSED,  /* handles closing; freed when the last one is closed */
} client_state_t;

typedef struct http_req http_req_t;
struct http_req {
    http_client_t *client;
    CURL *easy;
    req_state_t state;
    buf_t body;      /* response body */
    buf_t req_body;  /* request body, fed to curl by on_read() */
    size_t req_off;  /* bytes of req_body handed to curl so far */
    struct curl_slist *headers; /* "Expect:", the caller's headers, then Authorization; may hold a secret */
    int headers_auth;           /* headers ends with an Authorization header */
    http_client_cb cb;
    void *arg;
    int too_big;
    CURLcode fail_code; /* REQ_FAILING: why */
    char errbuf[CURL_ERROR_SIZE];
    http_req_t *prev, *next; /* active or failing list; pool uses next only */
};

typedef struct sock_ctx sock_ctx_t;
struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    http_client_t *client;
    int events; /* what the uv_poll is started for (0: stopped) */
    int parked; /* curl no longer watches fd (idle kept-alive connection) */
    int corked; /* TCP_CORK is on: what curl writes waits in the kernel */
    int closed; /* fd was closed; the context only waits for its close callback */
    int in_flush; /* queued on the client's flush list */
    sock_ctx_t *next_flush;
};
struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    client_state_t state;
    http_client_config_t cfg;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t defer; /* delivers start failures */
    http_req_t *active;
    http_req_t *failing;
    http_req_t *pool;
    size_t npool;
    sock_ctx_t **socks; /* indexed by fd */
    size_t nsocks;
    sock_ctx_t *flush; /* corked sockets curl started a request on: uncork after the action */
    int dispatching;
    int handles_open;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    http_client_stats_t stats;
    char *auth_userpwd; /* last userpwd seen (secret), and its header: both wiped when replaced */
    char *auth_header;  /* "Authorization: Basic <base64(userpwd)>" */
};

static const char *req_state_name(req_state_t s)
{
    switch (s) {
    case REQ_IDLE:
        return "idle";
    case REQ_ACTIVE:
        return "active";
    case REQ_FAILING:
        return "failing";
    case REQ_DONE:
        return "done";
    }
    return "?";
}

static void list_push(http_req_t **head, http_req_t *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head)
        (*head)->prev = r;
    *head = r;
}

static void list_unlink(http_req_t **head, http_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        *head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/*
 * The one place a request changes state: it keeps the active/failing lists and the
 * in-flight count in step with the state and refuses impossible transitions.
 */
static void req_set_state(http_req_t *r, req_state_t to)
{
    http_client_t *c = r->client;
    req_state_t from = r->state;
    int ok;

    switch (to) {
    case REQ_ACTIVE:
    case REQ_FAILING:
        ok = from == REQ_IDLE;
        break;
    case REQ_DONE:
        ok = from == REQ_ACTIVE || from == REQ_FAILING;
        break;
    case REQ_IDLE:
        ok = from == REQ_DONE;
        break;
    default:
        ok = 0;
    }
    if (!ok) {
        log_cerror("http client", "bad request transition %s -> %s", req_state_name(from), req_state_name(to));
        abort();
    }
    if (from == REQ_ACTIVE) {
        list_unlink(&c->active, r);
        c->stats.in_flight--;
    } else if (from == REQ_FAILING) {
        list_unlink(&c->failing, r);
        c->stats.in_flight--;
    }
    if (to == REQ_ACTIVE) {
        list_push(&c->active, r);
        c->stats.in_flight++;
    } else if (to == REQ_FAILING) {
        list_push(&c->failing, r);
        c->stats.in_flight++;
    }
    r->state = to;
}

static void on_handle_closed(uv_handle_t *h);
static int on_close_socket(void *clientp, curl_socket_t fd);

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_req_t *r = userdata;
    size_t n = size * nmemb;

    if (buf_append(&r->body, ptr, n) != 0) {
        r->too_big = 1;
        return 0;
    }
    return n;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *userdata)
{
    http_req_t *r = userdata;
    size_t n = r->req_body.len - r->req_off;

    if (n > size * nitems)
        n = size * nitems;
    memcpy(dst, r->req_body.data + r->req_off, n);
    r->req_off += n;
    return n;
}

/*
 * libcurl re-sends a request on a fresh connection when a reused one closes before
 * any response byte arrives — even a POST whose body already went out (up to five
 * times). For a Twilio create that is the duplicate-maker: Twilio may have accepted
 * the message and only the response was lost. Feeding the body through on_read()
 * means such a re-send needs a rewind, and refusing the rewind turns the silent
 * retry into CURLE_SEND_FAIL_REWIND, which the caller treats as "outcome unknown"
 * (reconcile before sending again). A request whose body never left is re-sent by
 * curl without a rewind, which is safe.
 */
static int on_seek(void *userdata, curl_off_t offset, int origin)
{
    http_req_t *r = userdata;

    if (offset == 0 && origin == SEEK_SET && r->req_off == 0)
        return CURL_SEEKFUNC_OK;
    return CURL_SEEKFUNC_FAIL;
}

static int on_sockopt(void *userdata, curl_socket_t fd, curlsocktype purpose)
{
    http_req_t *r = userdata;
    (void)fd;

    if (purpose == CURLSOCKTYPE_IPCXN)
        r->client->stats.connections_opened++;
    return CURL_SOCKOPT_OK;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Sets the options every request of this client shares, once per easy handle. */
static CURLcode req_init_easy(http_req_t *r)
{
    http_client_t *c = r->client;
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;

#define SET(opt, val)                           \
    do {                                        \
        if (rc == CURLE_OK)                     \
            rc = curl_easy_setopt(e, opt, val); \
    } while (0)

    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, (void *)r);
    SET(CURLOPT_SEEKFUNCTION, on_seek);
    SET(CURLOPT_SEEKDATA, (void *)r);
    SET(CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    SET(CURLOPT_SOCKOPTDATA, (void *)r);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)c);
    /* No proxy: also spares curl reading the *_proxy variables on every request. */
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_PIPEWAIT, 0L);
    SET(CURLOPT_TIMEOUT_MS, c->cfg.timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cfg.max_response_body);
#undef SET
    return rc;
}

static http_req_t *req_get(http_client_t *c)
{
    http_req_t *r = c->pool;

    if (r != NULL) {
        c->pool = r->next;
        c->npool--;
        r->next = NULL;
        buf_reset(&r->body);
        buf_reset(&r->req_body);
    } else {
        r = xcalloc(1, sizeof(*r));
        r->client = c;
        r->state = REQ_IDLE;
        r->easy = curl_easy_init();
        if (r->easy == NULL || req_init_easy(r) != CURLE_OK) {
            curl_easy_cleanup(r->easy);
            free(r);
            return NULL;
        }
        buf_init(&r->body, c->cfg.max_response_body);
        buf_init(&r->req_body, HTTP_CLIENT_MAX_REQUEST_BODY);
    }
    r->req_off = 0;
    r->too_big = 0;
    r->errbuf[0] = '\0';
    r->fail_code = CURLE_OK;
    return r;
}

/* Frees a header list, wiping the credentials it may hold first. */
static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *h = l; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(l);
}

static void req_free(http_req_t *r)
{
    curl_easy_cleanup(r->easy);
    slist_wipe_free(r->headers);
    buf_close(&r->body);
    buf_close(&r->req_body);
    free(r);
}

static void req_put(http_client_t *c, http_req_t *r)
{
    r->cb = NULL;
    r->arg = NULL;
    if (c->state != CLIENT_RUNNING || c->npool >= MAX_POOLED_REQUESTS) {
        req_free(r);
        return;
    }
    /* Keep the pool from pinning one huge body per entry. */
    if (r->body.cap > 64 * 1024)
        buf_close(&r->body);
    if (r->req_body.cap > 64 * 1024)
        buf_close(&r->req_body);
    r->next = c->pool;
    c->pool = r;
    c->npool++;
}

/* Runs the callback of a request that has left the multi handle, then recycles it. */
static void req_finish(http_req_t *r, CURLcode code)
{
    http_client_t *c = r->client;
    http_response_t resp;
    int started = r->state == REQ_ACTIVE;

    req_set_state(r, REQ_DONE);
    memset(&resp, 0, sizeof(resp));
    resp.curl_code = (int)code;
    /* Kept on transport errors too: a 5xx whose body was cut off is still a 5xx. */
    if (started && code != CURLE_ABORTED_BY_CALLBACK)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp.status);
    if (r->too_big) {
        resp.error = "response body too large";
        buf_reset(&r->body);
    } else if (code == CURLE_SEND_FAIL_REWIND) {
        resp.error = "connection lost after the request was sent; not re-sent (outcome unknown)";
    } else if (code != CURLE_OK) {
        resp.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
    }
    resp.body = buf_str(&r->body);
    resp.body_len = r->body.len;
    c->stats.requests_completed++;
    r->cb(&resp, r->arg);
    req_set_state(r, REQ_IDLE);
    req_put(c, r);
}

static void teardown(http_client_t *c);

/* Collects finished transfers. Callbacks may start requests or close the client. */
static void check_done(http_client_t *c)
{
    CURLMsg *msg;
    int left;

    c->dispatching++;
    while (c->state == CLIENT_RUNNING && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        http_req_t *r = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(c->multi, easy);
        req_finish(r, code);
    }
    c->dispatching--;
    if (c->dispatching == 0 && c->state == CLIENT_CLOSING)
        teardown(c);
}

static void sock_watch(sock_ctx_t *s, int events);

static void sock_cork(sock_ctx_t *s, int on)
{
#ifdef TCP_CORK
    int v = on;
    /* Best effort: a socket that refuses just sends headers and body apart. */
    if (setsockopt(s->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v)) == 0)
        s->corked = on;
#else
    (void)s;
    (void)on;
#endif
}

/*
 * With a body fed through on_read(), curl 7.x writes a request in two send()s,
 * headers then body, and on loopback each one costs a full TCP transmit, receive
 * and wake-up of the server. An idle kept-alive socket is therefore corked; when
 * curl starts the next request on it (it then watches the socket again, see
 * on_curl_socket) the socket is queued here and uncorked once
 * curl_multi_socket_action() returns, so headers and body leave as one segment.
 * Uncorking only decides when bytes leave, never whether or what; and the kernel
 * sends corked data after 200 ms anyway.
 */
static void flush_corked(http_client_t *c)
{
    while (c->flush != NULL) {
        sock_ctx_t *s = c->flush;
        c->flush = s->next_flush;
        s->next_flush = NULL;
        s->in_flush = 0;
        if (!s->closed && s->corked && !s->parked)
            sock_cork(s, 0);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx_t *s = h->data;
    http_client_t *c = s->client;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    if (s->parked) {
        sock_watch(s, 0);
        return;
    }
    c->dispatching++;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    flush_corked(c);
    c->dispatching--;
    check_done(c);
}

static void on_timer(uv_timer_t *t)
{
    http_client_t *c = t->data;
    int running;

    c->dispatching++;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    flush_corked(c);
    c->dispatching--;
    check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    http_client_t *c = userp;
    (void)multi;

    if (c->state == CLIENT_CLOSED)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void sock_close(sock_ctx_t *s)
{
    http_client_t *c = s->client;

    c->socks[s->fd] = NULL;
    s->closed = 1;
    uv_poll_stop(&s->poll);
    c->handles_open++;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/*
 * Returns the poll context for fd, creating it on first use. Contexts live as long
 * as curl's socket: on_close_socket() closes them just before curl closes the fd
 * (or the REMOVE of a socket never connected does, see on_curl_socket()), so a
 * context never outlives the descriptor it watches.
 */
static sock_ctx_t *sock_get(http_client_t *c, curl_socket_t fd)
{
    sock_ctx_t *s;

    if ((size_t)fd >= c->nsocks) {
        size_t n = c->nsocks ? c->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        c->socks = xrealloc(c->socks, n * sizeof(*c->socks));
        memset(c->socks + c->nsocks, 0, (n - c->nsocks) * sizeof(*c->socks));
        c->nsocks = n;
    }
    s = c->socks[fd];
    if (s != NULL)
        return s;
    s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->client = c;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
        log_cerror("http client", "uv_poll_init_socket failed on fd %d", (int)fd);
        free(s);
        return NULL;
    }
    s->poll.data = s;
    c->socks[fd] = s;
    return s;
}

static void sock_watch(sock_ctx_t *s, int events)
{
    if (events == s->events)
        return;
    if (events == 0)
        uv_poll_stop(&s->poll);
    else
        uv_poll_start(&s->poll, events, on_poll);
    s->events = events;
}

/*
 * curl's socket callback. Between two requests on a kept-alive connection curl
 * says REMOVE and then asks for the same socket again; restarting a uv_poll costs
 * two epoll_ctl calls each time, so an idle socket is "parked" instead: still
 * watched for reading, which only fires if the server closes it or sends unasked
 * data, and then on_poll() stops the watch (curl finds the dead connection itself
 * when it next tries to reuse it).
 */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    http_client_t *c = userp;
    sock_ctx_t *s = socketp;
    int events = 0;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            /*
             * A socket curl was not reading is not kept for reuse: it is still
             * connecting (curl waits for writability only) or its request was cut
             * short. curl 7.88 to 8.1 close a socket that never connected with a plain
             * close(), without on_close_socket() and possibly before this REMOVE
             * (curl#11439), so fd may already be closed or reused: forget it without
             * another watch, which libuv would hand to epoll_ctl and abort on its EBADF.
             */
            if (!(s->events & UV_READABLE)) {
                sock_close(s);
                return 0;
            }
            s->parked = 1;
            sock_watch(s, UV_READABLE);
            if (!s->corked)
                sock_cork(s, 1);
            /* An idle connection must not keep the loop alive. */
            uv_unref((uv_handle_t *)&s->poll);
        }
        return 0;
    }
    if (s == NULL) {
        s = sock_get(c, fd);
        if (s == NULL)
            return -1;
        curl_multi_assign(c->multi, fd, s);
    }
    if (s->parked) {
        s->parked = 0;
        uv_ref((uv_handle_t *)&s->poll);
        if (s->corked && !s->in_flush) {
            s->in_flush = 1;
            s->next_flush = c->flush;
            c->flush = s;
        }
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    sock_watch(s, events);
    return 0;
}

/* curl closes a socket: drop its watch first, while the descriptor is still ours. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    http_client_t *c = clientp;

    if ((size_t)fd < c->nsocks && c->socks[fd] != NULL)
        sock_close(c->socks[fd]);
    return close(fd);
}

static void on_defer(uv_timer_t *t)
{
    http_client_t *c = t->data;

    c->dispatching++;
    while (c->state == CLIENT_RUNNING && c->failing != NULL) {
        http_req_t *r = c->failing;
        req_finish(r, r->fail_code);
    }
    c->dispatching--;
    if (c->dispatching == 0 && c->state == CLIENT_CLOSING)
        teardown(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    http_client_t *c = h->data;

    if (h->type == UV_POLL) {
        sock_ctx_t *s = h->data;
        c = s->client;
        free(s);
    }
    if (--c->handles_open > 0 || c->state != CLIENT_CLOSED)
        return;
    void (*cb)(void *) = c->closed_cb;
    void *arg = c->closed_arg;
    while (c->pool) {
        http_req_t *r = c->pool;
        c->pool = r->next;
        req_free(r);
    }
    free(c->socks);
    wipe_free(c->auth_userpwd);
    wipe_free(c->auth_header);
    free(c);
    curl_global_cleanup();
    if (cb)
        cb(arg);
}

static void fail_all(http_client_t *c, http_req_t **list, int remove)
{
    while (*list) {
        http_req_t *r = *list;
        if (remove)
            curl_multi_remove_handle(c->multi, r->easy);
        snprintf(r->errbuf, sizeof(r->errbuf), "client closed");
        req_finish(r, CURLE_ABORTED_BY_CALLBACK);
    }
}

/* Fails what is pending, closes curl's connections and every uv handle. */
static void teardown(http_client_t *c)
{
    c->state = CLIENT_CLOSED;
    flush_corked(c);
    c->dispatching++; /* callbacks below must not re-enter teardown */
    fail_all(c, &c->active, 1);
    fail_all(c, &c->failing, 0);
    c->dispatching--;
    /* Cleanup closes cached connections and may call on_curl_socket with REMOVE. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    for (size_t i = 0; i < c->nsocks; i++)
        if (c->socks[i] != NULL)
            sock_close(c->socks[i]);
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->defer);
    c->handles_open += 2;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->defer, on_handle_closed);
}

void http_client_close(http_client_t *c, void (*closed_cb)(void *arg), void *arg)
{
    if (c == NULL || c->state != CLIENT_RUNNING)
        return;
    c->closed_cb = closed_cb;
    c->closed_arg = arg;
    c->state = CLIENT_CLOSING;
    if (c->dispatching == 0)
        teardown(c);
}

int http_client_new(uv_loop_t *loop, const http_client_config_t *cfg, http_client_t **out)
{
    http_client_t *c;
    long maxconn;

    if (loop == NULL || out == NULL)
        return HTTP_CLIENT_EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return HTTP_CLIENT_EINIT;
    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    if (cfg)
        c->cfg = *cfg;
    if (c->cfg.max_connections == 0)
        c->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (c->cfg.max_host_connections == 0 || c->cfg.max_host_connections > c->cfg.max_connections)
        c->cfg.max_host_connections = c->cfg.max_connections;
    if (c->cfg.timeout_ms <= 0)
        c->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (c->cfg.connect_timeout_ms <= 0)
        c->cfg.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->cfg.max_response_body == 0)
        c->cfg.max_response_body = HTTP_CLIENT_DEFAULT_MAX_BODY;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        free(c);
        curl_global_cleanup();
        return HTTP_CLIENT_EINIT;
    }
    maxconn = (long)c->cfg.max_connections;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->cfg.max_host_connections);
    /* The cache must hold every connection we allow, or curl closes idle ones and reconnects. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, maxconn);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer);
    c->timer.data = c;
    c->defer.data = c;
    c->state = CLIENT_RUNNING;
    *out = c;
    return 0;
}

static int valid_token(const char *m)
{
    if (m == NULL || *m == '\0' || strlen(m) > 32)
        return 0;
    for (; *m; m++)
        if (!((*m >= 'A' && *m <= 'Z') || (*m >= 'a' && *m <= 'z') || *m == '-'))
            return 0;
    return 1;
}

static const char b64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Returns "Authorization: Basic <base64(userpwd)>", to be freed with wipe_free(). */
static char *basic_auth_header(const char *userpwd)
{
    static const char prefix[] = "Authorization: Basic ";
    size_t n = strlen(userpwd), o = sizeof(prefix) - 1;
    const unsigned char *u = (const unsigned char *)userpwd;
    char *h = xmalloc(sizeof(prefix) + (n + 2) / 3 * 4);

    memcpy(h, prefix, o);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) | (i + 2 < n ? u[i + 2] : 0);
        h[o++] = b64_digits[v >> 18 & 63];
        h[o++] = b64_digits[v >> 12 & 63];
        h[o++] = i + 1 < n ? b64_digits[v >> 6 & 63] : '=';
        h[o++] = i + 2 < n ? b64_digits[v & 63] : '=';
    }
    h[o] = '\0';
    return h;
}

/* The client's auth header for userpwd, recomputed only when the credentials change. */
static const char *auth_header_for(http_client_t *c, const char *userpwd)
{
    if (userpwd == NULL)
        return NULL;
    if (c->auth_userpwd == NULL || strcmp(c->auth_userpwd, userpwd) != 0) {
        wipe_free(c->auth_userpwd);
        wipe_free(c->auth_header);
        c->auth_userpwd = xstrdup(userpwd);
        c->auth_header = basic_auth_header(userpwd);
    }
    return c->auth_header;
}

/* Whether r->headers already is "Expect:", headers..., then auth (if any). */
static int headers_match(const http_req_t *r, const char *const *headers, const char *auth)
{
    const struct curl_slist *h = r->headers;

    if (h == NULL || r->headers_auth != (auth != NULL))
        return 0;
    h = h->next; /* "Expect:" */
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++, h = h->next)
        if (h == NULL || strcmp(h->data, headers[i]) != 0)
            return 0;
    /* Compared by content: a changed secret may be stored at the old address. */
    if (auth != NULL) {
        if (h == NULL || strcmp(h->data, auth) != 0)
            return 0;
        h = h->next;
    }
    return h == NULL;
}

/* Rebuilds r->headers; returns 0, or -1 when out of memory. */
static int headers_build(http_req_t *r, const char *const *headers, const char *auth)
{
    struct curl_slist *l;

    slist_wipe_free(r->headers);
    r->headers = NULL;
    r->headers_auth = 0;
    /* An empty "Expect:" stops curl from waiting for 100-continue on larger bodies. */
    l = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; l != NULL && headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(l, headers[i]);
        if (n == NULL)
            slist_wipe_free(l);
        l = n;
    }
    if (l != NULL && auth != NULL) {
        struct curl_slist *n = curl_slist_append(l, auth);
        if (n == NULL)
            slist_wipe_free(l);
        l = n;
    }
    if (l == NULL)
        return -1;
    r->headers = l;
    r->headers_auth = auth != NULL;
    return 0;
}

/*
 * Sets what differs between requests on a handle that keeps req_init_easy()'s
 * options. Every option a previous request may have changed is set again here, so
 * no state leaks from one request to the next. Returns the first failure, or CURLE_OK.
 */
static CURLcode req_setup(http_req_t *r, const char *method, const char *url, const char *const *headers,
                          const char *body, size_t body_len, const char *userpwd)
{
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;
    const char *auth = auth_header_for(r->client, userpwd);
    int is_post = strcmp(method, "POST") == 0;

#define SET(opt, val)                           \
    do {                                        \
        if (rc == CURLE_OK)                     \
            rc = curl_easy_setopt(e, opt, val); \
    } while (0)

    SET(CURLOPT_URL, url);
    if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
        SET(CURLOPT_HTTPGET, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
        SET(CURLOPT_NOBODY, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, is_post ? NULL : method);
        if (body != NULL || is_post) {
            if (buf_append(&r->req_body, body_len ? body : "", body_len) != 0)
                rc = CURLE_FILESIZE_EXCEEDED;
            SET(CURLOPT_POST, 1L);
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        } else {
            SET(CURLOPT_HTTPGET, 1L);
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
        }
    }
    if (!headers_match(r, headers, auth)) {
        /* Set even after a failure, so the handle never points at the freed list. */
        int built = headers_build(r, headers, auth);
        CURLcode hc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        if (rc == CURLE_OK)
            rc = built != 0 ? CURLE_OUT_OF_MEMORY : hc;
    }
#undef SET
    return rc;
}

int http_client_request(http_client_t *c, const char *method, const char *url, const char *const *headers,
                        const char *body, size_t body_len, const char *userpwd, http_client_cb cb, void *arg)
{
    http_req_t *r;
    CURLcode rc;

    if (c == NULL || url == NULL || cb == NULL || !valid_token(method) || (body == NULL && body_len > 0))
        return HTTP_CLIENT_EINVAL;
    if (c->state != CLIENT_RUNNING)
        return HTTP_CLIENT_ECLOSED;
    r = req_get(c);
    if (r == NULL)
        abort(); /* curl_easy_init fails only when out of memory */
    r->cb = cb;
    r->arg = arg;
    c->stats.requests_started++;
    rc = req_setup(r, method, url, headers, body, body_len, userpwd);
    if (rc == CURLE_OK) {
        req_set_state(r, REQ_ACTIVE);
        if (curl_multi_add_handle(c->multi, r->easy) == CURLM_OK)
            return 0;
        /* Undo ACTIVE by way of DONE so the lists stay consistent, then fail later. */
        req_set_state(r, REQ_DONE);
        req_set_state(r, REQ_IDLE);
        rc = CURLE_FAILED_INIT;
    }
    snprintf(r->errbuf, sizeof(r->errbuf), "could not start request: %s", curl_easy_strerror(rc));
    r->fail_code = rc;
    req_set_state(r, REQ_FAILING);
    uv_timer_start(&c->defer, on_defer, 0, 0);
    return 0;
}

void http_client_stats(const http_client_t *c, http_client_stats_t *out)
{
    *out = c->stats;
}

const char *http_client_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case HTTP_CLIENT_EINVAL:
        return "invalid argument";
    case HTTP_CLIENT_ECLOSED:
        return "client is closed";
    case HTTP_CLIENT_EINIT:
        return "could not initialise libcurl";
    default:
        return "unknown http client error";
    }
}
