/*
 * The CLI's session plumbing (see cli.h): one loop, one connection, migrations,
 * the acting org, and a blocking query wrapper for commands that are sequential
 * by nature.
 */
#include "app/cli.h"
#include "common/log.h"
#include "storage/migrate.h"
#include "storage/pgcluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wait_state {
    int done;
    PGresult *res;
    char err[512];
} wait_state_t;

static void copy_err(wait_state_t *w, const char *err)
{
    size_t n;

    snprintf(w->err, sizeof(w->err), "%s", err ? err : "unknown error");
    n = strcspn(w->err, "\n");
    w->err[n] = '\0';
}

static void on_connect(db_t *db, const char *err, void *arg)
{
    wait_state_t *w = arg;
    (void)db;
    if (err)
        copy_err(w, err);
    w->done = 1;
}

static void on_migrate(db_t *db, const storage_migrate_report_t *rep, const char *err, void *arg)
{
    wait_state_t *w = arg;
    (void)db;
    if (err)
        copy_err(w, err);
    else if (rep->n_applied > 0)
        log_info("applied %zu migration(s)", rep->n_applied);
    w->done = 1;
}

static void on_result(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wait_state_t *w = arg;
    (void)db;
    if (err)
        copy_err(w, err);
    else if (res)
        w->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    w->done = 1;
}

static void wait_for(cli_session_t *s, wait_state_t *w)
{
    while (!w->done)
        uv_run(&s->loop, UV_RUN_ONCE);
}

int cli_session_open(cli_session_t *s)
{
    char err[512];
    wait_state_t w = {0};

    memset(s, 0, sizeof(*s));
    if (storage_conninfo(s->conninfo, sizeof(s->conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: database: %s\n", err);
        return -1;
    }
    uv_loop_init(&s->loop);
    if (db_connect(&s->loop, s->conninfo, on_connect, &w, &s->db) != 0) {
        fprintf(stderr, "herald: database: bad connection settings\n");
        uv_loop_close(&s->loop);
        return -1;
    }
    wait_for(s, &w);
    if (w.err[0] == '\0') {
        w.done = 0;
        if (storage_migrate(s->db, on_migrate, &w) != 0)
            snprintf(w.err, sizeof(w.err), "could not queue migrations");
        else
            wait_for(s, &w);
    }
    if (w.err[0] != '\0') {
        fprintf(stderr, "herald: database: %s\n", w.err);
        cli_session_close(s);
        return -1;
    }
    return 0;
}

void cli_session_close(cli_session_t *s)
{
    if (s->db) {
        db_close(s->db, NULL, NULL);
        s->db = NULL;
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0)
        log_warn("event loop closed with handles still open");
}

int cli_exec(cli_session_t *s, const char *sql, int nparams, const char *const *params, PGresult **out,
             const char **err)
{
    static char errbuf[512];
    wait_state_t w = {0};

    *out = NULL;
    if (db_query(s->db, sql, nparams, params, on_result, &w) != 0) {
        *err = "connection closed";
        return -1;
    }
    wait_for(s, &w);
    if (w.err[0] != '\0' || w.res == NULL) {
        if (w.res)
            PQclear(w.res);
        snprintf(errbuf, sizeof(errbuf), "%s", w.err[0] ? w.err : "no result");
        *err = errbuf;
        return -1;
    }
    *out = w.res;
    return 0;
}

int cli_session_org(cli_session_t *s, const char *org_opt)
{
    const char *want = org_opt ? org_opt : getenv("HERALD_ORG");
    const char *err;
    PGresult *r;
    int rc;

    if (want && *want) {
        const char *p[1] = {want};
        if (strspn(want, "0123456789") != strlen(want)) {
            fprintf(stderr, "herald: --org must be a numeric org id, got '%s'\n", want);
            return -1;
        }
        rc = cli_exec(s, "SELECT id FROM orgs WHERE id = $1::bigint", 1, p, &r, &err);
    } else {
        /* orgs_one_default makes concurrent first runs agree on one default org. */
        rc = cli_exec(s, "INSERT INTO orgs (name) VALUES ('default') ON CONFLICT DO NOTHING", 0, NULL, &r,
                      &err);
        if (rc == 0) {
            PQclear(r);
            rc = cli_exec(s, "SELECT id FROM orgs WHERE name = 'default'", 0, NULL, &r, &err);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "herald: org: %s\n", err);
        return -1;
    }
    if (PQntuples(r) < 1) {
        fprintf(stderr, "herald: org %s does not exist\n", want);
        PQclear(r);
        return -1;
    }
    s->org_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}
