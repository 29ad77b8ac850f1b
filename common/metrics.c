/*
 * The metrics registry behind GET /metrics (see metrics.h). Series live in one
 * array in creation order; rendering groups them by name. Registration is rare
 * (setup time) and linear; updates use relaxed atomics so a scheduler thread can
 * count too. Gauges and histogram sums are doubles stored as their bit patterns so
 * that they can be updated with compare-and-swap.
 */
#include "common/metrics.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum series_type { SERIES_COUNTER, SERIES_GAUGE, SERIES_GAUGE_FN, SERIES_HISTOGRAM } series_type_t;

struct metrics_series {
    series_type_t type;
    char *name;
    char *help;
    char *labels;
    uint64_t count; /* counter value; histogram observation count */
    uint64_t dbits; /* gauge value; histogram sum (double bits) */
    double (*fn)(void *arg);
    void *fn_arg;
    double *bounds;
    uint64_t *buckets; /* per bucket (not cumulative); [nbounds] is +Inf */
    size_t nbounds;
};

struct metrics_registry {
    struct metrics_series **series;
    size_t n, cap;
};

const double metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,    10};
const size_t metrics_latency_nbuckets = sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

static const char *const type_names[] = {"counter", "gauge", "gauge", "histogram"};

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

static void atomic_add_double(uint64_t *slot, double v)
{
    uint64_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
    uint64_t upd;

    do {
        upd = double_to_bits(bits_to_double(old) + v);
    } while (!__atomic_compare_exchange_n(slot, &old, upd, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

static int valid_name(const char *name)
{
    if (!name || !*name || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == ':'))
            return 0;
    return 1;
}

metrics_registry_t *metrics_new(void)
{
    return xcalloc(1, sizeof(metrics_registry_t));
}

void metrics_free(metrics_registry_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        struct metrics_series *s = r->series[i];
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s->bounds);
        free(s->buckets);
        free(s);
    }
    free(r->series);
    free(r);
}

/*
 * Finds name{labels}, or creates it when the name is new or used with the same type.
 * Returns NULL on a type clash or a bad name.
 */
static struct metrics_series *lookup(metrics_registry_t *r, series_type_t type, const char *name, const char *help,
                                     const char *labels, int *created)
{
    struct metrics_series *s;

    *created = 0;
    if (!valid_name(name))
        return NULL;
    if (!labels)
        labels = "";
    for (size_t i = 0; i < r->n; i++) {
        s = r->series[i];
        if (strcmp(s->name, name) != 0)
            continue;
        if (s->type != type && !(s->type == SERIES_GAUGE_FN && type == SERIES_GAUGE) &&
            !(s->type == SERIES_GAUGE && type == SERIES_GAUGE_FN))
            return NULL;
        if (strcmp(s->labels, labels) == 0)
            return s->type == type ? s : NULL;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 32;
        r->series = xrealloc(r->series, r->cap * sizeof(*r->series));
    }
    s = xcalloc(1, sizeof(*s));
    s->type = type;
    s->name = xstrdup(name);
    s->help = xstrdup(help ? help : "");
    s->labels = xstrdup(labels);
    r->series[r->n++] = s;
    *created = 1;
    return s;
}

metrics_counter_t *metrics_counter(metrics_registry_t *r, const char *name, const char *help, const char *labels)
{
    int created;
    return lookup(r, SERIES_COUNTER, name, help, labels, &created);
}

void metrics_counter_add(metrics_counter_t *c, uint64_t n)
{
    if (c)
        __atomic_fetch_add(&c->count, n, __ATOMIC_RELAXED);
}

metrics_gauge_t *metrics_gauge(metrics_registry_t *r, const char *name, const char *help, const char *labels)
{
    int created;
    return lookup(r, SERIES_GAUGE, name, help, labels, &created);
}

void metrics_gauge_set(metrics_gauge_t *g, double v)
{
    if (g)
        __atomic_store_n(&g->dbits, double_to_bits(v), __ATOMIC_RELAXED);
}

void metrics_gauge_add(metrics_gauge_t *g, double v)
{
    if (g)
        atomic_add_double(&g->dbits, v);
}

int metrics_gauge_fn(metrics_registry_t *r, const char *name, const char *help, const char *labels,
                     double (*fn)(void *arg), void *arg)
{
    int created;
    struct metrics_series *s;

    if (!fn)
        return METRICS_EINVAL;
    s = lookup(r, SERIES_GAUGE_FN, name, help, labels, &created);
    if (!s)
        return METRICS_EINVAL;
    s->fn = fn;
    s->fn_arg = arg;
    return 0;
}

