/*
 * A small router: method + path pattern -> handler. Patterns are split on "/"; a
 * segment may hold one "{name}" parameter with a literal prefix and suffix, e.g.
 * "/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json". Parameters never
 * match an empty string or cross a "/". Routes are tried in the order added.
 */
#ifndef HERALD_HTTP_ROUTER_H
#define HERALD_HTTP_ROUTER_H
#include "http/server.h"

#define HTTP_ROUTER_EPATTERN (-1) /* malformed pattern (unbalanced braces, too many parameters) */

typedef struct http_router http_router_t;

/* Creates an empty router. Free with http_router_free(). */
http_router_t *http_router_new(void);

/* Frees the router and its routes. */
void http_router_free(http_router_t *r);

/*
 * Adds a route. method is "GET", "POST", ... or "*" for any; pattern is copied.
 * handler receives arg via req->route_arg as well as its second argument.
 * Returns 0 or HTTP_ROUTER_EPATTERN.
 */
__attribute__((warn_unused_result)) int http_router_add(http_router_t *r, const char *method,
                                                        const char *pattern, http_handler_cb handler,
                                                        void *arg);

/*
 * Like http_router_add(), for a route whose request bodies are streamed to the
 * handler (see http_request_read_body()) instead of being buffered whole: the
 * handler runs at the end of the headers with req->streaming set. Takes effect when
 * the server's config has stream_select = http_router_streams.
 */
__attribute__((warn_unused_result)) int http_router_add_stream(http_router_t *r, const char *method,
                                                               const char *pattern, http_handler_cb handler,
                                                               void *arg);

/*
 * Returns 1 when the route req would be dispatched to was added with
 * http_router_add_stream(), else 0. Usable as the server's stream_select.
 */
int http_router_streams(const http_request_t *req, void *router);

/*
 * Finds the route for req, fills req's path parameters (arena copies, not decoded)
 * and calls its handler. Answers 404 when no pattern matches the path, and 405 with
 * an Allow header when patterns match but not for this method.
 * Usable directly as the server's handler: http_server_new(loop, cfg, http_router_dispatch, router, ...).
 */
void http_router_dispatch(http_request_t *req, void *router);

#endif
