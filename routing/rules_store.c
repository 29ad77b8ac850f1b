/*
 * Postgres side of rule sets: the versioned insert-and-activate transaction behind
 * `herald rules load` and the read of active sets used by `rules test` and by the
 * server to fill its registry. All statements are parameterized; documents go in as
 * text and are stored as jsonb.
 */
#include "routing/rules_store.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct save_op {
    rules_store_saved_cb cb;
    void *arg;
    int version;
    int refs;   /* callbacks still to run */
    int report; /* everything was queued: tell the caller */
    char err[256];
} save_op_t;

static void save_release(save_op_t *op)
{
    if (--op->refs > 0)
        return;
    if (op->report) {
        if (!op->err[0] && op->version <= 0)
            snprintf(op->err, sizeof(op->err), "insert returned no version");
        op->cb(op->err[0] ? 0 : op->version, op->err[0] ? op->err : NULL, op->arg);
    }
    free(op);
}

static void keep_err(save_op_t *op, const char *err)
{
    if (err && !op->err[0])
        snprintf(op->err, sizeof(op->err), "%s", err);
}

static void on_step(db_t *db, const PGresult *res, const char *err, void *arg)
{
    (void)db;
    (void)res;
    keep_err(arg, err);
    save_release(arg);
}

static void on_insert(db_t *db, const PGresult *res, const char *err, void *arg)
{
    save_op_t *op = arg;
    (void)db;
    keep_err(op, err);
    if (!err && res && PQntuples(res) == 1)
        op->version = atoi(PQgetvalue(res, 0, 0));
    save_release(op);
}

int rules_store_save(db_t *db, int64_t org_id, const char *number, const char *document, rules_store_saved_cb cb,
                     void *arg)
{
    char org[24];
    const char *p2[2] = {org, number}, *p3[3] = {org, number, document};
    save_op_t *op;
    int rc;

    if (!db || !number || !document || !cb)
        return DB_EINVAL;
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    op = xcalloc(1, sizeof(*op));
    op->cb = cb;
    op->arg = arg;
    op->refs = 1; /* ours, dropped below */
    if ((rc = db_batch_begin(db)) != 0) {
        free(op);
        return rc;
    }
    /*
     * The advisory lock makes two concurrent loads for one number take turns, so the
     * second computes its version after the first committed instead of colliding on it.
     */
    op->refs++;
    rc = db_query(db, "SELECT pg_advisory_xact_lock(hashtextextended('herald.rule_sets/' || $1 || '/' || $2, 0))",
                  2, p2, on_step, op);
    if (rc == 0) {
        op->refs++;
        rc = db_query(db, "UPDATE rule_sets SET active = false WHERE org_id = $1::bigint AND number = $2 AND active",
                      2, p2, on_step, op);
    }
    if (rc == 0) {
        op->refs++;
        rc = db_query(db,
                      "INSERT INTO rule_sets (org_id, number, version, document, active) "
                      "SELECT $1::bigint, $2, COALESCE(MAX(version), 0) + 1, $3::jsonb, true "
                      "FROM rule_sets WHERE org_id = $1::bigint AND number = $2 RETURNING version",
                      3, p3, on_insert, op);
    }
    if (rc != 0) {
        op->refs--; /* the query that failed to queue has no callback coming */
        if (db_batch_end(db, NULL, NULL) != 0)
            log_debug("rules_store: batch end after a failed queue: connection closed");
    } else {
        op->refs++;
        if ((rc = db_batch_end(db, on_step, op)) != 0)
            op->refs--;
    }
    /* The last callback to run reports (only if everything was queued) and frees op. */
    op->report = rc == 0;
    save_release(op);
    return rc;
}

typedef struct each_op {
    rules_store_row_cb row_cb;
    rules_store_done_cb done_cb;
    void *arg;
} each_op_t;

static void on_rows(db_t *db, const PGresult *res, const char *err, void *arg)
{
    each_op_t *op = arg;
    (void)db;
    if (!err && res) {
        for (int i = 0; i < PQntuples(res); i++)
            op->row_cb(strtoll(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1), atoi(PQgetvalue(res, i, 2)),
                       PQgetvalue(res, i, 3), op->arg);
    }
    op->done_cb(err ? err : (res ? NULL : "no result"), op->arg);
    free(op);
}

int rules_store_each_active(db_t *db, int64_t org_id, const char *number, rules_store_row_cb row_cb,
                            rules_store_done_cb done_cb, void *arg)
{
    char org[24];
    const char *p[2] = {org, number};
    each_op_t *op;
    int rc;

    if (!db || !row_cb || !done_cb)
        return DB_EINVAL;
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    op = xcalloc(1, sizeof(*op));
    *op = (each_op_t){row_cb, done_cb, arg};
    rc = db_query(db,
                  "SELECT org_id, number, version, document::text FROM rule_sets "
                  "WHERE active AND ($1::bigint = 0 OR org_id = $1::bigint) AND ($2::text IS NULL OR number = $2) "
                  "ORDER BY org_id, number",
                  2, p, on_rows, op);
    if (rc != 0)
        free(op);
    return rc;
}
