/*
 * The HTTP/1.1 server: one http_conn_t per accepted TCP connection, each driven by
 * a single state machine (conn_set_state) over libuv reads, http-parser callbacks
 * and one timer that enforces the idle, header, body and lingering-close deadlines.
 *
 * Input is read into a fixed per-connection buffer and parsed in place; the parser
 * is paused at the end of every message so pipelined requests wait in the buffer
 * until the current response is queued. Request line and headers are copied into a
 * capped buffer, the body into another, and handler scratch memory comes from a
 * per-request arena; all three are reset when the response is done. A connection
 * whose request is still with the handler is kept in memory after its socket has
 * closed, so an async handler can always respond (the answer is then dropped).
 *
 * A streamed body (server.h) is not buffered whole: the parser is paused at the end
 * of the headers and the handler called (CONN_STREAM); once it attaches a reader,
 * body bytes are decoded into a "fill" buffer while the consumer works on the
 * previous piece ("held"), and parsing stops when fill reaches HTTP_STREAM_CHUNK, so
 * the input buffer fills and reading stops. The consumer's callbacks (its own small
 * state machine, stream_set_state) are made only from stream_pump(), only while it
 * holds nothing, so an error found meanwhile (413, a reset) waits for its turn.
 */
#include "http/server.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_LISTENERS 4
#define READ_BUF_SIZE (64 * 1024)
#define LINGER_MS 1000
#define OUT_LIMIT (64 * 1024 * 1024)

typedef enum conn_state {
    CONN_IDLE,     /* between requests: idle timer */
    CONN_HEAD,     /* request line and headers arriving: header timer */
    CONN_BODY,     /* body arriving: body timer */
    CONN_STREAM,   /* streamed body: handler called, body read on its demand (silence timer) */
    CONN_HANDLER,  /* request with the handler */
    CONN_WRITING,  /* response queued with uv_write, not yet flushed */
    CONN_DRAINING, /* FIN sent after a final response; discarding input until EOF or timer */
    CONN_CLOSING,  /* uv_close called */
} conn_state_t;

typedef struct hdr_span {
    size_t name_off, name_len, val_off, val_len;
} hdr_span_t;

/* Where a streamed body stands with its consumer. */
typedef enum stream_state {
    SS_NONE,    /* the body is buffered (or no request) */
    SS_WAIT,    /* handler called at the end of the headers; no reader yet; nothing of the body read */
    SS_READING, /* reader attached, holding nothing */
    SS_BUSY,    /* the reader holds a piece (until http_request_body_next) */
    SS_DONE,    /* on_end or on_error delivered, or the request was answered */
} stream_state_t;

#define STREAM_OK (-1) /* no error pending; otherwise the status for on_error (0: gone) */

typedef struct conn_stream {
    stream_state_t state;
    http_body_reader_t reader;
    void *arg;
    buf_t fill; /* decoded body bytes not yet handed over */
    buf_t held; /* the piece the consumer holds */
    uint64_t max, received;
    int error;
    unsigned want_continue : 1;
} conn_stream_t;

typedef enum hdr_cb {
    HDR_NONE,
    HDR_FIELD,
    HDR_VALUE,
} hdr_cb_t;

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_write_t cont_req; /* "100 Continue" */
    uv_shutdown_t sreq;
    http_server_t *server;
    http_conn_t *prev, *next;
    conn_state_t state;
    int handles_open;
    unsigned reading : 1;
    unsigned peer_eof : 1;
    unsigned close_after : 1; /* no more requests on this connection */
    unsigned req_active : 1;  /* a request is with the handler */
    unsigned dispatching : 1; /* inside the handler call */
    unsigned msg_complete : 1;
    unsigned keep_alive : 1;
    unsigned headers_done : 1;  /* later header callbacks are chunked trailers */
    unsigned pause_headers : 1; /* the parser paused at the end of a streamed request's headers */
    unsigned cont_pending : 1;  /* cont_req is with uv_write */

    http_parser parser;
    int error_status; /* set by a parser callback that refused the request */
    char *in;
    size_t in_len, in_off;

    buf_t head; /* url NUL (name NUL value NUL)* */
    size_t url_len;
    size_t trailer_bytes;
    hdr_span_t *spans;
    size_t nspans;
    hdr_cb_t last_cb;
    buf_t body;
    conn_stream_t stream;
    buf_t out;
    http_arena_t arena;
    http_request_t req;
    http_header_t *headers;
};

