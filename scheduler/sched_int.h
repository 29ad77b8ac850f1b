/* Internals shared by the scheduler's files: SQL text and the quiet-hours cache. */
#ifndef HERALD_SCHEDULER_SCHED_INT_H
#define HERALD_SCHEDULER_SCHED_INT_H
#include "common/buf.h"
#include "compliance/quiet.h"

#include <stdint.h>

extern const char sched_sql_lease_campaign[];
extern const char sched_sql_lease_direct[];
extern const char sched_sql_record[];
extern const char sched_sql_record_sent[];
extern const char sched_sql_suppress[];
extern const char sched_sql_discover[];
extern const char sched_sql_discover_direct[];
extern const char sched_sql_complete[];
extern const char sched_sql_promote[];
extern const char sched_sql_cron_due[];
extern const char sched_sql_cron_fire[];
extern const char sched_sql_sender_lease[];
extern const char sched_sql_sender_release[];
extern const char sched_sql_reconciled[];
extern const char sched_sql_org_creds[];

/* A growable Postgres array literal ("{...}") built element by element. */
typedef struct pg_array {
    buf_t b;
    size_t n;
    int closed;
} pg_array_t;

/* Initialises an empty array (caller allocates; free with pg_array_close()). */
void pg_array_init(pg_array_t *a);
/* Appends a quoted text element; NULL appends SQL NULL. */
void pg_array_add_text(pg_array_t *a, const char *s);
/* Appends an integer element. */
void pg_array_add_int(pg_array_t *a, int64_t v);
/* Appends SQL NULL. */
void pg_array_add_null(pg_array_t *a);
/* Returns the NUL-terminated literal, borrowed: valid until the next add, reset or close. */
const char *pg_array_str(pg_array_t *a);
/* Empties the array, keeping its memory. */
void pg_array_reset(pg_array_t *a);
/* Frees the array's memory. */
void pg_array_close(pg_array_t *a);

/*
 * Quiet hours with a cache: tzdata is read once per (zones, window) and minute
 * instead of once per message. Zones are derived from the explicit zone, else
 * the number's geocoded state (cached per +1 area code / country), else the
 * campaign's zone.
 */
typedef struct quiet_cache quiet_cache_t;

/* Creates an empty cache (bounded tables). Free with quiet_cache_free(). */
quiet_cache_t *quiet_cache_new(void);
/* Frees c (NULL is ignored). */
void quiet_cache_free(quiet_cache_t *c);

/*
 * Decides for one recipient at now_utc. Returns 1 allowed (with *window_left_s the
 * seconds until the window closes, capped at one day), 0 deferred (with *next_open),
 * or -1 when no zone applies (treat as allowed; nothing to protect). A campaign window
 * disjoint from the legal one defers by an hour at a time.
 */
int quiet_cache_check(quiet_cache_t *c, const char *to, const char *tz, const char *campaign_tz, int start_min,
                      int end_min, int64_t now_utc, int64_t *next_open, int64_t *window_left_s);

#endif
