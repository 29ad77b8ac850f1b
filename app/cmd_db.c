/*
 * herald db start|stop|status|migrate|url: manage the database. Without DATABASE_URL
 * that is the embedded private cluster under .herald/pg (storage/pgcluster.h); with it,
 * an external server that herald only connects to and migrates. migrate and the
 * external status check go through the asynchronous db API on a libuv loop, the same
 * path the server uses.
 */
#include "app/commands.h"
#include "common/buf.h"
#include "storage/db.h"
#include "storage/migrate.h"
#include "storage/pgcluster.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CONNINFO_MAX 4096

typedef struct db_job {
    char *err; /* first failure, printed by the command */
    int is_migrate;
    char version[64];
    char dbname[128];
} db_job_t;

static void usage(void)
{
    fprintf(stderr, "usage: herald db start|stop|status|migrate|url\n");
}

static const char *external_url(void)
{
    const char *url = getenv("DATABASE_URL");

    return url && *url ? url : NULL;
}

static void job_fail(db_job_t *job, const char *what, const char *err)
{
    size_t n;

    if (job->err)
        return;
    n = strlen(what) + strlen(err) + 3;
    job->err = malloc(n);
    if (!job->err)
        abort();
    snprintf(job->err, n, "%s: %s", what, err);
}

/* Writes conninfo as key=value pairs with any password replaced by "***". */
static int mask_conninfo(const char *conninfo, char *out, size_t outlen)
{
    PQconninfoOption *opts, *o;
    char *errmsg = NULL;
    buf_t b;
    int rc = 0;

    opts = PQconninfoParse(conninfo, &errmsg);
    if (!opts) {
        PQfreemem(errmsg);
        return -1;
    }
    buf_init(&b, outlen - 1);
    for (o = opts; o->keyword && rc == 0; o++) {
        const char *v = o->val;
        if (!v || !*v)
            continue;
        if (strcmp(o->keyword, "password") == 0)
            v = "***";
        rc = buf_printf(&b, "%s%s=", b.len ? " " : "", o->keyword);
        if (v[strcspn(v, " '\\")] == '\0') {
            rc = rc ? rc : buf_puts(&b, v);
            continue;
        }
        rc = rc ? rc : buf_puts(&b, "'");
        for (; *v && rc == 0; v++)
            rc = (*v == '\'' || *v == '\\') ? buf_printf(&b, "\\%c", *v) : buf_append(&b, v, 1);
        rc = rc ? rc : buf_puts(&b, "'");
    }
    PQconninfoFree(opts);
    if (rc == 0)
        memcpy(out, buf_str(&b), b.len + 1);
    buf_close(&b);
    return rc;
}

static void on_migrated(db_t *db, const storage_migrate_report_t *rep, const char *err, void *arg)
{
    db_job_t *job = arg;

    for (size_t i = 0; i < rep->n_applied; i++)
        printf("applied %s\n", rep->names[i]);
    if (err)
        job_fail(job, "migrate", err);
    else if (rep->n_applied == 0)
        printf("database is up to date (%zu migrations)\n", rep->n_known);
    else
        printf("database is up to date (%zu migrations, %zu applied now)\n", rep->n_known, rep->n_applied);
    db_close(db, NULL, NULL);
}

static void on_version(db_t *db, const PGresult *res, const char *err, void *arg)
{
    db_job_t *job = arg;

    if (err) {
        job_fail(job, "status", err);
    } else {
        snprintf(job->dbname, sizeof(job->dbname), "%s", PQgetvalue(res, 0, 0));
        snprintf(job->version, sizeof(job->version), "%s", PQgetvalue(res, 0, 1));
    }
    db_close(db, NULL, NULL);
}

static void on_connected(db_t *db, const char *err, void *arg)
{
    db_job_t *job = arg;
    int rc;

    if (err) {
        job_fail(job, "cannot connect", err);
        db_close(db, NULL, NULL);
        return;
    }
    if (job->is_migrate)
        rc = storage_migrate(db, on_migrated, job);
    else
        rc = db_query(db, "SELECT current_database(), current_setting('server_version')", 0, NULL, on_version,
                      job);
    if (rc < 0) {
        job_fail(job, "cannot queue the work", db_strerror(rc));
        db_close(db, NULL, NULL);
    }
}

