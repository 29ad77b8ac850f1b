/*
 * bench_upload: end-to-end campaign CSV upload through the ingest module (the code
 * `herald campaign upload` runs), against the COPY floor.
 *
 *   bench_upload [ROWS] [--threads N] [--keep] [--file PATH]
 *       ROWS default 1000000. Uses DATABASE_URL (else the embedded cluster).
 *
 * Generates a CSV (phone in mixed formats, ~5% invalid, ~5% duplicates, ~2% of the
 * numbers on the suppression list, first_name / city / tags columns), creates an
 * org and a campaign, uploads, and prints rows/s, seconds per stage, peak RSS of
 * this process (VmHWM) and the ratio to a bare COPY of the same file into a plain
 * temporary table. The org (and with it everything uploaded) is deleted at the end
 * unless --keep. The load average is printed: other work on the machine skews it.
 */
#include "bench/benchdb.h"
#include "common/log.h"
#include "ingest/ingest.h"
#include "storage/db.h"
#include "storage/migrate.h"
#include "storage/pgcluster.h"

#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static const int areas[8] = {212, 312, 415, 617, 206, 305, 512, 720};
static const char *const names[8] = {"Ann", "Bob", "Chloé", "Dan", "Eve", "Fay", "Gus", "Hal"};
static const char *const cities[4] = {"San Francisco", "New York", "Austin, TX", "Seattle"};

typedef benchdb_t bench_t;

/* What a COPY reads from: generated suppression rows, or a file. */
typedef struct copy_src {
    long rows;
    long next;
    int fd;
    int eof;
} copy_src_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long vm_hwm_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* The k-th distinct valid number, national digits only. */
static void number(long k, char *out, size_t n)
{
    snprintf(out, n, "%d%07ld", areas[k % 8], 2000000 + (k / 8) % 8000000);
}

static void on_committed(ingest_t *ing, const ingest_report_t *rep, const char *err, void *arg)
{
    (void)ing;
    (void)rep;
    benchdb_on_result(NULL, NULL, err, arg);
}

static int produce_suppression(db_t *db, buf_t *out, void *arg)
{
    copy_src_t *src = arg;
    char num[32];
    (void)db;
    for (; src->next < src->rows && out->len < 256 * 1024; src->next++) {
        if (src->next % 50 != 1)
            continue;
        number(src->next, num, sizeof(num));
        if (buf_printf(out, "+1%s\topt_out\n", num) != 0)
            return -1;
    }
    return src->next < src->rows ? DB_COPY_MORE : DB_COPY_DONE;
}

static int produce_file(db_t *db, buf_t *out, void *arg)
{
    copy_src_t *src = arg;
    char chunk[65536];
    ssize_t n;
    (void)db;
    while (out->len < 64 * 1024) {
        n = read(src->fd, chunk, sizeof(chunk));
        if (n <= 0) {
            src->eof = 1;
            break;
        }
        if (buf_append(out, chunk, (size_t)n) != 0)
            return -1;
    }
    return src->eof ? DB_COPY_DONE : DB_COPY_MORE;
}

typedef struct feeder {
    ingest_t *ing;
    int fd;
    int rc;
    ingest_error_t ierr;
} feeder_t;

static void *feeder_main(void *arg)
{
    feeder_t *f = arg;

    f->rc = ingest_feed_fd(f->ing, f->fd, NULL, NULL, &f->ierr);
    return NULL;
}

static int generate(const char *path, long rows)
{
    FILE *f = fopen(path, "w");
    char num[32];
    long uniq = 0;

    if (!f)
        return -1;
    fputs("phone,first_name,city,tags\n", f);
    for (long i = 0; i < rows; i++) {
        long k;
        unsigned h = (unsigned)(i * 2654435761u);
        if (h % 100 < 5) { /* invalid */
            fprintf(f, "%s,%s,\"%s\",\n", (h >> 8) % 2 ? "12345" : "555-CALL-NOW-PLEASE", names[i % 8], cities[i % 4]);
            continue;
        }
        if (h % 100 < 10 && uniq > 0)
            k = (long)((h >> 8) % (unsigned long)uniq); /* a duplicate of an earlier number */
        else
            k = uniq++;
        number(k, num, sizeof(num));
        switch ((h >> 16) % 5) {
        case 0: fprintf(f, "+1%s", num); break;
        case 1: fprintf(f, "(%.3s) %.3s-%s", num, num + 3, num + 6); break;
        case 2: fprintf(f, "%.3s.%.3s.%s", num, num + 3, num + 6); break;
        case 3: fprintf(f, "1-%.3s-%.3s-%s", num, num + 3, num + 6); break;
        default: fprintf(f, "\"+1 %.3s %.3s %s\"", num, num + 3, num + 6); break;
        }
        fprintf(f, ",%s,\"%s\",%s\n", names[i % 8], cities[i % 4], i % 3 ? "vip" : "\"new,vip\"");
    }
    return fclose(f);
}

