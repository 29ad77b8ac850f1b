/*
 * Synchronous use of storage/db from a bench program: start an operation with one of
 * the callbacks below and the benchdb_t as its arg, then benchdb_wait() runs the loop
 * until it is done. Shared by bench_upload and bench_inbox.
 */
#ifndef HERALD_BENCH_BENCHDB_H
#define HERALD_BENCH_BENCHDB_H

#include "storage/db.h"
#include "storage/migrate.h"

#include <stddef.h>
#include <uv.h>

typedef struct benchdb {
    uv_loop_t loop;
    db_t *db;
    const char *name; /* the program's name, before each error message */
    int done;
    char *err;     /* the first error since it was last cleared (owned) */
    PGresult *res; /* a copy of the first result since benchdb_clear(), or NULL */
} benchdb_t;

/* Callbacks for db_query(), db_exec_script(), db_copy_in(), db_connect(), storage_migrate(). */
void benchdb_on_result(db_t *db, const PGresult *res, const char *err, void *arg);
void benchdb_on_connect(db_t *db, const char *err, void *arg);
void benchdb_on_migrate(db_t *db, const storage_migrate_report_t *r, const char *err, void *arg);

/* Runs the loop until the operation is done. Returns 0, or -1 after printing
 * "NAME: what: error" to stderr when it (or an earlier one) failed. */
int benchdb_wait(benchdb_t *b, const char *what);

/* Drops the kept result. */
void benchdb_clear(benchdb_t *b);

/* One statement; the first column of its first row (if any) into out (may be NULL). */
int benchdb_query(benchdb_t *b, const char *sql, char *out, size_t outlen);

/* Connects b->db to conninfo (closing the old connection, if any). */
int benchdb_connect(benchdb_t *b, const char *conninfo);

#endif