struct http_server {
    uv_loop_t *loop;
    http_server_config_t cfg;
    http_handler_cb handler;
    void *arg;
    uv_tcp_t listeners[MAX_LISTENERS];
    size_t nlisteners;
    int port;
    uv_timer_t shutdown_timer;
    int handles_open;
    http_conn_t *conns;
    size_t nconns;
    size_t inflight;
    int shutting_down;
    int timer_closing;
    void (*done)(void *);
    void *done_arg;
    time_t date_sec;
    char date[40];
};

static http_parser_settings parser_settings;

static void conn_close(http_conn_t *c);
static void process_input(http_conn_t *c);
static void on_timer(uv_timer_t *t);
static void update_reading(http_conn_t *c);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);
static int stream_pump(http_conn_t *c);

static const char *state_name(conn_state_t s)
{
    static const char *const names[] = {"idle",    "head",    "body",     "stream",
                                        "handler", "writing", "draining", "closing"};
    return names[s];
}

/*
 * The only place a connection changes state. It checks the transition and arms the
 * timer that belongs to the new state, so no state can be entered without its deadline.
 */
static void conn_set_state(http_conn_t *c, conn_state_t to)
{
    static const unsigned char allowed[8][8] = {
        /*              idle head body strm hand writ drain close */
        /* idle    */ {1, 1, 0, 0, 0, 0, 1, 1},
        /* head    */ {0, 0, 1, 1, 1, 1, 1, 1},
        /* body    */ {0, 0, 0, 0, 1, 1, 1, 1},
        /* stream  */ {0, 0, 0, 0, 1, 1, 1, 1},
        /* handler */ {1, 1, 0, 0, 0, 1, 1, 1},
        /* writing */ {1, 1, 0, 0, 0, 0, 1, 1},
        /* drain   */ {0, 0, 0, 0, 0, 0, 0, 1},
        /* closing */ {0, 0, 0, 0, 0, 0, 0, 0},
    };
    if (!allowed[c->state][to]) {
        log_error("http: bad connection transition %s -> %s", state_name(c->state), state_name(to));
        abort();
    }
    log_debug("http: conn %p %s -> %s", (void *)c, state_name(c->state), state_name(to));
    c->state = to;
    const http_server_config_t *cfg = &c->server->cfg;
    switch (to) {
    case CONN_IDLE:
        uv_timer_start(&c->timer, on_timer, cfg->idle_timeout_ms, 0);
        break;
    case CONN_HEAD:
        uv_timer_start(&c->timer, on_timer, cfg->header_timeout_ms, 0);
        break;
    case CONN_BODY:
        uv_timer_start(&c->timer, on_timer, cfg->body_timeout_ms, 0);
        break;
    case CONN_STREAM:
        /* The handler's time until it reads the body; update_reading() arms the silence timer. */
        uv_timer_stop(&c->timer);
        break;
    case CONN_HANDLER:
    case CONN_WRITING:
        /* Handlers may legitimately take long; a stuck write is caught by the idle timeout. */
        if (to == CONN_WRITING)
            uv_timer_start(&c->timer, on_timer, cfg->idle_timeout_ms, 0);
        else
            uv_timer_stop(&c->timer);
        break;
    case CONN_DRAINING:
        uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
        break;
    case CONN_CLOSING:
        break;
    }
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static const char *server_date(http_server_t *s)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

/* ---- lifetime ---- */

static void on_server_handle_closed(uv_handle_t *h);

static void server_maybe_free(http_server_t *s)
{
    if (!s->shutting_down || s->nconns > 0)
        return;
    if (!s->timer_closing) {
        s->timer_closing = 1;
        uv_close((uv_handle_t *)&s->shutdown_timer, on_server_handle_closed);
        return;
    }
    if (s->handles_open > 0)
        return;
    if (s->done)
        s->done(s->done_arg);
    free(s);
}

static void conn_free(http_conn_t *c)
{
    http_server_t *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    buf_close(&c->head);
    buf_close(&c->body);
    buf_close(&c->stream.fill);
    buf_close(&c->stream.held);
    buf_close(&c->out);
    http_arena_close(&c->arena);
    free(c->spans);
    free(c->headers);
    free(c->in);
    free(c);
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (--c->handles_open == 0 && !c->req_active)
        conn_free(c);
}

/*
 * The only place a streamed body's consumer state changes: checks the transition
 * and logs it.
 */
static void stream_set_state(http_conn_t *c, stream_state_t to)
{
    static const char *const names[] = {"none", "wait", "reading", "busy", "done"};
    static const unsigned char allowed[5][5] = {
        /*              none wait read busy done */
        /* none    */ {1, 1, 0, 0, 0},
        /* wait    */ {1, 0, 1, 0, 1},
        /* reading */ {1, 0, 0, 1, 1},
        /* busy    */ {1, 0, 1, 0, 1},
        /* done    */ {1, 0, 0, 0, 1},
    };
    conn_stream_t *s = &c->stream;
    if (!allowed[s->state][to]) {
        log_error("http: bad body stream transition %s -> %s", names[s->state], names[to]);
        abort();
    }
    log_debug("http: conn %p body %s -> %s", (void *)c, names[s->state], names[to]);
    s->state = to;
}

/* Records why a streamed body ended early; the consumer hears of it from stream_pump(). */
static void stream_fail(http_conn_t *c, int status)
{
    conn_stream_t *s = &c->stream;
    if (s->state == SS_NONE || s->state == SS_DONE || s->error != STREAM_OK)
        return;
    log_debug("http: conn %p body cut short (%d)", (void *)c, status);
    s->error = status;
    c->close_after = 1;
}

static void conn_close(http_conn_t *c)
{
    if (c->state == CONN_CLOSING)
        return;
    conn_set_state(c, CONN_CLOSING);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    /* A consumer reading a streamed body must hear that it will never end. */
    stream_fail(c, 0);
    if (!c->dispatching)
        stream_pump(c);
}

static void conn_reset(http_conn_t *c)
{
    if (c->state == CONN_CLOSING)
        return;
    conn_set_state(c, CONN_CLOSING);
    uv_timer_stop(&c->timer);
    if (uv_tcp_close_reset(&c->tcp, on_conn_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_shutdown_sent(uv_shutdown_t *req, int status)
{
    http_conn_t *c = req->data;
    if (status < 0 || c->peer_eof)
        conn_close(c);
}

/* After the last response: send FIN, then read and discard until the peer closes (lingering close). */
static void conn_linger(http_conn_t *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    conn_set_state(c, CONN_DRAINING);
    c->in_len = c->in_off = 0;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown_sent) != 0) {
        conn_close(c);
        return;
    }
    update_reading(c);
}

static void on_timer(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    switch (c->state) {
    case CONN_HEAD:
    case CONN_BODY:
        log_debug("http: %s timeout, closing", state_name(c->state));
        conn_close(c);
        break;
    case CONN_STREAM:
        log_debug("http: no body bytes for %u ms, closing", c->server->cfg.body_timeout_ms);
        stream_fail(c, 408);
        conn_close(c);
        break;
    case CONN_IDLE:
    case CONN_WRITING:
    case CONN_DRAINING:
        conn_close(c);
        break;
    case CONN_HANDLER:
    case CONN_CLOSING:
        break;
    }
}

/* ---- request bookkeeping ---- */

static void request_reset(http_conn_t *c)
{
    buf_reset(&c->head);
    buf_reset(&c->body);
    /* Streaming buffers are large: give them back rather than keep them per idle connection. */
    buf_close(&c->stream.fill);
    buf_close(&c->stream.held);
    if (c->stream.state != SS_NONE)
        stream_set_state(c, SS_NONE);
    c->stream.error = STREAM_OK;
    c->stream.want_continue = 0;
    c->stream.received = 0;
    c->pause_headers = 0;
    http_arena_reset(&c->arena);
    c->url_len = 0;
    c->nspans = 0;
    c->last_cb = HDR_NONE;
    c->error_status = 0;
    c->msg_complete = 0;
    c->headers_done = 0;
    c->trailer_bytes = 0;
    memset(&c->req, 0, sizeof(c->req));
}

static int head_append(http_conn_t *c, const char *at, size_t len)
{
    if (buf_append(&c->head, at, len) != 0) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    http_conn_t *c = p->data;
    request_reset(c);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    c->url_len += len;
    if (c->url_len > c->server->cfg.max_url) {
        c->error_status = 414;
        return -1;
    }
    return head_append(c, at, len);
}

/*
 * Trailers of a chunked body are counted against the header cap but not kept:
 * the request's header pointers are already handed out and must not move.
 */
static int skip_trailer(http_conn_t *c, size_t len)
{
    c->trailer_bytes += len;
    if (c->trailer_bytes > c->server->cfg.max_header_bytes) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->headers_done)
        return skip_trailer(c, len);
    if (c->last_cb != HDR_FIELD) {
        if (c->nspans == c->server->cfg.max_headers) {
            c->error_status = 431;
            return -1;
        }
        /* Terminates the url (first header) or the previous value. */
        if (head_append(c, "", 1) != 0)
            return -1;
        hdr_span_t *h = &c->spans[c->nspans++];
        h->name_off = c->head.len;
        h->name_len = 0;
        h->val_off = 0;
        h->val_len = 0;
        c->last_cb = HDR_FIELD;
    }
    c->spans[c->nspans - 1].name_len += len;
    return head_append(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->headers_done)
        return skip_trailer(c, len);
    hdr_span_t *h = &c->spans[c->nspans - 1];
    if (c->last_cb != HDR_VALUE) {
        if (head_append(c, "", 1) != 0)
            return -1;
        h->val_off = c->head.len;
        c->last_cb = HDR_VALUE;
    }
    h->val_len += len;
    return head_append(c, at, len);
}

static void on_continue_written(uv_write_t *req, int status)
{
    http_conn_t *c = req->data;
    (void)status;
    c->cont_pending = 0;
}

/* Fills what the handler (and stream_select) sees of the request line; the body comes later. */
static void fill_request(http_conn_t *c)
{
    http_parser *p = &c->parser;
    http_request_t *r = &c->req;
    r->method = http_method_str((enum http_method)p->method);
    r->http_minor = p->http_minor;
    const char *q = memchr(r->target, '?', c->url_len);
    if (q) {
        r->path = http_arena_strndup(&c->arena, r->target, (size_t)(q - r->target));
        r->path_len = (size_t)(q - r->target);
        r->query = q + 1;
    } else {
        r->path = r->target;
        r->path_len = c->url_len;
        r->query = "";
    }
    r->body = "";
    r->body_len = 0;
    r->arena = &c->arena;
    r->server = c->server;
    r->conn = c;
}

/*
 * One "100 Continue" write at a time: a uv_write_t must not be submitted again before
 * its callback (pipelined requests that each expect one crashed libuv's write queue).
 * A client that pipelines does not wait for it anyway.
 */
static void send_continue(http_conn_t *c)
{
    static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
    if (c->cont_pending)
        return;
    c->cont_req.data = c;
    c->cont_pending = uv_write(&c->cont_req, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) == 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    http_server_t *s = c->server;
    if (head_append(c, "", 1) != 0)
        return -1;
    if (c->url_len == 0) {
        c->error_status = 400;
        return -1;
    }
    c->headers_done = 1;
    const char *base = c->head.data;
    for (size_t i = 0; i < c->nspans; i++) {
        c->headers[i].name = base + c->spans[i].name_off;
        c->headers[i].name_len = c->spans[i].name_len;
        /* A header with an empty value never saw on_header_value: point at its name's NUL. */
        c->headers[i].value = c->spans[i].val_off ? base + c->spans[i].val_off
                                                  : base + c->spans[i].name_off + c->spans[i].name_len;
        c->headers[i].value_len = c->spans[i].val_len;
    }
    c->req.headers = c->headers;
    c->req.header_count = c->nspans;
    c->req.target = base;

    int chunked = (p->flags & F_CHUNKED) != 0;
    int has_length = (p->flags & F_CONTENTLENGTH) != 0;
    c->req.content_length = chunked ? -1
                            : has_length
                                ? (p->content_length > INT64_MAX ? INT64_MAX : (int64_t)p->content_length)
                                : 0;
    fill_request(c);
    int has_body = chunked || (has_length && p->content_length > 0);
    const char *expect = http_request_header(&c->req, "Expect");
    int want_continue = has_body && expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1;
    if (s->cfg.stream_select && s->cfg.stream_select(&c->req, s->arg)) {
        /* Stop here: the handler runs now and reads the body on its own terms. */
        c->req.streaming = 1;
        c->stream.want_continue = want_continue;
        stream_set_state(c, SS_WAIT);
        c->pause_headers = 1;
        http_parser_pause(p, 1);
        return 0;
    }
    if (has_length && p->content_length > s->cfg.max_body) {
        c->error_status = 413;
        return -1;
    }
    if (has_body) {
        if (want_continue)
            send_continue(c);
        conn_set_state(c, CONN_BODY);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    conn_stream_t *s = &c->stream;
    if (s->state != SS_NONE) {
        /* process_input() parses at most one read buffer while fill is under HTTP_STREAM_CHUNK. */
        s->received += len;
        if (s->received > s->max) {
            c->error_status = 413;
            return -1;
        }
        if (buf_append(&s->fill, at, len) != 0) {
            c->error_status = 500;
            return -1;
        }
        return 0;
    }
    if (buf_append(&c->body, at, len) != 0) {
        c->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    c->msg_complete = 1;
    c->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1);
    return 0;
}

/* ---- responses ---- */

static void finish_request(http_conn_t *c)
{
    request_reset(c);
    if (c->state == CONN_CLOSING)
        return;
    if (c->close_after) {
        conn_linger(c);
        return;
    }
    conn_set_state(c, c->in_off < c->in_len ? CONN_HEAD : CONN_IDLE);
    if (!c->dispatching)
        process_input(c);
}

static void on_response_written(uv_write_t *w, int status)
{
    http_conn_t *c = w->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    finish_request(c);
}

static void write_out(http_conn_t *c)
{
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)c->out.len) {
        finish_request(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (n > 0) {
        b.base += n;
        b.len -= (size_t)n;
    }
    conn_set_state(c, CONN_WRITING);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_response_written) != 0)
        conn_close(c);
}