int main(int argc, char **argv)
{
    bench_t b = {0};
    copy_src_t src = {0};
    char conninfo[4096], base[4096], err[1024], path[256], org[32] = "", camp[32], sql[1024], dbname[64] = "";
    const char *file = NULL;
    int threads = 2, keep = 0, rc = 1, fd = -1;
    long rows = 1000000;
    double t0, t_upload, t_floor, la[3] = {0};
    long hwm_upload;
    ingest_campaign_t c = {0};
    ingest_default_t *defs = NULL;
    ingest_options_t opt = {0};
    ingest_error_t ierr;
    ingest_t *ing = NULL;
    const ingest_report_t *rep;
    PGresult *cres = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if ((rows = atol(argv[i])) <= 0) {
            fprintf(stderr, "usage: bench_upload [ROWS] [--threads N] [--keep] [--file PATH]\n");
            return 2;
        }
    }
    if (getenv("HERALD_LOG_LEVEL"))
        (void)log_set_level_name(getenv("HERALD_LOG_LEVEL"));
    snprintf(path, sizeof(path), "%s", file ? file : "/tmp/bench_upload.csv");
    if (!file || access(path, R_OK) != 0) {
        t0 = now_s();
        if (generate(path, rows) != 0) {
            fprintf(stderr, "bench_upload: cannot write %s\n", path);
            return 1;
        }
        printf("generated %ld rows into %s in %.1f s\n", rows, path, now_s() - t0);
    }
    if (storage_conninfo(conninfo, sizeof(conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_upload: %s\n", err);
        return 1;
    }
    uv_loop_init(&b.loop);
    b.name = "bench_upload";
    if (benchdb_connect(&b, conninfo) != 0)
        goto out;
    /* A database of its own, dropped at the end: cascading deletes of a million rows are slow. */
    snprintf(dbname, sizeof(dbname), "bench_upload_%ld", (long)getpid());
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
    if (benchdb_query(&b, sql, NULL, 0) == 0) {
        snprintf(base, sizeof(base), "%s", conninfo);
        snprintf(conninfo + strlen(conninfo), sizeof(conninfo) - strlen(conninfo), " dbname=%s", dbname);
        if (benchdb_connect(&b, conninfo) != 0)
            goto out;
    } else {
        free(b.err);
        b.err = NULL;
        dbname[0] = '\0';
        printf("(cannot create a database; using DATABASE_URL's and deleting the org at the end)\n");
    }
    if (storage_migrate(b.db, benchdb_on_migrate, &b) != 0 || benchdb_wait(&b, "migrate") != 0)
        goto out;
    snprintf(sql, sizeof(sql), "INSERT INTO orgs (name) VALUES ('bench-%ld') RETURNING id", (long)getpid());
    if (benchdb_query(&b, sql, org, sizeof(org)) != 0)
        goto out;
    snprintf(sql, sizeof(sql),
             "INSERT INTO campaigns (org_id, name, body, from_number, rate_mps, quiet_start_min, quiet_end_min) "
             "VALUES (%s, 'bench', 'Hi {{first_name}}, our {{city}} store has a sale today.', '+14155550100', 30, "
             "540, 1200) RETURNING id",
             org);
    if (benchdb_query(&b, sql, camp, sizeof(camp)) != 0)
        goto out;
    src.rows = rows;
    {
        char s2[256];
        snprintf(s2, sizeof(s2), "CREATE TEMP TABLE sup_in (e164 text, reason text)");
        if (benchdb_query(&b, s2, NULL, 0) != 0)
            goto out;
        if (db_copy_in(b.db, "COPY sup_in FROM STDIN", produce_suppression, &src, benchdb_on_result, &b) != 0)
            goto out;
        if (benchdb_wait(&b, "suppression") != 0)
            goto out;
        snprintf(s2, sizeof(s2),
                 "INSERT INTO suppression (org_id, e164, reason) SELECT %s, e164, reason FROM sup_in "
                 "ON CONFLICT DO NOTHING",
                 org);
        if (benchdb_query(&b, s2, NULL, 0) != 0)
            goto out;
    }
    {
        const char *p[2] = {camp, org};
        if (db_query(b.db, INGEST_CAMPAIGN_SQL, 2, p, benchdb_on_result, &b) != 0)
            goto out;
        if (b.res) {
            PQclear(b.res);
            b.res = NULL;
        }
        if (benchdb_wait(&b, "campaign") != 0)
            goto out;
        cres = b.res;
        b.res = NULL;
        if (ingest_campaign_from_result(cres, &c, &defs, &ierr) != 0) {
            fprintf(stderr, "bench_upload: %s\n", ierr.reason);
            goto out;
        }
    }

    /* The upload, exactly as the CLI drives it: the commit starts first and its COPY
     * follows the parse, which a reader thread feeds. */
    opt.threads = threads;
    t0 = now_s();
    if (ingest_new(&c, &opt, &ing, &ierr) != 0 || (fd = open(path, O_RDONLY)) < 0) {
        fprintf(stderr, "bench_upload: %s\n", ierr.reason);
        goto out;
    }
    b.done = 0;
    if (ingest_commit(ing, b.db, on_committed, &b) != 0)
        goto out;
    {
        feeder_t f = {.ing = ing, .fd = fd};
        pthread_t th;
        if (pthread_create(&th, NULL, feeder_main, &f) != 0)
            goto out;
        while (!b.done)
            uv_run(&b.loop, UV_RUN_ONCE);
        pthread_join(th, NULL);
        close(fd);
        fd = -1;
        if (f.rc != 0) {
            fprintf(stderr, "bench_upload: row %ld: %s\n", f.ierr.row, f.ierr.reason);
            goto out;
        }
    }
    b.done = 0;
    if (b.err) {
        fprintf(stderr, "bench_upload: commit: %s\n", b.err);
        goto out;
    }
    t_upload = now_s() - t0;
    rep = ingest_report(ing);
    hwm_upload = vm_hwm_kb();

    /* The floor: the same file, COPYed as is into a plain table. */
    if (benchdb_query(&b, "CREATE TEMP TABLE floor_t (phone text, first_name text, city text, tags text)",
                      NULL, 0) != 0)
        goto out;
    src.fd = open(path, O_RDONLY);
    src.eof = 0;
    t0 = now_s();
    if (db_copy_in(b.db, "COPY floor_t FROM STDIN WITH (FORMAT csv, HEADER true)", produce_file, &src,
                   benchdb_on_result, &b) != 0 ||
        benchdb_wait(&b, "floor copy") != 0)
        goto out;
    t_floor = now_s() - t0;
    close(src.fd);

    getloadavg(la, 3);
    printf("rows %ld: accepted %ld, invalid %ld, duplicate %ld, suppressed %ld, segments %lld\n", rep->rows,
           rep->accepted, rep->invalid, rep->duplicate, rep->suppressed, rep->segments);
    printf("upload   %8.2f s  %9.0f rows/s  (parse+normalize %.2f s, overlapped with the database work of %.2f s, "
           "%d threads)\n",
           t_upload, rep->rows / t_upload, rep->parse_seconds, rep->commit_seconds, threads);
    printf("floor    %8.2f s  %9.0f rows/s  (bare COPY of the file into a plain temp table)\n", t_floor,
           rep->rows / t_floor);
    printf("ratio    %8.2f x\n", t_upload / t_floor);
    printf("peak RSS %8.1f MB (VmHWM after the upload; %.1f MB after the floor COPY too)\n", hwm_upload / 1024.0,
           vm_hwm_kb() / 1024.0);
    printf("load average %.2f %.2f %.2f on %ld cores\n", la[0], la[1], la[2], sysconf(_SC_NPROCESSORS_ONLN));
    rc = 0;
out:
    if (!keep && org[0] && b.db && !dbname[0]) {
        snprintf(sql, sizeof(sql), "DELETE FROM orgs WHERE id = %s", org);
        if (b.err) {
            free(b.err);
            b.err = NULL;
        }
        (void)benchdb_query(&b, sql, NULL, 0);
    }
    if (fd >= 0)
        close(fd);
    ingest_free(ing);
    ingest_defaults_free(defs, c.n_defaults);
    if (cres)
        PQclear(cres);
    if (b.res)
        PQclear(b.res);
    b.res = NULL;
    if (b.db)
        db_close(b.db, NULL, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    b.db = NULL;
    fflush(stdout);
    if (dbname[0] && !keep) {
        if (benchdb_connect(&b, base) == 0) {
            snprintf(sql, sizeof(sql), "DROP DATABASE %s", dbname);
            (void)benchdb_query(&b, sql, NULL, 0);
        }
        if (b.res)
            PQclear(b.res);
        if (b.db)
            db_close(b.db, NULL, NULL);
        uv_run(&b.loop, UV_RUN_DEFAULT);
    } else if (dbname[0]) {
        printf("kept database %s\n", dbname);
    }
    uv_loop_close(&b.loop);
    free(b.err);
    return rc;
}
