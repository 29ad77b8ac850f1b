/*
 * Route table and matching. Patterns are pre-split into segments when added so a
 * match is one walk over the request path with no allocation until it succeeds.
 * A handful of routes is expected, so a linear scan beats anything cleverer.
 */
#include "http/router.h"

#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS 16

typedef struct segment {
    char *prefix; /* the whole literal when !is_param */
    char *suffix;
    char *name;
    size_t prefix_len, suffix_len;
    int is_param;
} segment_t;

typedef struct route {
    char *method;
    segment_t segs[MAX_SEGMENTS];
    size_t nsegs;
    size_t nparams;
    http_handler_cb handler;
    void *arg;
    int stream; /* bodies streamed to the handler (http_router_add_stream) */
} route_t;

struct http_router {
    route_t *routes;
    size_t count, cap;
};

http_router_t *http_router_new(void)
{
    return xcalloc(1, sizeof(http_router_t));
}

static void route_clear(route_t *rt)
{
    free(rt->method);
    for (size_t i = 0; i < rt->nsegs; i++) {
        free(rt->segs[i].prefix);
        free(rt->segs[i].suffix);
        free(rt->segs[i].name);
    }
}

void http_router_free(http_router_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        route_clear(&r->routes[i]);
    free(r->routes);
    free(r);
}

static int parse_segment(const char *s, size_t len, segment_t *seg)
{
    const char *open = memchr(s, '{', len);
    const char *close = memchr(s, '}', len);
    if (!open && !close) {
        seg->prefix = xstrndup(s, len);
        seg->prefix_len = len;
        return 0;
    }
    if (!open || !close || close < open + 2)
        return HTTP_ROUTER_EPATTERN;
    const char *rest = close + 1;
    size_t rest_len = len - (size_t)(rest - s);
    if (memchr(rest, '{', rest_len) || memchr(rest, '}', rest_len) || memchr(s, '}', (size_t)(open - s)))
        return HTTP_ROUTER_EPATTERN;
    seg->is_param = 1;
    seg->prefix = xstrndup(s, (size_t)(open - s));
    seg->prefix_len = (size_t)(open - s);
    seg->name = xstrndup(open + 1, (size_t)(close - open - 1));
    seg->suffix = xstrndup(rest, rest_len);
    seg->suffix_len = rest_len;
    return 0;
}

static int add_route(http_router_t *r, const char *method, const char *pattern, http_handler_cb handler,
                     void *arg, int stream)
{
    route_t rt;
    memset(&rt, 0, sizeof(rt));
    if (pattern[0] != '/')
        return HTTP_ROUTER_EPATTERN;
    const char *p = pattern + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (rt.nsegs == MAX_SEGMENTS || parse_segment(p, len, &rt.segs[rt.nsegs]) != 0) {
            route_clear(&rt);
            return HTTP_ROUTER_EPATTERN;
        }
        rt.nparams += rt.segs[rt.nsegs].is_param;
        rt.nsegs++;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (rt.nparams > HTTP_MAX_PARAMS) {
        route_clear(&rt);
        return HTTP_ROUTER_EPATTERN;
    }
    rt.method = xstrdup(method);
    rt.handler = handler;
    rt.arg = arg;
    rt.stream = stream;
    if (r->count == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->routes = xrealloc(r->routes, r->cap * sizeof(*r->routes));
    }
    r->routes[r->count++] = rt;
    return 0;
}

int http_router_add(http_router_t *r, const char *method, const char *pattern, http_handler_cb handler,
                    void *arg)
{
    return add_route(r, method, pattern, handler, arg, 0);
}

int http_router_add_stream(http_router_t *r, const char *method, const char *pattern, http_handler_cb handler,
                           void *arg)
{
    return add_route(r, method, pattern, handler, arg, 1);
}

typedef struct span {
    const char *p;
    size_t len;
} span_t;