#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

static int put_size(buf_t *b, size_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + i, sizeof(tmp) - i);
}

static void format_response(http_conn_t *c, int status, const char *content_type, const char *const *headers,
                            const char *body, size_t body_len)
{
    http_server_t *s = c->server;
    buf_reset(&c->out);
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    int rc = buf_append(&c->out, line, (size_t)n);
    rc |= buf_puts(&c->out, http_status_reason(status));
    rc |= LIT(&c->out, "\r\nDate: ");
    rc |= buf_puts(&c->out, server_date(s));
    rc |= LIT(&c->out, "\r\nContent-Length: ");
    rc |= put_size(&c->out, body_len);
    rc |= LIT(&c->out, "\r\n");
    if (s->cfg.server_name) {
        rc |= LIT(&c->out, "Server: ");
        rc |= buf_puts(&c->out, s->cfg.server_name);
        rc |= LIT(&c->out, "\r\n");
    }
    if (content_type) {
        rc |= LIT(&c->out, "Content-Type: ");
        rc |= buf_puts(&c->out, content_type);
        rc |= LIT(&c->out, "\r\n");
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        rc |= buf_puts(&c->out, headers[i]);
        rc |= LIT(&c->out, "\r\n");
    }
    if (c->close_after)
        rc |= LIT(&c->out, "Connection: close\r\n");
    else if (c->req.http_minor == 0)
        rc |= LIT(&c->out, "Connection: keep-alive\r\n");
    rc |= LIT(&c->out, "\r\n");
    rc |= buf_append(&c->out, body, body_len);
    if (rc != 0) {
        /* Only a response larger than OUT_LIMIT gets here; answer 500 instead. */
        log_error("http: response of %zu bytes exceeds the output limit", body_len);
        buf_reset(&c->out);
        c->close_after = 1;
        static const char fallback[] =
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (buf_append(&c->out, fallback, sizeof(fallback) - 1) != 0)
            abort();
    }
}

