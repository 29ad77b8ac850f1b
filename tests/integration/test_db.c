/*
 * Integration tests for storage/db.c and storage/migrate.c against the fixture cluster:
 * the loop keeps running while queries do, pipelining and its error semantics, prepared
 * statements, COPY, large parameters, failure reporting, and the migration runner.
 * Every test owns its loop and ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"
#include "storage/db.h"
#include "storage/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static char conninfo[1024];

typedef struct capture {
    int done;
    int order; /* completion order stamp */
    char *err;
    char *value; /* first column of the first row, if any */
    char *status;
    int ntuples;
} capture_t;

static int completion_counter;

static void on_capture(db_t *db, const PGresult *res, const char *err, void *arg)
{
    capture_t *c = arg;

    (void)db;
    c->done = 1;
    c->order = ++completion_counter;
    c->err = err ? strdup(err) : NULL;
    if (res) {
        c->status = strdup(PQcmdStatus((PGresult *)res));
        c->ntuples = PQntuples(res);
        if (PQntuples(res) > 0 && PQnfields(res) > 0)
            c->value = strdup(PQgetvalue(res, 0, 0));
    }
}

static void capture_free(capture_t *c)
{
    free(c->err);
    free(c->value);
    free(c->status);
    memset(c, 0, sizeof(*c));
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    while (!*flag)
        uv_run(loop, UV_RUN_ONCE);
}

typedef struct conn_wait {
    int done;
    char *err;
} conn_wait_t;

static void on_connect(db_t *db, const char *err, void *arg)
{
    conn_wait_t *w = arg;

    (void)db;
    w->done = 1;
    w->err = err ? strdup(err) : NULL;
}