metrics_histogram_t *metrics_histogram(metrics_registry_t *r, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t nbounds)
{
    int created;
    struct metrics_series *s;

    for (size_t i = 1; i < nbounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    s = lookup(r, SERIES_HISTOGRAM, name, help, labels, &created);
    if (!s)
        return NULL;
    if (created) {
        s->nbounds = nbounds;
        s->bounds = xmalloc((nbounds ? nbounds : 1) * sizeof(double));
        if (nbounds)
            memcpy(s->bounds, bounds, nbounds * sizeof(double));
        s->buckets = xcalloc(nbounds + 1, sizeof(uint64_t));
    } else if (s->nbounds != nbounds || (nbounds && memcmp(s->bounds, bounds, nbounds * sizeof(double)) != 0)) {
        return NULL;
    }
    return s;
}

void metrics_histogram_observe(metrics_histogram_t *h, double v)
{
    size_t i = 0;

    if (!h)
        return;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    __atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    atomic_add_double(&h->dbits, v);
}

static int put_double(buf_t *out, double v)
{
    if (isinf(v))
        return buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    if (isnan(v))
        return buf_puts(out, "NaN");
    return buf_printf(out, "%.17g", v);
}

/* Writes name + suffix + {labels[,extra]}. */
static int put_series_name(buf_t *out, const struct metrics_series *s, const char *suffix, const char *extra)
{
    int rc = buf_printf(out, "%s%s", s->name, suffix);
    if (rc == 0 && (s->labels[0] || extra))
        rc = buf_printf(out, "{%s%s%s}", s->labels, s->labels[0] && extra ? "," : "", extra ? extra : "");
    return rc;
}

static int render_one(buf_t *out, const struct metrics_series *s)
{
    int rc = 0;
    char le[64];
    uint64_t cum = 0;

    switch (s->type) {
    case SERIES_COUNTER:
        rc = put_series_name(out, s, "", NULL);
        if (rc == 0)
            rc = buf_printf(out, " %llu\n", (unsigned long long)__atomic_load_n(&s->count, __ATOMIC_RELAXED));
        break;
    case SERIES_GAUGE:
    case SERIES_GAUGE_FN:
        rc = put_series_name(out, s, "", NULL);
        if (rc == 0)
            rc = buf_puts(out, " ");
        if (rc == 0)
            rc = put_double(out, s->type == SERIES_GAUGE ? bits_to_double(__atomic_load_n(&s->dbits, __ATOMIC_RELAXED))
                                                         : s->fn(s->fn_arg));
        if (rc == 0)
            rc = buf_puts(out, "\n");
        break;
    case SERIES_HISTOGRAM:
        for (size_t i = 0; rc == 0 && i <= s->nbounds; i++) {
            cum += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
            if (i < s->nbounds)
                snprintf(le, sizeof(le), "le=\"%g\"", s->bounds[i]);
            else
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            rc = put_series_name(out, s, "_bucket", le);
            if (rc == 0)
                rc = buf_printf(out, " %llu\n", (unsigned long long)cum);
        }
        if (rc == 0)
            rc = put_series_name(out, s, "_sum", NULL);
        if (rc == 0)
            rc = buf_puts(out, " ");
        if (rc == 0)
            rc = put_double(out, bits_to_double(__atomic_load_n(&s->dbits, __ATOMIC_RELAXED)));
        if (rc == 0)
            rc = buf_puts(out, "\n");
        if (rc == 0)
            rc = put_series_name(out, s, "_count", NULL);
        if (rc == 0)
            rc = buf_printf(out, " %llu\n", (unsigned long long)cum);
        break;
    }
    return rc;
}

int metrics_render(metrics_registry_t *r, buf_t *out)
{
    int rc = 0;
    unsigned char *done = xcalloc(r->n ? r->n : 1, 1);

    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        const struct metrics_series *first = r->series[i];
        if (done[i])
            continue;
        rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", first->name, first->help, first->name,
                        type_names[first->type]);
        for (size_t j = i; rc == 0 && j < r->n; j++) {
            if (done[j] || strcmp(r->series[j]->name, first->name) != 0)
                continue;
            done[j] = 1;
            rc = render_one(out, r->series[j]);
        }
    }
    free(done);
    return rc;
}