/* Answers a request the parser refused (no handler involved) and closes after it. */
static void respond_error(http_conn_t *c, int status)
{
    const char *reason = http_status_reason(status);
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason);
    c->close_after = 1;
    c->req.http_minor = 1;
    if (c->state == CONN_IDLE)
        conn_set_state(c, CONN_HEAD);
    format_response(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
    c->dispatching = 1;
    write_out(c);
    c->dispatching = 0;
}

static void request_done(http_conn_t *c)
{
    if (!c->req_active) {
        log_error("http: response given twice for one request");
        abort();
    }
    c->req_active = 0;
    c->server->inflight--;
    /* An answer ends a streamed body: no more callbacks, and the rest of it is not read. */
    if (c->stream.state != SS_NONE && c->stream.state != SS_DONE)
        stream_set_state(c, SS_DONE);
    if (c->state == CONN_STREAM)
        c->close_after = 1;
}

void http_respond(http_request_t *req, int status, const char *content_type, const char *const *headers,
                  const char *body, size_t body_len)
{
    http_conn_t *c = req->conn;
    request_done(c);
    if (c->state == CONN_CLOSING) {
        request_reset(c);
        /* Inside a body callback, stream_pump() frees the connection once the callback returns. */
        if (c->handles_open == 0 && !c->dispatching)
            conn_free(c);
        return;
    }
    if (!c->keep_alive || c->server->shutting_down || c->peer_eof)
        c->close_after = 1;
    format_response(c, status, content_type, headers, body ? body : "", body ? body_len : 0);
    write_out(c);
}