/* Connects to conninfo and runs the job on a private loop until every handle is closed. */
static int run_job(const char *conninfo, db_job_t *job)
{
    uv_loop_t loop;
    db_t *db = NULL;
    int rc;

    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "herald: cannot create an event loop\n");
        return 1;
    }
    rc = db_connect(&loop, conninfo, on_connected, job, &db);
    if (rc < 0)
        job_fail(job, "cannot connect", db_strerror(rc));
    else
        uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "herald: warning: event loop closed with handles open\n");
    if (job->err) {
        fprintf(stderr, "herald: %s\n", job->err);
        free(job->err);
        return 1;
    }
    return 0;
}

static int db_migrate(void)
{
    char conninfo[CONNINFO_MAX], err[1024];
    db_job_t job = {.is_migrate = 1};

    if (storage_conninfo(conninfo, sizeof(conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: %s\n", err);
        return 1;
    }
    return run_job(conninfo, &job);
}

static int external_command(const char *verb, const char *url)
{
    char masked[CONNINFO_MAX];
    db_job_t job = {0};
    int rc;

    if (mask_conninfo(url, masked, sizeof(masked)) < 0) {
        fprintf(stderr, "herald: DATABASE_URL is not a valid conninfo or URI\n");
        return 1;
    }
    if (strcmp(verb, "url") == 0) {
        printf("%s\n", masked);
        return 0;
    }
    if (strcmp(verb, "start") == 0 || strcmp(verb, "stop") == 0) {
        printf("the database is external (DATABASE_URL); nothing to %s\n", verb);
        return 0;
    }
    /* status */
    if ((rc = run_job(url, &job)) == 0)
        printf("external (DATABASE_URL %s): reachable, database %s, PostgreSQL %s\n", masked, job.dbname,
               job.version);
    return rc;
}

static int embedded_command(const char *verb)
{
    pgcluster_t c;
    char err[2048], url[CONNINFO_MAX];
    int was_running;
    long pid;
    pgcluster_state_t st;

    if (pgcluster_init(&c, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: %s\n", err);
        return 1;
    }
    if (strcmp(verb, "url") == 0) {
        if (pgcluster_url(&c, url, sizeof(url)) < 0) {
            fprintf(stderr, "herald: the embedded cluster's conninfo is too long\n");
            return 1;
        }
        printf("%s\n", url);
        return 0;
    }
    if (strcmp(verb, "status") == 0) {
        st = pgcluster_status(&c, &pid);
        if (st == PGCLUSTER_RUNNING)
            printf("running (pid %ld, data %s, socket %s)\n", pid, c.data, c.run);
        else if (st == PGCLUSTER_STOPPED)
            printf("stopped (data %s)\n", c.data);
        else
            printf("not initialised (run 'herald db start' to create %s)\n", c.data);
        return 0;
    }
    if (strcmp(verb, "start") == 0) {
        if (pgcluster_start(&c, &was_running, err, sizeof(err)) < 0) {
            fprintf(stderr, "herald: db start: %s\n", err);
            return 1;
        }
        pgcluster_status(&c, &pid);
        printf("%s (pid %ld, data %s)\n", was_running ? "already running" : "started", pid, c.data);
        return 0;
    }
    /* stop */
    if (pgcluster_stop(&c, &was_running, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: db stop: %s\n", err);
        return 1;
    }
    printf("%s\n", was_running ? "stopped" : "not running");
    return 0;
}

int cmd_db(int argc, char **argv)
{
    static const char *const verbs[] = {"start", "stop", "status", "migrate", "url"};
    const char *url = external_url();
    size_t i;

    if (argc != 2) {
        usage();
        return EXIT_USAGE;
    }
    for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i]) == 0)
            break;
    if (i == sizeof(verbs) / sizeof(verbs[0])) {
        fprintf(stderr, "herald: db: unknown subcommand '%s' (start|stop|status|migrate|url)\n", argv[1]);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "migrate") == 0)
        return db_migrate();
    if (url)
        return external_command(argv[1], url);
    return embedded_command(argv[1]);
}
