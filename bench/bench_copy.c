/*
 * bench_copy: bulk-load throughput of db_copy_in() into a temporary table, plus, for
 * comparison, pipelined INSERTs (one batch, one transaction) of the same rows.
 *
 *   bench_copy [ROWS]      (default 1000000; uses DATABASE_URL, else the embedded cluster)
 *
 * Prints rows/s and MB/s. The table is TEMP, so nothing is left behind.
 */
#include "storage/db.h"
#include "storage/pgcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct bench {
    uv_loop_t *loop;
    long rows;
    long next;
    size_t bytes;
    int done;
    char *err;
} bench_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_done(db_t *db, const PGresult *res, const char *err, void *arg)
{
    bench_t *b = arg;

    (void)db;
    (void)res;
    if (err && !b->err)
        b->err = strdup(err);
    b->done = 1;
}

static void on_connect(db_t *db, const char *err, void *arg)
{
    on_done(db, NULL, err, arg);
}

static int produce(db_t *db, buf_t *out, void *arg)
{
    bench_t *b = arg;
    long stop = b->next + 4000;

    (void)db;
    for (; b->next < b->rows && b->next < stop; b->next++)
        if (buf_printf(out, "%ld\t+1415555%04ld\tHello {{first_name}}, row %ld\n", b->next, b->next % 10000,
                       b->next) != 0)
            return -1;
    b->bytes += out->len;
    return b->next < b->rows ? DB_COPY_MORE : DB_COPY_DONE;
}

static int wait_done(bench_t *b, const char *what)
{
    while (!b->done)
        uv_run(b->loop, UV_RUN_ONCE);
    b->done = 0;
    if (b->err) {
        fprintf(stderr, "bench_copy: %s: %s\n", what, b->err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char conninfo[4096], err[1024], id[32], phone[32], body[64];
    uv_loop_t loop;
    bench_t b = {.loop = &loop, .rows = argc > 1 ? atol(argv[1]) : 1000000};
    db_t *db = NULL;
    double t0, dt;
    long n_ins;
    int rc = 1;

    if (b.rows <= 0) {
        fprintf(stderr, "usage: bench_copy [ROWS]\n");
        return 2;
    }
    if (storage_conninfo(conninfo, sizeof(conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_copy: %s\n", err);
        return 1;
    }
    uv_loop_init(&loop);
    if (db_connect(&loop, conninfo, on_connect, &b, &db) < 0 || wait_done(&b, "connect") < 0)
        goto out;
    if (db_query(db, "CREATE TEMP TABLE bench_t (id bigint, phone text, body text)", 0, NULL, on_done, &b) <
            0 ||
        wait_done(&b, "create") < 0)
        goto out;

    t0 = now_s();
    if (db_copy_in(db, "COPY bench_t FROM STDIN", produce, &b, on_done, &b) < 0 || wait_done(&b, "copy") < 0)
        goto out;
    dt = now_s() - t0;
    printf("COPY     %8ld rows in %7.3f s: %10.0f rows/s, %6.1f MB/s\n", b.rows, dt, b.rows / dt,
           b.bytes / dt / 1e6);

    n_ins = b.rows < 100000 ? b.rows : 100000;
    t0 = now_s();
    if (db_batch_begin(db) < 0)
        goto out;
    for (long i = 0; i < n_ins; i++) {
        const char *params[3] = {id, phone, body};
        snprintf(id, sizeof(id), "%ld", i);
        snprintf(phone, sizeof(phone), "+1415555%04ld", i % 10000);
        snprintf(body, sizeof(body), "Hello {{first_name}}, row %ld", i);
        if (db_query(db, "INSERT INTO bench_t VALUES ($1, $2, $3)", 3, params, NULL, NULL) < 0)
            goto out;
    }
    if (db_batch_end(db, on_done, &b) < 0 || wait_done(&b, "inserts") < 0)
        goto out;
    dt = now_s() - t0;
    printf("INSERT   %8ld rows in %7.3f s: %10.0f rows/s (pipelined, one batch)\n", n_ins, dt, n_ins / dt);
    rc = 0;
out:
    if (db)
        db_close(db, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(b.err);
    return rc;
}
