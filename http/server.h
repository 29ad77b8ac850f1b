/*
 * An HTTP/1.1 server on libuv and http-parser: keep-alive, pipelining, chunked and
 * Content-Length request bodies, "Expect: 100-continue", idle/header/body timeouts,
 * caps on everything a peer controls (431, 414, 413), and graceful shutdown.
 *
 * The handler is called once per complete request (headers and body). It answers
 * with http_respond() at once or later (an async handler keeps the request pointer
 * until it responds); exactly one of http_respond() / http_request_reset() must be
 * called for every request, even when the client has gone away meanwhile. Requests
 * on one connection are answered in order; the next pipelined request is parsed
 * only after the previous response was queued. The process must ignore SIGPIPE
 * (libuv writes to sockets with write(2)).
 *
 * Streaming bodies: when the config's stream_select() says so for a request (the
 * router's http_router_streams() selects the routes added with
 * http_router_add_stream()), the handler is called as soon as the headers are in,
 * with an empty body, and takes the body with http_request_read_body(): it gets the
 * body in pieces of at most HTTP_STREAM_CHUNK bytes (plus one read), one at a time,
 * and acknowledges each with http_request_body_next(). Until then the server reads
 * ahead at most one more piece and then stops reading the socket (backpressure), so
 * memory stays bounded whatever the body size. Until http_request_read_body() is
 * called nothing of the body is read, and "100 Continue" is only sent then, so a
 * handler can refuse a request (401, 404, 413, 415) before the client sends the body.
 * The body timeout then measures silence between reads, not the whole body, and is
 * paused while the consumer holds a piece.
 */
#ifndef HERALD_HTTP_SERVER_H
#define HERALD_HTTP_SERVER_H
#include "http/arena.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_EINVAL (-22)   /* bad argument (address, port) */
#define HTTP_ETOOBIG (-27)  /* the declared Content-Length exceeds the reader's limit */
#define HTTP_ESTATE (-1000) /* the server is not in a state that allows this */

/* A streamed body is handed over in pieces of about this size (see http_request_read_body()). */
#define HTTP_STREAM_CHUNK (256 * 1024)

#define HTTP_MAX_PARAMS 8 /* router path parameters per request */

typedef struct http_server http_server_t;
typedef struct http_conn http_conn_t;

typedef struct http_header {
    const char *name; /* as sent; NUL-terminated */
    const char *value;
    size_t name_len;
    size_t value_len;
} http_header_t;

/*
 * One request. All pointers are borrowed and valid until the response has been given
 * with http_respond() or http_request_reset(); copy out whatever must live longer.
 */
typedef struct http_request {
    const char *method; /* "GET", "POST", ... */
    const char *target; /* request-target as sent: path and query */
    const char *path;   /* target up to '?', not decoded */
    const char *query;  /* after '?', not decoded; "" when absent */
    size_t path_len;
    http_header_t *headers;
    size_t header_count;
    const char *body; /* NUL-terminated (the NUL is not counted); "" when empty or streamed */
    size_t body_len;
    int64_t content_length; /* Content-Length as declared; -1 when chunked; 0 when no body */
    int streaming; /* 1: called at the end of the headers; read the body with http_request_read_body() */
    http_arena_t *arena; /* scratch memory freed when the response is done */
    /* Filled by http_router_dispatch() from "{name}" segments of the matched pattern. */
    const char *param_names[HTTP_MAX_PARAMS];
    const char *param_values[HTTP_MAX_PARAMS];
    size_t param_count;
    void *route_arg; /* the matched route's argument */
    unsigned http_minor;
    http_server_t *server;
    http_conn_t *conn; /* private */
} http_request_t;

typedef void (*http_handler_cb)(http_request_t *req, void *arg);

/*
 * Decides at the end of the headers whether req's body is streamed (return 1) or
 * buffered (0). req has its method, target, path, query and headers, nothing else.
 * arg is the handler's argument.
 */
typedef int (*http_stream_select_cb)(const http_request_t *req, void *arg);

typedef struct http_server_config {
    size_t max_header_bytes;      /* request line + headers; beyond: 431 (0: 16 KiB) */
    size_t max_headers;           /* header lines; beyond: 431 (0: 64) */
    size_t max_url;               /* request-target bytes; beyond: 414 (0: 4096) */
    size_t max_body;              /* decoded body bytes; beyond: 413 (0: 1 MiB) */
    size_t max_connections;       /* further connections are closed at once (0: 10000) */
    unsigned idle_timeout_ms;     /* between requests on a kept-alive connection (0: 60 s) */
    unsigned header_timeout_ms;   /* first byte to end of headers (0: 10 s) */
    unsigned body_timeout_ms;     /* end of headers to end of body (0: 30 s) */
    unsigned shutdown_timeout_ms; /* graceful shutdown waits at most this for in-flight requests (0: 10 s) */
    const char *server_name;      /* "Server:" header value; NULL: none */
    http_stream_select_cb stream_select; /* NULL: every body is buffered (up to max_body) */
} http_server_config_t;

