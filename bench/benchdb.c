#include "bench/benchdb.h"

#include "common/xalloc.h"

#include <stdio.h>

void benchdb_on_result(db_t *db, const PGresult *res, const char *err, void *arg)
{
    benchdb_t *b = arg;
    (void)db;
    if (err && !b->err)
        b->err = xstrdup(err);
    if (res && !b->res)
        b->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    b->done = 1;
}

void benchdb_on_connect(db_t *db, const char *err, void *arg)
{
    benchdb_on_result(db, NULL, err, arg);
}

void benchdb_on_migrate(db_t *db, const storage_migrate_report_t *r, const char *err, void *arg)
{
    (void)r;
    benchdb_on_result(db, NULL, err, arg);
}

int benchdb_wait(benchdb_t *b, const char *what)
{
    while (!b->done)
        uv_run(&b->loop, UV_RUN_ONCE);
    b->done = 0;
    if (b->err) {
        fprintf(stderr, "%s: %s: %s\n", b->name, what, b->err);
        return -1;
    }
    return 0;
}

void benchdb_clear(benchdb_t *b)
{
    if (b->res)
        PQclear(b->res);
    b->res = NULL;
}

int benchdb_query(benchdb_t *b, const char *sql, char *out, size_t outlen)
{
    benchdb_clear(b);
    if (db_query(b->db, sql, 0, NULL, benchdb_on_result, b) != 0 || benchdb_wait(b, sql) != 0)
        return -1;
    if (out)
        snprintf(out, outlen, "%s", b->res && PQntuples(b->res) > 0 ? PQgetvalue(b->res, 0, 0) : "");
    return 0;
}

int benchdb_connect(benchdb_t *b, const char *conninfo)
{
    if (b->db)
        db_close(b->db, NULL, NULL);
    b->db = NULL;
    return db_connect(&b->loop, conninfo, benchdb_on_connect, b, &b->db) != 0 ? -1
                                                                              : benchdb_wait(b, "connect");
}
