/*
 * The migration runner (see migrate.h): an asynchronous chain of db operations.
 *
 *   lock -> create schema_migrations -> read it -> per pending migration:
 *   BEGIN -> script -> INSERT row -> COMMIT (ROLLBACK on error) -> ... -> unlock -> report
 *
 * Each step is queued from the previous step's callback, so a failure is noticed
 * before anything else is sent inside the migration's transaction.
 */
#include "storage/migrate.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key shared by every herald migration run ("herald" in ASCII). */
#define MIGRATE_LOCK_KEY "112568767309156"

typedef struct migrate_run {
    db_t *db;
    const herald_embedded_t *list;
    size_t n;
    int *versions;    /* [n], parsed from the names */
    char *is_applied; /* [n] */
    size_t next;
    int *applied_versions;
    const char **applied_names;
    size_t n_applied;
    char checksum[65];
    char *err;
    int locked;
    storage_migrate_cb cb;
    void *arg;
} migrate_run_t;

static void step_unlock(migrate_run_t *run);
static void step_next(migrate_run_t *run);

void storage_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

static void set_error(migrate_run_t *run, const char *fmt, const char *a, const char *b)
{
    char msg[1024];

    if (run->err)
        return;
    snprintf(msg, sizeof(msg), fmt, a, b ? b : "");
    run->err = xstrdup(msg);
}

static void finish(migrate_run_t *run)
{
    storage_migrate_report_t rep = {
        .n_known = run->n,
        .n_applied = run->n_applied,
        .versions = run->applied_versions,
        .names = run->applied_names,
    };

    run->cb(run->db, &rep, run->err, run->arg);
    free(run->versions);
    free(run->is_applied);
    free(run->applied_versions);
    free(run->applied_names);
    free(run->err);
    free(run);
}

static void queue_or_finish(migrate_run_t *run, int rc)
{
    if (rc == 0)
        return;
    /* Only DB_ECLOSED is possible here: db_close() was called while we ran. */
    set_error(run, "migration run interrupted: %s%s", db_strerror(rc), NULL);
    finish(run);
}

/* Parses the leading version number of every name and checks the order. */
static int parse_versions(migrate_run_t *run)
{
    for (size_t i = 0; i < run->n; i++) {
        const char *name = run->list[i].name;
        char *end;
        long v = strtol(name, &end, 10);

        if (end == name || v <= 0 || v > 1000000000) {
            set_error(run, "migration %s: the file name must start with its version number%s", name, NULL);
            return -1;
        }
        if (i > 0 && v <= run->versions[i - 1]) {
            set_error(run, "migration %s: version not greater than that of %s", name, run->list[i - 1].name);
            return -1;
        }
        run->versions[i] = (int)v;
    }
    return 0;
}

static void on_unlocked(db_t *db, const PGresult *res, const char *err, void *arg)
{
    (void)db;
    (void)res;
    if (err)
        log_warn("migrate: releasing the advisory lock: %s", err);
    finish(arg);
}

static void step_unlock(migrate_run_t *run)
{
    const char *params[] = {MIGRATE_LOCK_KEY};

    if (!run->locked) {
        finish(run);
        return;
    }
    run->locked = 0;
    queue_or_finish(run,
                    db_query(run->db, "SELECT pg_advisory_unlock($1::bigint)", 1, params, on_unlocked, run));
}

static void on_rolled_back(db_t *db, const PGresult *res, const char *err, void *arg)
{
    (void)db;
    (void)res;
    if (err)
        log_warn("migrate: rollback: %s", err);
    step_unlock(arg);
}

static void abort_migration(migrate_run_t *run)
{
    queue_or_finish(run, db_query(run->db, "ROLLBACK", 0, NULL, on_rolled_back, run));
}

static void on_committed(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;
    const herald_embedded_t *m = &run->list[run->next];

    (void)db;
    (void)res;
    if (err) {
        set_error(run, "migration %s: commit failed: %s", m->name, err);
        step_unlock(run);
        return;
    }
    log_debug("migrate: applied %s", m->name);
    run->applied_versions[run->n_applied] = run->versions[run->next];
    run->applied_names[run->n_applied] = m->name;
    run->n_applied++;
    run->is_applied[run->next] = 1;
    run->next++;
    step_next(run);
}

static void on_recorded(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;

    (void)res;
    if (err) {
        set_error(run, "migration %s: recording it failed: %s", run->list[run->next].name, err);
        abort_migration(run);
        return;
    }
    queue_or_finish(run, db_query(db, "COMMIT", 0, NULL, on_committed, run));
}