/*
 * Creates a server on loop that hands complete requests to handler(req, arg).
 * cfg is copied (server_name is borrowed). Free with http_server_shutdown().
 */
void http_server_new(uv_loop_t *loop, const http_server_config_t *cfg, http_handler_cb handler, void *arg,
                     http_server_t **out);

/*
 * Binds host:port (IPv4 or IPv6 literal; port 0 picks a free port) and starts
 * accepting. May be called more than once for several addresses. Returns 0 or a
 * negative libuv error.
 */
__attribute__((warn_unused_result)) int http_server_listen(http_server_t *s, const char *host, int port);

/* Returns the port of the first listening socket, or -1. */
int http_server_port(const http_server_t *s);

/* Number of open connections and of requests handed to the handler and not yet answered. */
size_t http_server_connections(const http_server_t *s);
size_t http_server_inflight(const http_server_t *s);

/*
 * Graceful shutdown: stops accepting, closes idle connections, lets in-flight requests
 * finish (their responses carry "Connection: close"), then closes everything; after
 * shutdown_timeout_ms the remaining connections are closed anyway (their handlers must
 * still respond or reset; those responses are dropped). done(arg) runs once every
 * handle is closed, and the server is freed right after it returns. done may be NULL.
 */
void http_server_shutdown(http_server_t *s, void (*done)(void *arg), void *arg);

/*
 * Answers req with status, an optional Content-Type, extra header lines (NULL or a
 * NULL-terminated array of "Name: value" strings, e.g. from the arena) and the body
 * (copied). Content-Length, Date-less minimal headers and keep-alive handling are added.
 * After this call req is gone. Calling it twice for one request is a bug (aborts).
 * Answering a streamed request before its body ended stops the body (no more
 * callbacks; a piece the consumer holds is released) and closes the connection after
 * the answer.
 */
void http_respond(http_request_t *req, int status, const char *content_type, const char *const *headers,
                  const char *body, size_t body_len);

/* Answers req with a short text/plain body naming the status (e.g. for 404, 405). */
void http_respond_status(http_request_t *req, int status);

/*
 * Gives up on req without an answer: the connection is reset (TCP RST) at once.
 * Used to simulate lost responses and dropped connections. After this call req is gone.
 */
void http_request_reset(http_request_t *req);

/*
 * The consumer of a streamed body. Its callbacks run on the loop thread, one at a
 * time, never while the consumer holds a piece: any number of on_data, then exactly
 * one of on_end or on_error (none once the request has been answered). They may run
 * from inside http_request_read_body() and http_request_body_next().
 */
typedef struct http_body_reader {
    /*
     * The next piece of the body; data is borrowed until http_request_body_next(),
     * which the consumer calls when done with it (at once or later, e.g. from a
     * uv_queue_work() completion). No further callback runs before that.
     */
    void (*on_data)(http_request_t *req, const char *data, size_t len, void *arg);
    /* The body is complete and every piece was acknowledged: answer the request. */
    void (*on_end)(http_request_t *req, void *arg);
    /*
     * The body was cut short: status is 400 (malformed chunked framing, or the client
     * closed its side before the end), 408 (no bytes for body_timeout_ms), 413 (more
     * than max_body bytes), or 0 (the connection is gone). The request must still be
     * answered with http_respond() or http_request_reset(); after a 0 or a 408 the
     * answer is dropped. The connection is closed after the answer.
     */
    void (*on_error)(http_request_t *req, int status, void *arg);
} http_body_reader_t;

/*
 * Starts reading the streamed body of req (req->streaming must be 1) into reader
 * (copied), with arg passed to its callbacks, refusing bodies over max_body bytes.
 * Returns 0; HTTP_ETOOBIG when the declared Content-Length is over max_body (nothing
 * is read: answer 413); HTTP_ESTATE when req is not streamed or the body is already
 * being read; HTTP_EINVAL when a callback is missing.
 */
__attribute__((warn_unused_result)) int
http_request_read_body(http_request_t *req, const http_body_reader_t *reader, uint64_t max_body, void *arg);

/* Gives back the piece of body the last on_data passed; the next callback may follow. */
void http_request_body_next(http_request_t *req);

/* Returns the value of the first header called name (case-insensitive), or NULL. */
const char *http_request_header(const http_request_t *req, const char *name);

/* Returns 1 when the client connection is still open (the response would arrive). */
int http_request_connected(const http_request_t *req);

/* Returns the value of path parameter name set by the router, or NULL. */
const char *http_request_param(const http_request_t *req, const char *name);

/* Returns the standard reason phrase of status ("OK", "Not Found"), or "Unknown". */
const char *http_status_reason(int status);

#endif
