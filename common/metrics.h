/*
 * metrics_registry_t: counters, gauges and histograms rendered in Prometheus text
 * exposition format (version 0.0.4) for GET /metrics.
 *
 * Metrics are looked up (or created) by name + label set once, at setup time, and the
 * returned handle is kept: updates are then a few atomic instructions and safe from
 * any thread. Names follow Prometheus rules ("herald_webhook_requests_total"); labels
 * are given pre-formatted ("route=\"sms\",code=\"200\"" or "" for none). All metrics
 * of one name must have the same type, help text and (for histograms) buckets.
 * Handles are owned by the registry and valid until metrics_free().
 */
#ifndef HERALD_COMMON_METRICS_H
#define HERALD_COMMON_METRICS_H
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

#define METRICS_EINVAL (-1) /* bad name, or type/help/buckets differ from an existing series */

typedef struct metrics_registry metrics_registry_t;
typedef struct metrics_series metrics_counter_t;
typedef struct metrics_series metrics_gauge_t;
typedef struct metrics_series metrics_histogram_t;

/* Creates an empty registry. Free with metrics_free(). */
metrics_registry_t *metrics_new(void);

/* Frees the registry and every handle it gave out. */
void metrics_free(metrics_registry_t *r);

/*
 * Returns the counter name{labels}, created on first use, or NULL (bad name, or name
 * already used by another type). help is copied from the first call.
 */
metrics_counter_t *metrics_counter(metrics_registry_t *r, const char *name, const char *help, const char *labels);

/* Adds n to a counter (NULL is ignored). */
void metrics_counter_add(metrics_counter_t *c, uint64_t n);

/* Returns the gauge name{labels}, created on first use, or NULL. */
metrics_gauge_t *metrics_gauge(metrics_registry_t *r, const char *name, const char *help, const char *labels);

/* Sets / adds to a gauge (NULL is ignored). */
void metrics_gauge_set(metrics_gauge_t *g, double v);
void metrics_gauge_add(metrics_gauge_t *g, double v);

/*
 * Registers a gauge whose value is read by fn(arg) at render time (e.g. open
 * connections). arg is borrowed and must outlive the registry or be unregistered by
 * metrics_free(). Returns 0 or METRICS_EINVAL.
 */
__attribute__((warn_unused_result)) int metrics_gauge_fn(metrics_registry_t *r, const char *name, const char *help,
                                                         const char *labels, double (*fn)(void *arg), void *arg);

/*
 * Returns the histogram name{labels} with the given upper bounds (ascending, copied;
 * +Inf is implicit), created on first use, or NULL.
 */
metrics_histogram_t *metrics_histogram(metrics_registry_t *r, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t nbounds);

/* Records one observation (NULL is ignored). */
void metrics_histogram_observe(metrics_histogram_t *h, double v);

/* Default latency buckets in seconds: 0.5 ms .. 10 s. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

/*
 * Appends the exposition text of every metric to out, grouped by name (HELP and TYPE
 * once per name). Returns 0 or BUF_ETOOBIG.
 */
__attribute__((warn_unused_result)) int metrics_render(metrics_registry_t *r, buf_t *out);

#endif