void http_respond_status(http_request_t *req, int status)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_status_reason(status));
    http_respond(req, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
}

void http_request_reset(http_request_t *req)
{
    http_conn_t *c = req->conn;
    request_done(c);
    if (c->state == CONN_CLOSING) {
        if (c->handles_open == 0 && !c->dispatching)
            conn_free(c);
        return;
    }
    conn_reset(c);
}

int http_request_connected(const http_request_t *req)
{
    return req->conn->state != CONN_CLOSING && !req->conn->peer_eof;
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name_len == n && strncasecmp(req->headers[i].name, name, n) == 0)
            return req->headers[i].value;
    return NULL;
}

const char *http_request_param(const http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->param_count; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

/* ---- input ---- */

static void dispatch(http_conn_t *c)
{
    http_request_t *r = &c->req;
    r->body = buf_str(&c->body);
    r->body_len = c->body.len;
    if (!c->keep_alive || c->server->shutting_down)
        c->close_after = 1;
    conn_set_state(c, CONN_HANDLER);
    c->req_active = 1;
    c->server->inflight++;
    c->dispatching = 1;
    c->server->handler(r, c->server->arg);
    c->dispatching = 0;
}

/* After a body callback: frees a closed connection whose request the callback answered. */
static int stream_after_callback(http_conn_t *c)
{
    if (c->state == CONN_CLOSING && c->handles_open == 0 && !c->req_active) {
        conn_free(c);
        return -1;
    }
    return 1;
}

/* Hands a streamed request to the handler at the end of its headers. */
static void dispatch_stream(http_conn_t *c)
{
    if (c->server->shutting_down)
        c->close_after = 1;
    conn_set_state(c, CONN_STREAM);
    c->req_active = 1;
    c->server->inflight++;
    c->dispatching = 1;
    c->server->handler(&c->req, c->server->arg);
    c->dispatching = 0;
}

/*
 * Makes the consumer's next callback if it holds nothing: the next piece, else the
 * error that cut the body short, else the end of the body. Returns 1 when it made
 * one (the caller then looks again: the consumer may have given the piece back, or
 * answered), 0 when there was nothing to do, and -1 when the answer given from the
 * callback was the last use of an already closed connection, which is then freed
 * here (never inside the callback) and must not be touched again.
 */
static int stream_pump(http_conn_t *c)
{
    conn_stream_t *s = &c->stream;
    http_request_t *r = &c->req;

    if (s->state != SS_READING)
        return 0;
    if (s->error == STREAM_OK && s->fill.len > 0) {
        buf_t t = s->held;
        s->held = s->fill;
        s->fill = t;
        buf_reset(&s->fill);
        stream_set_state(c, SS_BUSY);
        c->dispatching = 1;
        s->reader.on_data(r, s->held.data, s->held.len, s->arg);
        c->dispatching = 0;
        return stream_after_callback(c);
    }
    if (s->error == STREAM_OK && !c->msg_complete)
        return 0;
    stream_set_state(c, SS_DONE);
    if (c->state == CONN_STREAM)
        conn_set_state(c, CONN_HANDLER);
    c->dispatching = 1;
    if (s->error != STREAM_OK)
        s->reader.on_error(r, s->error, s->arg);
    else
        s->reader.on_end(r, s->arg);
    c->dispatching = 0;
    return stream_after_callback(c);
}

int http_request_read_body(http_request_t *req, const http_body_reader_t *reader, uint64_t max_body,
                           void *arg)
{
    http_conn_t *c = req->conn;
    conn_stream_t *s = &c->stream;

    if (!req->streaming || s->state != SS_WAIT)
        return HTTP_ESTATE;
    if (!reader || !reader->on_data || !reader->on_end || !reader->on_error)
        return HTTP_EINVAL;
    if (req->content_length > 0 && (uint64_t)req->content_length > max_body)
        return HTTP_ETOOBIG;
    s->reader = *reader;
    s->arg = arg;
    s->max = max_body;
    s->received = 0;
    buf_init(&s->fill, HTTP_STREAM_CHUNK + READ_BUF_SIZE);
    buf_init(&s->held, HTTP_STREAM_CHUNK + READ_BUF_SIZE);
    stream_set_state(c, SS_READING);
    if (s->want_continue && c->state == CONN_STREAM && !c->peer_eof)
        send_continue(c);
    s->want_continue = 0;
    if (!c->dispatching)
        process_input(c);
    return 0;
}

void http_request_body_next(http_request_t *req)
{
    http_conn_t *c = req->conn;
    conn_stream_t *s = &c->stream;

    if (s->state != SS_BUSY) {
        log_error("http: body piece given back twice, or none was held");
        abort();
    }
    buf_reset(&s->held);
    stream_set_state(c, SS_READING);
    if (!c->dispatching)
        process_input(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    http_conn_t *c = h->data;
    if (c->state == CONN_DRAINING || c->state == CONN_CLOSING) {
        c->in_len = c->in_off = 0;
    } else if (c->in_off > 0 && c->in_len == READ_BUF_SIZE) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    b->base = c->in + c->in_len;
    b->len = READ_BUF_SIZE - c->in_len;
}

static void update_reading(http_conn_t *c)
{
    int want = c->state != CONN_CLOSING && !c->peer_eof &&
               (c->in_len < READ_BUF_SIZE || c->in_off > 0 || c->state == CONN_DRAINING);
    if (c->state == CONN_STREAM) {
        conn_stream_t *s = &c->stream;
        if (s->error != STREAM_OK)
            want = 0;
        /*
         * The body timeout counts the client's silence only: not while the handler has
         * not asked for the body yet, nor while a busy consumer keeps us from reading.
         */
        if (want && (s->state == SS_READING || s->state == SS_BUSY) && !c->msg_complete) {
            if (!uv_is_active((uv_handle_t *)&c->timer))
                uv_timer_start(&c->timer, on_timer, c->server->cfg.body_timeout_ms, 0);
        } else {
            uv_timer_stop(&c->timer);
        }
    }
    if (want && !c->reading)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* Whether the parser may run now: never past a streamed body the consumer is not ready for. */
static int can_parse(const http_conn_t *c)
{
    const conn_stream_t *s = &c->stream;
    switch (c->state) {
    case CONN_IDLE:
    case CONN_HEAD:
    case CONN_BODY:
        return 1;
    case CONN_STREAM:
        return (s->state == SS_READING || s->state == SS_BUSY) && s->error == STREAM_OK && !c->msg_complete &&
               s->fill.len < HTTP_STREAM_CHUNK;
    default:
        return 0;
    }
}

static void process_input(http_conn_t *c)
{
    for (;;) {
        while (c->in_off < c->in_len && can_parse(c)) {
            if (c->state == CONN_IDLE)
                conn_set_state(c, CONN_HEAD);
            size_t avail = c->in_len - c->in_off;
            size_t n = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off, avail);
            c->in_off += n;
            enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
            if (err == HPE_PAUSED) {
                http_parser_pause(&c->parser, 0);
                if (c->pause_headers) {
                    c->pause_headers = 0;
                    dispatch_stream(c);
                } else if (c->state != CONN_STREAM) {
                    dispatch(c);
                }
                continue;
            }
            if (err != HPE_OK) {
                int status = c->error_status ? c->error_status : 400;
                if (err == HPE_HEADER_OVERFLOW)
                    status = 431;
                log_debug("http: refusing request: %d (%s)", status, http_errno_description(err));
                if (c->state == CONN_STREAM)
                    stream_fail(c, status);
                else
                    respond_error(c, status);
                break;
            }
            if (n == avail)
                break;
        }
        if (c->in_off == c->in_len)
            c->in_off = c->in_len = 0;
        /* The client half-closed with the body incomplete and nothing left to parse. */
        if (c->state == CONN_STREAM && c->peer_eof && c->in_len == 0 && !c->msg_complete)
            stream_fail(c, 400);
        int pumped = stream_pump(c);
        if (pumped < 0)
            return;
        if (pumped == 0)
            break;
    }
    update_reading(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    http_conn_t *c = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->peer_eof = 1;
        uv_read_stop(stream);
        c->reading = 0;
        switch (c->state) {
        case CONN_HANDLER:
        case CONN_WRITING:
            c->close_after = 1; /* half-closed: answer, then close */
            break;
        case CONN_STREAM:
            /* What is buffered may still complete the body; process_input() decides. */
            c->close_after = 1;
            process_input(c);
            break;
        default:
            conn_close(c);
            break;
        }
        return;
    }
    if (c->state == CONN_DRAINING || c->state == CONN_CLOSING) {
        c->in_len = c->in_off = 0;
        return;
    }
    c->in_len += (size_t)nread;
    if (c->state == CONN_STREAM && uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_start(&c->timer, on_timer, c->server->cfg.body_timeout_ms, 0);
    if (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY || c->state == CONN_STREAM)
        process_input(c);
    else
        update_reading(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server_t *s = listener->data;
    if (status < 0) {
        log_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    http_conn_t *c = xcalloc(1, sizeof(*c));
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->in = xmalloc(READ_BUF_SIZE);
    buf_init(&c->head, s->cfg.max_header_bytes + 2 * s->cfg.max_headers + 8);
    buf_init(&c->body, s->cfg.max_body);
    buf_init(&c->out, OUT_LIMIT);
    http_arena_init(&c->arena, 4096);
    c->spans = xcalloc(s->cfg.max_headers, sizeof(*c->spans));
    c->headers = xcalloc(s->cfg.max_headers ? s->cfg.max_headers : 1, sizeof(*c->headers));
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->stream.error = STREAM_OK;
    c->state = CONN_IDLE;

    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || s->shutting_down ||
        s->nconns > s->cfg.max_connections) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_set_state(c, CONN_IDLE);
    update_reading(c);
}

/* ---- server ---- */

void http_server_new(uv_loop_t *loop, const http_server_config_t *cfg, http_handler_cb handler, void *arg,
                     http_server_t **out)
{
    static const http_server_config_t zero;
    if (!cfg)
        cfg = &zero;
    http_server_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = *cfg;
#define DEFAULT(f, v)                                                                                        \
    if (s->cfg.f == 0)                                                                                       \
    s->cfg.f = (v)
    DEFAULT(max_header_bytes, 16 * 1024);
    DEFAULT(max_headers, 64);
    DEFAULT(max_url, 4096);
    DEFAULT(max_body, 1024 * 1024);
    DEFAULT(max_connections, 10000);
    DEFAULT(idle_timeout_ms, 60000);
    DEFAULT(header_timeout_ms, 10000);
    DEFAULT(body_timeout_ms, 30000);
    DEFAULT(shutdown_timeout_ms, 10000);
#undef DEFAULT
    s->handler = handler;
    s->arg = arg;
    s->port = -1;
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    s->handles_open = 1;
    if (parser_settings.on_message_begin == NULL) {
        parser_settings.on_message_begin = on_message_begin;
        parser_settings.on_url = on_url;
        parser_settings.on_header_field = on_header_field;
        parser_settings.on_header_value = on_header_value;
        parser_settings.on_headers_complete = on_headers_complete;
        parser_settings.on_body = on_body;
        parser_settings.on_message_complete = on_message_complete;
    }
    *out = s;
}

int http_server_listen(http_server_t *s, const char *host, int port)
{
    struct sockaddr_storage ss;
    if (s->nlisteners == MAX_LISTENERS || s->shutting_down)
        return HTTP_ESTATE;
    if (port < 0 || port > 65535)
        return HTTP_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return HTTP_EINVAL;
    uv_tcp_t *l = &s->listeners[s->nlisteners];
    uv_tcp_init(s->loop, l);
    l->data = s;
    s->nlisteners++;
    s->handles_open++;
    int rc = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)l, 1024, on_connection);
    if (rc != 0) {
        /* The handle stays in the array and is closed by shutdown like the others. */
        return rc;
    }
    if (s->port < 0) {
        struct sockaddr_storage bound;
        int len = sizeof(bound);
        if (uv_tcp_getsockname(l, (struct sockaddr *)&bound, &len) == 0)
            s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                                  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    return 0;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

size_t http_server_connections(const http_server_t *s)
{
    return s->nconns;
}

size_t http_server_inflight(const http_server_t *s)
{
    return s->inflight;
}

static void on_server_handle_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    s->handles_open--;
    server_maybe_free(s);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    http_server_t *s = t->data;
    for (http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
}

void http_server_shutdown(http_server_t *s, void (*done)(void *arg), void *arg)
{
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    s->done = done;
    s->done_arg = arg;
    for (size_t i = 0; i < s->nlisteners; i++)
        uv_close((uv_handle_t *)&s->listeners[i], on_server_handle_closed);
    for (http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        c->close_after = 1;
        if (c->state == CONN_IDLE)
            conn_close(c);
    }
    if (s->nconns == 0) {
        server_maybe_free(s);
        return;
    }
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, s->cfg.shutdown_timeout_ms, 0);
    /* The timer must not keep an otherwise finished loop alive once every connection is gone. */
    uv_unref((uv_handle_t *)&s->shutdown_timer);
}