static void on_script(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;
    const herald_embedded_t *m = &run->list[run->next];
    char version[16];
    const char *params[3] = {version, m->name, run->checksum};

    (void)res;
    if (err) {
        set_error(run, "migration %s failed: %s", m->name, err);
        abort_migration(run);
        return;
    }
    snprintf(version, sizeof(version), "%d", run->versions[run->next]);
    queue_or_finish(run, db_query(db,
                                  "INSERT INTO schema_migrations (version, name, checksum) "
                                  "VALUES ($1, $2, $3)",
                                  3, params, on_recorded, run));
}

static void on_begun(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;
    const herald_embedded_t *m = &run->list[run->next];

    (void)res;
    if (err) {
        set_error(run, "migration %s: BEGIN failed: %s", m->name, err);
        step_unlock(run);
        return;
    }
    storage_sha256_hex(m->data, m->len, run->checksum);
    queue_or_finish(run, db_exec_script(db, m->data, on_script, run));
}

static void step_next(migrate_run_t *run)
{
    while (run->next < run->n && run->is_applied[run->next])
        run->next++;
    if (run->next == run->n) {
        step_unlock(run);
        return;
    }
    queue_or_finish(run, db_query(run->db, "BEGIN", 0, NULL, on_begun, run));
}

static void on_read_applied(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;
    char sum[65];

    (void)db;
    if (err) {
        set_error(run, "reading schema_migrations: %s%s", err, NULL);
        step_unlock(run);
        return;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int version = atoi(PQgetvalue(res, row, 0));
        size_t i;

        for (i = 0; i < run->n && run->versions[i] != version; i++)
            ;
        if (i == run->n) {
            log_warn("migrate: the database has migration %s, which this build does not know",
                     PQgetvalue(res, row, 1));
            continue;
        }
        storage_sha256_hex(run->list[i].data, run->list[i].len, sum);
        if (strcmp(sum, PQgetvalue(res, row, 2)) != 0) {
            set_error(run,
                      "migration %s was changed after it was applied (checksum differs from "
                      "the one recorded for %s)",
                      run->list[i].name, PQgetvalue(res, row, 1));
            step_unlock(run);
            return;
        }
        run->is_applied[i] = 1;
    }
    step_next(run);
}

static void on_table(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;

    (void)res;
    if (err) {
        set_error(run, "creating schema_migrations: %s%s", err, NULL);
        step_unlock(run);
        return;
    }
    queue_or_finish(run, db_query(db,
                                  "SELECT version, name, checksum FROM schema_migrations "
                                  "ORDER BY version",
                                  0, NULL, on_read_applied, run));
}

static void on_locked(db_t *db, const PGresult *res, const char *err, void *arg)
{
    migrate_run_t *run = arg;

    (void)res;
    if (err) {
        set_error(run, "taking the migration lock: %s%s", err, NULL);
        finish(run);
        return;
    }
    run->locked = 1;
    if (parse_versions(run) < 0) {
        step_unlock(run);
        return;
    }
    queue_or_finish(run, db_exec_script(db,
                                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                        " version integer PRIMARY KEY,"
                                        " name text NOT NULL,"
                                        " checksum text NOT NULL,"
                                        " applied_at timestamptz NOT NULL DEFAULT now())",
                                        on_table, run));
}

int storage_migrate_list(db_t *db, const herald_embedded_t *list, storage_migrate_cb cb, void *arg)
{
    const char *params[] = {MIGRATE_LOCK_KEY};
    migrate_run_t *run;
    size_t n = 0;
    int rc;

    if (!db || !list || !cb)
        return DB_EINVAL;
    while (list[n].name)
        n++;
    run = xcalloc(1, sizeof(*run));
    run->db = db;
    run->list = list;
    run->n = n;
    run->versions = xcalloc(n + 1, sizeof(int));
    run->is_applied = xcalloc(n + 1, 1);
    run->applied_versions = xcalloc(n + 1, sizeof(int));
    run->applied_names = xcalloc(n + 1, sizeof(char *));
    run->cb = cb;
    run->arg = arg;
    /* The session lock, not a transaction one: it must outlive each migration's transaction. */
    rc = db_query(db, "SELECT pg_advisory_lock($1::bigint)", 1, params, on_locked, run);
    if (rc < 0) {
        run->cb = NULL;
        free(run->versions);
        free(run->is_applied);
        free(run->applied_versions);
        free(run->applied_names);
        free(run);
    }
    return rc;
}

int storage_migrate(db_t *db, storage_migrate_cb cb, void *arg)
{
    return storage_migrate_list(db, storage_migrations, cb, arg);
}