static db_t *connect_ok(uv_loop_t *loop, const char *ci)
{
    conn_wait_t w = {0};
    db_t *db = NULL;

    assert_int_equal(db_connect(loop, ci, on_connect, &w, &db), 0);
    assert_int_equal(w.done, 0); /* never synchronous */
    run_until(loop, &w.done);
    if (w.err)
        fail_msg("connect: %s", w.err);
    return db;
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_all(uv_loop_t *loop, db_t *db)
{
    int closed = 0;

    db_close(db, on_closed, &closed);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Runs sql to completion and returns the first value (caller frees), failing on error. */
static char *query_value(uv_loop_t *loop, db_t *db, const char *sql)
{
    capture_t c = {0};
    char *v;

    assert_int_equal(db_query(db, sql, 0, NULL, on_capture, &c), 0);
    run_until(loop, &c.done);
    if (c.err)
        fail_msg("%s: %s", sql, c.err);
    v = c.value ? strdup(c.value) : NULL;
    capture_free(&c);
    return v;
}

static void exec_ok(uv_loop_t *loop, db_t *db, const char *sql)
{
    free(query_value(loop, db, sql));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_connect_and_query(void **state)
{
    uv_loop_t loop;
    db_t *db;
    const char *params[] = {"41"};
    capture_t c = {0};

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    assert_int_equal(db_query(db, "SELECT $1::int + 1", 1, params, on_capture, &c), 0);
    assert_int_equal(c.done, 0);
    run_until(&loop, &c.done);
    assert_null(c.err);
    assert_string_equal(c.value, "42");
    capture_free(&c);
    close_all(&loop, db);
}

typedef struct ticker {
    uv_timer_t timer;
    int ticks;
} ticker_t;

static void on_tick(uv_timer_t *t)
{
    ((ticker_t *)t->data)->ticks++;
}

static void test_loop_not_blocked(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t c = {0};
    ticker_t tk = {0};

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    uv_timer_init(&loop, &tk.timer);
    tk.timer.data = &tk;
    uv_timer_start(&tk.timer, on_tick, 20, 20);
    assert_int_equal(db_query(db, "SELECT pg_sleep(0.3)", 0, NULL, on_capture, &c), 0);
    run_until(&loop, &c.done);
    assert_null(c.err);
    /* 300 ms at 20 ms a tick: a blocked loop would show 0 or 1. */
    assert_true(tk.ticks >= 8);
    uv_close((uv_handle_t *)&tk.timer, NULL);
    capture_free(&c);
    close_all(&loop, db);
}

#define N_INSERTS 1000

static void test_pipelined_inserts(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t *cs = calloc(N_INSERTS, sizeof(capture_t));
    char num[N_INSERTS][16], text[N_INSERTS][32];
    char *v;
    double t0;

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    exec_ok(&loop, db, "CREATE TABLE pipe_t (n int, s text)");
    completion_counter = 0;
    t0 = now_s();
    for (int i = 0; i < N_INSERTS; i++) {
        const char *params[2] = {num[i], text[i]};
        snprintf(num[i], sizeof(num[i]), "%d", i);
        snprintf(text[i], sizeof(text[i]), "row '%d'; DROP TABLE x", i); /* never interpolated */
        assert_int_equal(db_query(db, "INSERT INTO pipe_t VALUES ($1, $2)", 2, params, on_capture, &cs[i]),
                         0);
    }
    memset(num, 0, sizeof(num)); /* parameters were copied at enqueue time */
    assert_int_equal(db_pending(db), N_INSERTS);
    run_until(&loop, &cs[N_INSERTS - 1].done);
    printf("# %d pipelined inserts (one transaction each): %.1f ms\n", N_INSERTS, (now_s() - t0) * 1e3);
    for (int i = 0; i < N_INSERTS; i++) {
        assert_null(cs[i].err);
        assert_int_equal(cs[i].order, i + 1);
        assert_string_equal(cs[i].status, "INSERT 0 1");
        capture_free(&cs[i]);
    }
    v = query_value(&loop, db,
                    "SELECT count(*) || ':' || sum(n) || ':' || "
                    "count(*) FILTER (WHERE s LIKE 'row ''%''; DROP TABLE x') FROM pipe_t");
    assert_string_equal(v, "1000:499500:1000");
    free(v);
    free(cs);
    close_all(&loop, db);
}

static void test_prepared(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t prep = {0}, ex[50] = {{0}}, bad = {0};
    char *v;

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    exec_ok(&loop, db, "CREATE TABLE prep_t (n int, s text)");
    assert_int_equal(
        db_prepare(db, "ins", "INSERT INTO prep_t VALUES ($1, $2) RETURNING n * 2", on_capture, &prep), 0);
    for (int i = 0; i < 50; i++) {
        char n[16];
        const char *params[2] = {n, i % 2 ? NULL : "even"};
        snprintf(n, sizeof(n), "%d", i);
        assert_int_equal(db_exec_prepared(db, "ins", 2, params, on_capture, &ex[i]), 0);
    }
    assert_int_equal(db_exec_prepared(db, "no_such_statement", 0, NULL, on_capture, &bad), 0);
    run_until(&loop, &bad.done);
    assert_null(prep.err);
    for (int i = 0; i < 50; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i * 2);
        assert_null(ex[i].err);
        assert_string_equal(ex[i].value, want);
        capture_free(&ex[i]);
    }
    assert_non_null(bad.err);
    assert_non_null(strstr(bad.err, "no_such_statement"));
    v = query_value(&loop, db, "SELECT count(*) || '/' || count(s) FROM prep_t");
    assert_string_equal(v, "50/25");
    free(v);
    capture_free(&prep);
    capture_free(&bad);
    close_all(&loop, db);
}

static void test_pipeline_error(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t q1 = {0}, q2 = {0}, q3 = {0}, q4 = {0}, end = {0}, q5 = {0}, q6 = {0}, q7 = {0};
    char *v;

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    exec_ok(&loop, db, "CREATE TABLE batch_t (n int)");
    completion_counter = 0;
    assert_int_equal(db_batch_begin(db), 0);
    assert_int_equal(db_batch_begin(db), DB_EBATCH);
    assert_int_equal(db_query(db, "INSERT INTO batch_t VALUES (1)", 0, NULL, on_capture, &q1), 0);
    assert_int_equal(db_query(db, "SELECT 1/0", 0, NULL, on_capture, &q2), 0);
    assert_int_equal(db_query(db, "SELECT 3", 0, NULL, on_capture, &q3), 0);
    assert_int_equal(db_query(db, "INSERT INTO batch_t VALUES (4)", 0, NULL, on_capture, &q4), 0);
    assert_int_equal(db_batch_end(db, on_capture, &end), 0);
    /* Outside a batch each statement stands alone: a failure does not touch its neighbours. */
    assert_int_equal(db_query(db, "SELECT no_such_column FROM batch_t", 0, NULL, on_capture, &q6), 0);
    assert_int_equal(db_query(db, "INSERT INTO batch_t VALUES (7)", 0, NULL, on_capture, &q7), 0);
    assert_int_equal(db_query(db, "SELECT 5", 0, NULL, on_capture, &q5), 0);
    run_until(&loop, &q5.done);

    assert_null(q1.err);
    assert_non_null(q2.err);
    assert_non_null(strstr(q2.err, "division by zero"));
    assert_non_null(q3.err);
    assert_non_null(strstr(q3.err, "aborted"));
    assert_non_null(q4.err);
    assert_non_null(strstr(q4.err, "aborted"));
    assert_non_null(end.err);
    assert_non_null(strstr(end.err, "division by zero"));
    assert_true(q1.order < q2.order && q2.order < q3.order && q3.order < q4.order && q4.order < end.order);
    assert_non_null(q6.err);
    assert_null(q7.err);
    assert_null(q5.err);
    assert_string_equal(q5.value, "5");
    /* The batch was one transaction: its successful insert was rolled back too. */
    v = query_value(&loop, db, "SELECT string_agg(n::text, ',') FROM batch_t");
    assert_string_equal(v, "7");
    free(v);

    capture_t *all[] = {&q1, &q2, &q3, &q4, &end, &q5, &q6, &q7};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        capture_free(all[i]);
    close_all(&loop, db);
}

#define COPY_ROWS 200000

typedef struct producer {
    int next;
    int total;
    int calls;
    int fail_at; /* abort when next reaches this (0: never) */
} producer_t;

static int produce(db_t *db, buf_t *out, void *arg)
{
    producer_t *p = arg;
    int stop = p->next + 2000;

    (void)db;
    p->calls++;
    if (p->fail_at && p->next >= p->fail_at)
        return -1;
    for (; p->next < p->total && p->next < stop; p->next++)
        if (buf_printf(out, "%d\tname %d\t\\N\n", p->next, p->next) != 0)
            return -1;
    return p->next < p->total ? DB_COPY_MORE : DB_COPY_DONE;
}

static void test_copy(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t c = {0}, bad = {0}, after = {0};
    producer_t p = {.total = COPY_ROWS}, pf = {.total = 100000, .fail_at = 10000};
    ticker_t tk = {0};
    double t0, dt;
    char *v;

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    exec_ok(&loop, db, "CREATE TABLE copy_t (id int, name text, extra text)");
    uv_timer_init(&loop, &tk.timer);
    tk.timer.data = &tk;
    uv_timer_start(&tk.timer, on_tick, 5, 5);
    t0 = now_s();
    assert_int_equal(db_copy_in(db, "COPY copy_t (id, name, extra) FROM STDIN", produce, &p, on_capture, &c),
                     0);
    run_until(&loop, &c.done);
    dt = now_s() - t0;
    uv_timer_stop(&tk.timer);
    assert_null(c.err);
    assert_string_equal(c.status, "COPY 200000");
    printf("# COPY %d rows: %.0f ms, %.0f rows/s, %d producer calls, %d timer ticks meanwhile\n", COPY_ROWS,
           dt * 1e3, COPY_ROWS / dt, p.calls, tk.ticks);
    v = query_value(&loop, db, "SELECT count(*) FROM copy_t");
    assert_string_equal(v, "200000");
    free(v);

    /* A producer that gives up aborts the COPY; nothing is loaded; the connection lives on. */
    assert_int_equal(db_copy_in(db, "COPY copy_t FROM STDIN", produce, &pf, on_capture, &bad), 0);
    assert_int_equal(db_query(db, "SELECT count(*) FROM copy_t", 0, NULL, on_capture, &after), 0);
    run_until(&loop, &after.done);
    assert_non_null(bad.err);
    assert_non_null(strstr(bad.err, "aborted by the data producer"));
    assert_null(after.err);
    assert_string_equal(after.value, "200000");

    uv_close((uv_handle_t *)&tk.timer, NULL);
    capture_free(&c);
    capture_free(&bad);
    capture_free(&after);
    close_all(&loop, db);
}

static void test_big_param(void **state)
{
    uv_loop_t loop;
    db_t *db;
    size_t n = 5 * 1024 * 1024;
    char *big = malloc(n + 1);
    const char *params[1];
    capture_t c = {0}, len = {0};

    (void)state;
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    big[n] = '\0';
    params[0] = big;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    assert_int_equal(db_query(db, "SELECT $1::text", 1, params, on_capture, &c), 0);
    assert_int_equal(db_query(db, "SELECT length($1)", 1, params, on_capture, &len), 0);
    run_until(&loop, &len.done);
    assert_null(c.err);
    assert_non_null(c.value);
    assert_int_equal(strlen(c.value), n);
    assert_memory_equal(c.value, big, n);
    assert_string_equal(len.value, "5242880");
    capture_free(&c);
    capture_free(&len);
    free(big);
    close_all(&loop, db);
}

static void test_connection_refused(void **state)
{
    static const char *const targets[] = {
        "host=/nonexistent-herald-dir dbname=x user=x",
        "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=5",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        uv_loop_t loop;
        db_t *db = NULL;
        conn_wait_t w = {0};
        capture_t q = {0};

        uv_loop_init(&loop);
        assert_int_equal(db_connect(&loop, targets[i], on_connect, &w, &db), 0);
        assert_int_equal(db_query(db, "SELECT 1", 0, NULL, on_capture, &q), 0);
        assert_int_equal(w.done, 0);
        assert_int_equal(q.done, 0);
        run_until(&loop, &q.done);
        assert_int_equal(w.done, 1);
        assert_non_null(w.err);
        assert_non_null(q.err);
        free(w.err);
        capture_free(&q);
        close_all(&loop, db);
    }
}

static void test_disconnect_and_close(void **state)
{
    uv_loop_t loop;
    db_t *db;
    capture_t kill = {0}, next = {0}, c1 = {0}, c2 = {0};

    (void)state;
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    assert_int_equal(
        db_query(db, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL, on_capture, &kill), 0);
    assert_int_equal(db_query(db, "SELECT 1", 0, NULL, on_capture, &next), 0);
    run_until(&loop, &next.done);
    assert_non_null(kill.err);
    assert_non_null(next.err);
    capture_free(&next);
    /* Queued after the loss: still reported, asynchronously. */
    assert_int_equal(db_query(db, "SELECT 1", 0, NULL, on_capture, &next), 0);
    assert_int_equal(next.done, 0);
    run_until(&loop, &next.done);
    assert_non_null(next.err);
    capture_free(&kill);
    capture_free(&next);
    close_all(&loop, db);

    /* Closing cancels what is queued or in flight. */
    uv_loop_init(&loop);
    db = connect_ok(&loop, conninfo);
    assert_int_equal(db_query(db, "SELECT pg_sleep(5)", 0, NULL, on_capture, &c1), 0);
    assert_int_equal(db_query(db, "SELECT 2", 0, NULL, on_capture, &c2), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    close_all(&loop, db);
    assert_string_equal(c1.err, "closed");
    assert_string_equal(c2.err, "closed");
    capture_free(&c1);
    capture_free(&c2);
}

typedef struct mig_wait {
    int done;
    char *err;
    size_t n_applied, n_known;
    int versions[16];
} mig_wait_t;

static void on_migrated(db_t *db, const storage_migrate_report_t *rep, const char *err, void *arg)
{
    mig_wait_t *w = arg;

    (void)db;
    w->done = 1;
    w->err = err ? strdup(err) : NULL;
    w->n_applied = rep->n_applied;
    w->n_known = rep->n_known;
    for (size_t i = 0; i < rep->n_applied && i < 16; i++)
        w->versions[i] = rep->versions[i];
}

static void migrate_list(uv_loop_t *loop, db_t *db, const herald_embedded_t *list, mig_wait_t *w)
{
    memset(w, 0, sizeof(*w));
    if (list)
        assert_int_equal(storage_migrate_list(db, list, on_migrated, w), 0);
    else
        assert_int_equal(storage_migrate(db, on_migrated, w), 0);
    run_until(loop, &w->done);
}

static void test_migrate_embedded(void **state)
{
    char ci[1024], *v, sum[65], want[128];
    uv_loop_t loop;
    db_t *db, *db2;
    mig_wait_t w, w2;
    size_t n = 0;

    (void)state;
    while (storage_migrations[n].name)
        n++;
    snprintf(ci, sizeof(ci), "%s", itest_fresh_db("herald_dbmig"));
    uv_loop_init(&loop);
    db = connect_ok(&loop, ci);
    db2 = connect_ok(&loop, ci);
    /* Two runs at once: the advisory lock makes one wait, then find nothing to do. */
    memset(&w, 0, sizeof(w));
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(storage_migrate(db, on_migrated, &w), 0);
    assert_int_equal(storage_migrate(db2, on_migrated, &w2), 0);
    run_until(&loop, &w.done);
    run_until(&loop, &w2.done);
    assert_null(w.err);
    assert_null(w2.err);
    assert_int_equal(w.n_known, n);
    assert_int_equal(w.n_applied + w2.n_applied, n);

    migrate_list(&loop, db, NULL, &w);
    assert_null(w.err);
    assert_int_equal(w.n_applied, 0);

    snprintf(want, sizeof(want), "%zu", n);
    v = query_value(&loop, db, "SELECT count(*) FROM schema_migrations");
    assert_string_equal(v, want);
    free(v);
    if (n > 0) {
        storage_sha256_hex(storage_migrations[0].data, storage_migrations[0].len, sum);
        snprintf(want, sizeof(want), "1|%s|%s|true", storage_migrations[0].name, sum);
        v = query_value(&loop, db,
                        "SELECT version || '|' || name || '|' || checksum || '|' || "
                        "(applied_at <= now())::text FROM schema_migrations ORDER BY version LIMIT 1");
        assert_string_equal(v, want);
        free(v);
    }
    db_close(db2, NULL, NULL);
    close_all(&loop, db);
}

#define MIG(name, sql)                                                                                       \
    {                                                                                                        \
        name, sql, sizeof(sql) - 1                                                                           \
    }

static void test_migrate_failing(void **state)
{
    static const herald_embedded_t list[] = {
        MIG("001_a.sql", "CREATE TABLE mig_a (x int); INSERT INTO mig_a VALUES (1);"),
        MIG("002_b.sql", "CREATE TABLE mig_b (x int); SELECT no_such_function();"),
        MIG("003_c.sql", "CREATE TABLE mig_c (x int);"),
        {NULL, NULL, 0},
    };
    static const herald_embedded_t changed[] = {
        MIG("001_a.sql", "CREATE TABLE mig_a (x bigint);"),
        {NULL, NULL, 0},
    };
    static const herald_embedded_t unordered[] = {
        MIG("002_x.sql", "SELECT 1"),
        MIG("001_y.sql", "SELECT 1"),
        {NULL, NULL, 0},
    };
    char ci[1024], *v;
    uv_loop_t loop;
    db_t *db;
    mig_wait_t w;

    (void)state;
    snprintf(ci, sizeof(ci), "%s", itest_fresh_db("herald_dbmigfail"));
    uv_loop_init(&loop);
    db = connect_ok(&loop, ci);

    migrate_list(&loop, db, list, &w);
    assert_non_null(w.err);
    assert_non_null(strstr(w.err, "002_b.sql"));
    assert_non_null(strstr(w.err, "no_such_function"));
    assert_int_equal(w.n_applied, 1);
    assert_int_equal(w.versions[0], 1);
    free(w.err);
    v = query_value(&loop, db,
                    "SELECT (to_regclass('mig_a') IS NOT NULL) || ',' || "
                    "(to_regclass('mig_b') IS NULL) || ',' || (to_regclass('mig_c') IS NULL) || ',' || "
                    "(SELECT string_agg(version::text, ' ') FROM schema_migrations)");
    assert_string_equal(v, "true,true,true,1");
    free(v);

    /* The lock was released and the connection is usable: the same run again fails the same way. */
    migrate_list(&loop, db, list, &w);
    assert_non_null(w.err);
    assert_non_null(strstr(w.err, "002_b.sql"));
    assert_int_equal(w.n_applied, 0);
    free(w.err);

    migrate_list(&loop, db, changed, &w);
    assert_non_null(w.err);
    assert_non_null(strstr(w.err, "001_a.sql"));
    assert_non_null(strstr(w.err, "checksum"));
    free(w.err);

    migrate_list(&loop, db, unordered, &w);
    assert_non_null(w.err);
    assert_non_null(strstr(w.err, "001_y.sql"));
    free(w.err);

    v = query_value(&loop, db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'");
    assert_string_equal(v, "0");
    free(v);
    close_all(&loop, db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_query),
        cmocka_unit_test(test_loop_not_blocked),
        cmocka_unit_test(test_pipelined_inserts),
        cmocka_unit_test(test_prepared),
        cmocka_unit_test(test_pipeline_error),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_big_param),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_disconnect_and_close),
        cmocka_unit_test(test_migrate_embedded),
        cmocka_unit_test(test_migrate_failing),
    };

    snprintf(conninfo, sizeof(conninfo), "%s", itest_fresh_db("herald_db"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
