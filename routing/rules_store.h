/*
 * Rule sets in Postgres (table rule_sets): saving a new version and reading the active
 * ones, asynchronously on a db_t (the CLI runs the loop until the callback; the server
 * calls these from its loop).
 *
 * Storage contract: rule_sets(org_id, number, version, document jsonb, active). Versions
 * count up per (org, number) from 1; exactly one row per (org, number) is active (the
 * partial unique index rule_sets_active). conversations.form_state holds the form in
 * progress as {"form": NAME, "step": N} (see routing_form_change_t), or NULL.
 *
 * Server start-up and reload, for the engineer wiring `herald serve`:
 *   rules_store_each_active(db, 0, NULL, row_cb, done_cb, arg);
 *   row_cb: rules_compile(document) -> rules_set_version(rs, version)
 *           -> routing_registry_swap(reg, org_id, number, rs)
 * A set that no longer compiles (an engine upgrade tightened a check) is skipped and
 * logged; the previous one stays live.
 */
#ifndef HERALD_ROUTING_RULES_STORE_H
#define HERALD_ROUTING_RULES_STORE_H
#include "storage/db.h"

#include <stdint.h>

/* version > 0 on success; err is NULL on success, else a one-line reason (borrowed). */
typedef void (*rules_store_saved_cb)(int version, const char *err, void *arg);

/*
 * In one transaction: serialises concurrent loads of (org_id, number), inserts document
 * (JSON text, copied) as the next version, and makes it the only active one. The caller
 * validates the document with rules_compile() first and passes the number it names.
 * Returns 0 (cb runs once, later) or a DB_E* code (cb never runs).
 */
DB_MUSTCHECK int rules_store_save(db_t *db, int64_t org_id, const char *number, const char *document,
                                  rules_store_saved_cb cb, void *arg);

/* One active rule set; strings are borrowed for the duration of the call. */
typedef void (*rules_store_row_cb)(int64_t org_id, const char *number, int version, const char *document,
                                   void *arg);
/* After the last row: err NULL on success, else a one-line reason (borrowed). */
typedef void (*rules_store_done_cb)(const char *err, void *arg);

/*
 * Reads the active rule sets, filtered by org_id (0: every org) and number (NULL: every
 * number), ordered by org and number, calling row_cb for each and then done_cb.
 * Returns 0 or a DB_E* code (no callback runs).
 */
DB_MUSTCHECK int rules_store_each_active(db_t *db, int64_t org_id, const char *number, rules_store_row_cb row_cb,
                                         rules_store_done_cb done_cb, void *arg);

#endif