/* Matches the split path against rt; on success fills values with the parameter spans. */
static int route_match(const route_t *rt, const span_t *parts, size_t nparts, span_t *values)
{
    if (nparts != rt->nsegs)
        return 0;
    size_t np = 0;
    for (size_t i = 0; i < nparts; i++) {
        const segment_t *seg = &rt->segs[i];
        if (!seg->is_param) {
            if (parts[i].len != seg->prefix_len || memcmp(parts[i].p, seg->prefix, seg->prefix_len) != 0)
                return 0;
            continue;
        }
        if (parts[i].len <= seg->prefix_len + seg->suffix_len)
            return 0;
        if (memcmp(parts[i].p, seg->prefix, seg->prefix_len) != 0 ||
            memcmp(parts[i].p + parts[i].len - seg->suffix_len, seg->suffix, seg->suffix_len) != 0)
            return 0;
        values[np].p = parts[i].p + seg->prefix_len;
        values[np].len = parts[i].len - seg->prefix_len - seg->suffix_len;
        np++;
    }
    return 1;
}

/* Splits req's path on "/". Returns the number of segments, 0 for a path not starting with "/", -1 for too
 * many. */
static int split_path(const http_request_t *req, span_t parts[MAX_SEGMENTS])
{
    size_t nparts = 0;
    if (req->path_len == 0 || req->path[0] != '/')
        return 0;
    const char *p = req->path + 1, *end = req->path + req->path_len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        if (nparts == MAX_SEGMENTS)
            return -1;
        parts[nparts].p = p;
        parts[nparts].len = slash ? (size_t)(slash - p) : (size_t)(end - p);
        nparts++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return (int)nparts;
}

static int method_ok(const route_t *rt, const char *method)
{
    return strcmp(rt->method, "*") == 0 || strcmp(rt->method, method) == 0;
}

int http_router_streams(const http_request_t *req, void *router)
{
    const http_router_t *r = router;
    span_t parts[MAX_SEGMENTS], values[HTTP_MAX_PARAMS];
    int n = split_path(req, parts);
    if (n <= 0)
        return 0;
    for (size_t i = 0; i < r->count; i++)
        if (route_match(&r->routes[i], parts, (size_t)n, values) && method_ok(&r->routes[i], req->method))
            return r->routes[i].stream;
    return 0;
}

void http_router_dispatch(http_request_t *req, void *router)
{
    http_router_t *r = router;
    span_t parts[MAX_SEGMENTS];
    int n = split_path(req, parts);
    if (n == 0) {
        http_respond_status(req, 400);
        return;
    }
    if (n < 0) {
        http_respond_status(req, 404);
        return;
    }
    size_t nparts = (size_t)n;

    char allow[128] = "";
    size_t allow_len = 0;
    span_t values[HTTP_MAX_PARAMS];
    for (size_t i = 0; i < r->count; i++) {
        const route_t *rt = &r->routes[i];
        if (!route_match(rt, parts, nparts, values))
            continue;
        if (!method_ok(rt, req->method)) {
            int n = snprintf(allow + allow_len, sizeof(allow) - allow_len, "%s%s", allow_len ? ", " : "",
                             rt->method);
            if (n > 0 && (size_t)n < sizeof(allow) - allow_len)
                allow_len += (size_t)n;
            continue;
        }
        size_t np = 0;
        for (size_t s = 0; s < rt->nsegs; s++) {
            if (!rt->segs[s].is_param)
                continue;
            req->param_names[np] = rt->segs[s].name;
            req->param_values[np] = http_arena_strndup(req->arena, values[np].p, values[np].len);
            np++;
        }
        req->param_count = np;
        req->route_arg = rt->arg;
        rt->handler(req, rt->arg);
        return;
    }
    if (allow_len) {
        char *hdr = http_arena_alloc(req->arena, allow_len + 8);
        snprintf(hdr, allow_len + 8, "Allow: %s", allow);
        const char *headers[] = {hdr, NULL};
        static const char body[] = "405 Method Not Allowed\n";
        http_respond(req, 405, "text/plain; charset=utf-8", headers, body, sizeof(body) - 1);
        return;
    }
    http_respond_status(req, 404);
}
