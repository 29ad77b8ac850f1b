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
 */
#ifndef HERALD_HTTP_SERVER_H
#define HERALD_HTTP_SERVER_H
#include "http/arena.h"

#include <stddef.h>
#include <uv.h>

#define HTTP_EINVAL (-22)   /* bad argument (address, port) */
#define HTTP_ESTATE (-1000) /* the server is not in a state that allows this */

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
    const char *body; /* NUL-terminated (the NUL is not counted); "" when empty */
    size_t body_len;
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

/* Returns the value of the first header called name (case-insensitive), or NULL. */
const char *http_request_header(const http_request_t *req, const char *name);

/* Returns 1 when the client connection is still open (the response would arrive). */
int http_request_connected(const http_request_t *req);

/* Returns the value of path parameter name set by the router, or NULL. */
const char *http_request_param(const http_request_t *req, const char *name);

/* Returns the standard reason phrase of status ("OK", "Not Found"), or "Unknown". */
const char *http_status_reason(int status);

#endif
