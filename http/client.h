/*
 * http_client: a generic asynchronous HTTP/1.1 client on libcurl's multi interface,
 * driven by a libuv loop (curl_multi_socket_action with one uv_poll per socket and
 * one uv_timer). Connections are kept alive and reused; their number is bounded per
 * host and in total, and transfers beyond the bound wait inside curl. Each request
 * has a timeout and a capped response body. Everything runs on the loop's thread.
 */
#ifndef HERALD_HTTP_CLIENT_H
#define HERALD_HTTP_CLIENT_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_CLIENT_EINVAL (-1) /* bad argument (NULL url, empty method...) */
#define HTTP_CLIENT_ECLOSED (-2) /* http_client_close() was already called */
#define HTTP_CLIENT_EINIT (-3) /* libcurl or libuv could not be initialised */

/* Default response body cap when http_client_config_t.max_response_body is 0. */
#define HTTP_CLIENT_DEFAULT_MAX_BODY (1u << 20)
#define HTTP_CLIENT_MAX_REQUEST_BODY (16u << 20) /* request bodies above this fail (CURLE_FILESIZE_EXCEEDED) */

typedef struct http_client http_client_t;

/* Zero fields take defaults: 64 connections, 64 per host, 30 s total, 10 s connect. */
typedef struct http_client_config {
    size_t max_connections;      /* open connections in total (CURLMOPT_MAX_TOTAL_CONNECTIONS) */
    size_t max_host_connections; /* open connections per host:port */
    long timeout_ms;             /* whole request, connect included */
    long connect_timeout_ms;
    size_t max_response_body; /* bytes; larger responses fail with CURLE_WRITE_ERROR */
} http_client_config_t;

/*
 * What a request produced. status is 0 when no HTTP response arrived (then curl_code
 * is not 0 and error says why). body is NUL-terminated, never NULL, and borrowed:
 * valid only during the callback. error is NULL on success, else a static or
 * request-owned string, also valid only during the callback.
 */
typedef struct http_response {
    long status;
    const char *body;
    size_t body_len;
    int curl_code; /* CURLcode; 0 when the transfer completed */
    const char *error;
} http_response_t;

typedef void (*http_client_cb)(const http_response_t *resp, void *arg);

/* Counters since http_client_new(). */
typedef struct http_client_stats {
    uint64_t connections_opened; /* TCP sockets created for connections */
    uint64_t requests_started;
    uint64_t requests_completed; /* callbacks delivered, whatever the outcome */
    size_t in_flight;
} http_client_stats_t;

/*
 * Creates a client on loop with cfg (copied; NULL for all defaults) and stores it in
 * *out. Returns 0, or HTTP_CLIENT_EINIT. Free with http_client_close().
 */
__attribute__((warn_unused_result)) int http_client_new(uv_loop_t *loop, const http_client_config_t *cfg,
                                                        http_client_t **out);

/*
 * Starts a request. method is "GET", "POST" or any other token; url, headers
 * (NULL-terminated array of "Name: value", may be NULL), body (body_len bytes, copied;
 * NULL for none) and userpwd ("user:pass" for Basic auth, copied; NULL for none) are
 * all borrowed only for the duration of the call. cb is called exactly once with the
 * outcome, always from a later loop iteration, never from inside this call.
 * Returns 0, HTTP_CLIENT_EINVAL for bad arguments or HTTP_CLIENT_ECLOSED after close;
 * on a non-zero return cb is never called.
 */
__attribute__((warn_unused_result)) int http_client_request(http_client_t *c, const char *method, const char *url,
                                                            const char *const *headers, const char *body,
                                                            size_t body_len, const char *userpwd, http_client_cb cb,
                                                            void *arg);

/* Fills *out with the client's counters. */
void http_client_stats(const http_client_t *c, http_client_stats_t *out);

/*
 * Stops the client: every request still pending gets its callback at once with
 * curl_code CURLE_ABORTED_BY_CALLBACK and error "client closed", connections are
 * closed, and closed_cb(arg) (may be NULL) runs once every libuv handle has been
 * closed, after which c is freed. May be called from a request callback.
 */
void http_client_close(http_client_t *c, void (*closed_cb)(void *arg), void *arg);

/* Returns a static description of an HTTP_CLIENT_E* code. */
const char *http_client_strerror(int err);

#endif
