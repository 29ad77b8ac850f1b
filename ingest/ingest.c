/*
 * Stage 1 of an upload (see ingest.h): the CSV bytes go through libcsv on the
 * feeding thread, which only splits records and fields into batches; a small pool of
 * worker threads runs the per-row step of row.c on each batch (phone normalization
 * and body rendering are the expensive parts). The workers then take turns, in batch
 * order, to write their results: a number seen earlier in the file becomes a
 * "duplicate of row N" reject (first row wins), accepted rows go to one unlinked spool
 * file and rejects to another, both in file order. The queue between parser and
 * workers holds a few batches, so memory stays flat whatever the size of the file,
 * but for the set of numbers seen (12 bytes a slot, see numset.c).
 */
#include "ingest/ingest_int.h"
#include "common/xalloc.h"

#include <csv.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_ROWS 4096
#define BATCH_BYTES (2u * 1024 * 1024)
#define BATCH_FIELDS 65536
#define OUT_CAP (256u * 1024 * 1024)
#define OUT_FLUSH (4u * 1024 * 1024)
#define HEADER_CAP (INGEST_MAX_COLUMNS * (INGEST_MAX_NAME + 8) + 4096)

typedef struct brow {
    long rn;
    int nfields;
    unsigned flags;
    size_t field0;
    size_t bytes;
} brow_t;

typedef struct batch {
    struct batch *next;
    uint64_t seq; /* order of submission: results are written in this order */
    int nrows;
    brow_t rows[BATCH_ROWS];
    size_t nf, capf;
    size_t *off, *len;
    buf_t data;
} batch_t;

typedef enum ingest_state {
    ST_HEADER,  /* the first record is the header */
    ST_ROWS,
    ST_FINISHED,
    ST_FAILED,
} ingest_state_t;

struct ingest {
    const ingest_campaign_t *camp;
    ingest_options_t opt;
    ingest_state_t state;
    ingest_error_t fatal; /* first fatal parse error, set by the callbacks */

    struct csv_parser csv;
    EVP_MD_CTX *sha;
    uint64_t fed;
    long rn;            /* records seen, header included */
    batch_t *cur;       /* being filled by the parser */
    buf_t hdr_data;
    size_t hdr_off[INGEST_MAX_COLUMNS + 1], hdr_len[INGEST_MAX_COLUMNS + 1];
    int hdr_n;
    ingest_header_t hdr;
    ingest_template_t tpl;
    struct timespec t0;

    /* The queue of full batches and the pool of empty ones. */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_space, cv_free;
    batch_t *q_head, *q_tail, *free_list;
    uint64_t next_seq;   /* given to the next batch submitted */
    uint64_t next_write; /* the batch whose results are written next */
    pthread_cond_t cv_turn;
    int q_len, q_max, n_batches, max_batches;
    int stopping;
    int nthreads;
    pthread_t threads[INGEST_MAX_THREADS];
    int threads_started;

    /* Spools, numbers seen and results: touched only by the worker whose turn it is. */
    int spool_fd, rej_fd;
    uint64_t spool_bytes, rej_bytes;
    buf_t acc_out, rej_out;
    ingest_numset_t seen;
    long long seg_first; /* segments of the accepted rows, each with its first-message footer */
    int io_error; /* under mu */
    atomic_long rows_parsed;
    atomic_int stage1; /* 0 running, 1 finished (spools complete), -1 failed */
    ingest_report_t rep;
    int committing;
};

/* ---- batches ---- */

static batch_t *batch_new(void)
{
    batch_t *b = xcalloc(1, sizeof(*b));
    b->capf = 1024;
    b->off = xmalloc(b->capf * sizeof(*b->off));
    b->len = xmalloc(b->capf * sizeof(*b->len));
    buf_init(&b->data, BATCH_BYTES + INGEST_MAX_ROW + 1024);
    return b;
}

static void batch_free(batch_t *b)
{
    free(b->off);
    free(b->len);
    buf_close(&b->data);
    free(b);
}

static void batch_reset(batch_t *b)
{
    b->nrows = 0;
    b->nf = 0;
    buf_reset(&b->data);
}

/* ---- worker threads ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void flush_to(ingest_t *ing, int fd, buf_t *out, uint64_t *bytes)
{
    if (out->len == 0)
        return;
    if (write_all(fd, out->data, out->len) != 0) {
        pthread_mutex_lock(&ing->mu);
        if (!ing->io_error)
            ing->io_error = errno ? errno : EIO;
        pthread_mutex_unlock(&ing->mu);
    }
    *bytes += out->len;
    buf_reset(out);
}

/* What the write turn needs of each row of a processed batch. */
typedef struct rowmeta {
    long rn;
    int reason;
    unsigned fsegs; /* segments with the first-message footer */
    uint64_t key;
    size_t off, len; /* its staging line in the worker's output */
} rowmeta_t;

static int process_batch(ingest_rowctx_t *x, batch_t *b, buf_t *out, rowmeta_t *meta, const char **fp,
                         size_t *fl)
{
    for (int r = 0; r < b->nrows; r++) {
        const brow_t *br = &b->rows[r];
        ingest_row_t row = {.rn = br->rn, .nfields = br->nfields, .f = fp, .len = fl, .flags = br->flags};
        ingest_row_result_t res;
        size_t off = out->len;

        for (int i = 0; i < br->nfields; i++) {
            fp[i] = b->data.data + b->off[br->field0 + i];
            fl[i] = b->len[br->field0 + i];
        }
        if (ingest_row_process(x, &row, out, &res) != 0)
            return -1; /* a batch can not fill OUT_CAP: rows and batches are capped far below it */
        meta[r] = (rowmeta_t){.rn = br->rn, .reason = res.reason,
                              .fsegs = res.first_segments, .key = res.reason < 0 ? ingest_e164_key(res.e164) : 0,
                              .off = off, .len = out->len - off};
    }
    return 0;
}

const char *ingest_line_field(const char *line, size_t len, int k, size_t *n)
{
    const char *p = line, *end = line + len, *t;

    for (; k > 0 && p < end; k--) {
        t = memchr(p, '\t', (size_t)(end - p));
        p = t ? t + 1 : end;
    }
    t = memchr(p, '\t', (size_t)(end - p));
    *n = (size_t)((t ? t : end) - p);
    return p;
}

/* The reject line "rn<TAB>raw<TAB>reason<TAB>detail" of a staging line. */
static int put_reject(buf_t *o, const char *line, size_t len, const char *reason, const char *detail)
{
    size_t n;
    const char *f;
    int rc = 0;

    f = ingest_line_field(line, len, 0, &n);
    rc |= buf_append(o, f, n);
    rc |= buf_append(o, "\t", 1);
    f = ingest_line_field(line, len, 2, &n);
    rc |= buf_append(o, f, n);
    rc |= buf_append(o, "\t", 1);
    if (reason) {
        rc |= buf_puts(o, reason);
        rc |= buf_append(o, "\t", 1);
        rc |= buf_puts(o, detail);
    } else {
        f = ingest_line_field(line, len, 13, &n);
        rc |= buf_append(o, f, n);
        rc |= buf_append(o, "\t", 1);
        f = ingest_line_field(line, len, 14, &n);
        rc |= buf_append(o, f, n);
    }
    rc |= buf_append(o, "\n", 1);
    return rc;
}

/* The writing turn of one batch: de-duplicates against the numbers seen and spools. */
static void write_batch(ingest_t *ing, const buf_t *out, const rowmeta_t *meta, int nrows)
{
    static const char tail[] = "\t\\N\t\\N\n"; /* reason, detail of an accepted line */

    for (int r = 0; r < nrows; r++) {
        const rowmeta_t *m = &meta[r];
        const char *line = out->data + m->off;
        uint32_t first;
        int rc;

        if (m->reason >= 0) {
            rc = put_reject(&ing->rej_out, line, m->len - 1, NULL, NULL);
            ing->rep.by_reason[m->reason]++;
        } else if (m->key != 0 && ingest_numset_put(&ing->seen, m->key, (uint32_t)m->rn, &first)) {
            char detail[48];
            snprintf(detail, sizeof(detail), "duplicate of row %lu", (unsigned long)first);
            rc = put_reject(&ing->rej_out, line, m->len - 1, "duplicate", detail);
            ing->rep.by_reason[INGEST_R_DUPLICATE]++;
        } else {
            size_t keep = m->len - (sizeof(tail) - 1);
            rc = buf_append(&ing->acc_out, line, keep);
            rc |= buf_append(&ing->acc_out, "\n", 1);
            ing->rep.accepted++;
            ing->seg_first += m->fsegs;
        }
        if (rc != 0) {
            pthread_mutex_lock(&ing->mu);
            ing->io_error = ENOBUFS;
            pthread_mutex_unlock(&ing->mu);
            return;
        }
        if (ing->acc_out.len >= OUT_FLUSH)
            flush_to(ing, ing->spool_fd, &ing->acc_out, &ing->spool_bytes);
        if (ing->rej_out.len >= OUT_FLUSH)
            flush_to(ing, ing->rej_fd, &ing->rej_out, &ing->rej_bytes);
    }
}

static void *worker_main(void *arg)
{
    ingest_t *ing = arg;
    ingest_rowctx_t x;
    buf_t out;
    rowmeta_t *meta = xcalloc(BATCH_ROWS, sizeof(*meta));
    const char **fp = xcalloc(INGEST_MAX_COLUMNS + 1, sizeof(*fp));
    size_t *fl = xcalloc(INGEST_MAX_COLUMNS + 1, sizeof(*fl));

    ingest_rowctx_init(&x, ing->camp, &ing->hdr, &ing->tpl);
    buf_init(&out, OUT_CAP);
    for (;;) {
        batch_t *b;
        uint64_t seq;
        int nrows, failed;

        pthread_mutex_lock(&ing->mu);
        while (!ing->q_head && !ing->stopping)
            pthread_cond_wait(&ing->cv_work, &ing->mu);
        if (!ing->q_head) {
            pthread_mutex_unlock(&ing->mu);
            break;
        }
        b = ing->q_head;
        ing->q_head = b->next;
        if (!ing->q_head)
            ing->q_tail = NULL;
        ing->q_len--;
        pthread_cond_signal(&ing->cv_space);
        pthread_mutex_unlock(&ing->mu);

        buf_reset(&out);
        failed = process_batch(&x, b, &out, meta, fp, fl);
        seq = b->seq;
        nrows = b->nrows;

        pthread_mutex_lock(&ing->mu);
        batch_reset(b);
        b->next = ing->free_list;
        ing->free_list = b;
        pthread_cond_signal(&ing->cv_free);
        if (failed)
            ing->io_error = ENOBUFS;
        /* Wait for this batch's turn: the batches before it are held by working threads. */
        while (ing->next_write != seq)
            pthread_cond_wait(&ing->cv_turn, &ing->mu);
        failed = failed || ing->io_error;
        pthread_mutex_unlock(&ing->mu);

        if (!failed)
            write_batch(ing, &out, meta, nrows);

        pthread_mutex_lock(&ing->mu);
        ing->next_write++;
        pthread_cond_broadcast(&ing->cv_turn);
        pthread_mutex_unlock(&ing->mu);
    }
    buf_close(&out);
    ingest_rowctx_close(&x);
    free(meta);
    free(fp);
    free(fl);
    return NULL;
}

/* Hands the current batch to the workers and takes an empty one; blocks while they are behind. */
static void submit(ingest_t *ing)
{
    batch_t *b = ing->cur;

    if (b->nrows == 0)
        return;
    pthread_mutex_lock(&ing->mu);
    while (ing->q_len >= ing->q_max)
        pthread_cond_wait(&ing->cv_space, &ing->mu);
    b->next = NULL;
    b->seq = ing->next_seq++;
    if (ing->q_tail)
        ing->q_tail->next = b;
    else
        ing->q_head = b;
    ing->q_tail = b;
    ing->q_len++;
    pthread_cond_signal(&ing->cv_work);
    while (!ing->free_list && ing->n_batches >= ing->max_batches)
        pthread_cond_wait(&ing->cv_free, &ing->mu);
    if (ing->free_list) {
        ing->cur = ing->free_list;
        ing->free_list = ing->cur->next;
    } else {
        ing->cur = NULL;
        ing->n_batches++;
    }
    pthread_mutex_unlock(&ing->mu);
    if (!ing->cur)
        ing->cur = batch_new();
}

static void start_threads(ingest_t *ing);

/* ---- libcsv callbacks ---- */

static void fail(ingest_t *ing, int code, const char *reason)
{
    if (ing->fatal.code)
        return;
    ing->fatal.code = code;
    ing->fatal.row = ing->rn + 1;
    snprintf(ing->fatal.reason, sizeof(ing->fatal.reason), "%s", reason);
}

static void on_field(void *s, size_t len, void *arg)
{
    ingest_t *ing = arg;

    if (ing->fatal.code)
        return;
    if (ing->state == ST_HEADER) {
        if (ing->hdr_n >= INGEST_MAX_COLUMNS) {
            char msg[96];
            snprintf(msg, sizeof(msg), "header row has more than %d columns", INGEST_MAX_COLUMNS);
            fail(ing, INGEST_ETOOBIG, msg);
            return;
        }
        ing->hdr_off[ing->hdr_n] = ing->hdr_data.len;
        ing->hdr_len[ing->hdr_n] = len;
        /* Longer names are refused by the header check; keep just enough to say so. */
        if (buf_append(&ing->hdr_data, s, len > INGEST_MAX_NAME + 4 ? INGEST_MAX_NAME + 4 : len) != 0) {
            fail(ing, INGEST_ETOOBIG, "header row is too long");
            return;
        }
        if (len > INGEST_MAX_NAME + 4)
            ing->hdr_len[ing->hdr_n] = INGEST_MAX_NAME + 4;
        ing->hdr_n++;
        return;
    }
    {
        batch_t *b = ing->cur;
        brow_t *br = &b->rows[b->nrows];
        if (br->nfields >= ing->hdr.ncols) {
            br->flags |= INGEST_ROW_TOO_MANY_FIELDS;
            return;
        }
        if (br->bytes + len > INGEST_MAX_ROW) {
            br->flags |= INGEST_ROW_TOO_LONG;
            len = 0;
        }
        if (b->nf == b->capf) {
            b->capf *= 2;
            b->off = xrealloc(b->off, b->capf * sizeof(*b->off));
            b->len = xrealloc(b->len, b->capf * sizeof(*b->len));
        }
        b->off[b->nf] = b->data.len;
        b->len[b->nf] = len;
        if (buf_append(&b->data, s, len) != 0) {
            fail(ing, INGEST_ETOOBIG, "row is too long");
            return;
        }
        b->nf++;
        br->nfields++;
        br->bytes += len;
    }
}

static void on_row(int c, void *arg)
{
    ingest_t *ing = arg;

    (void)c;
    if (ing->fatal.code)
        return;
    ing->rn++;
    if (ing->state == ST_HEADER) {
        const char *f[INGEST_MAX_COLUMNS];
        for (int i = 0; i < ing->hdr_n; i++)
            f[i] = ing->hdr_data.data + ing->hdr_off[i];
        if (ingest_header_parse(&ing->hdr, f, ing->hdr_len, ing->hdr_n, &ing->fatal) != 0 ||
            ingest_template_compile(&ing->tpl, ing->camp->body, &ing->hdr, ing->camp->defaults,
                                    ing->camp->n_defaults, &ing->fatal) != 0) {
            if (!ing->fatal.code)
                ing->fatal.code = INGEST_EHEADER;
            ing->fatal.row = 1;
            return;
        }
        for (int i = 0; i < ing->tpl.nparts; i++)
            if (ing->tpl.part[i].col < 0 && ing->tpl.part[i].def < 0) {
                /* Every row will be rejected for it; say so once, up front. */
                snprintf(ing->fatal.reason, sizeof(ing->fatal.reason),
                         "merge field '%s' is neither a column of the file nor a campaign default",
                         ing->tpl.part[i].name);
                ing->fatal.code = INGEST_EHEADER;
                ing->fatal.row = 1;
                return;
            }
        ing->state = ST_ROWS;
        start_threads(ing);
        return;
    }
    if (ing->rn - 1 > INGEST_MAX_ROWS) {
        char msg[96];
        snprintf(msg, sizeof(msg), "more than %ld data rows", INGEST_MAX_ROWS);
        fail(ing, INGEST_ETOOBIG, msg);
        return;
    }
    {
        batch_t *b = ing->cur;
        brow_t *br = &b->rows[b->nrows];
        br->rn = ing->rn;
        b->nrows++;
        atomic_store_explicit(&ing->rows_parsed, ing->rn - 1, memory_order_relaxed);
        if (b->nrows == BATCH_ROWS || b->data.len >= BATCH_BYTES || b->nf >= BATCH_FIELDS)
            submit(ing);
        b = ing->cur;
        memset(&b->rows[b->nrows], 0, sizeof(brow_t));
        b->rows[b->nrows].field0 = b->nf;
    }
}

/* libcsv grows its field buffer through this; refusing is how a field is capped. */
static void *csv_realloc_capped(void *p, size_t n)
{
    if (n > INGEST_MAX_FIELD + 1)
        return NULL;
    return xrealloc(p, n);
}

/* ---- public ---- */

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int ingest_new(const ingest_campaign_t *c, const ingest_options_t *opt, ingest_t **out, ingest_error_t *err)
{
    ingest_t *ing = NULL;
    ingest_template_t probe;
    char path[4096];
    const char *dir;
    int rc = INGEST_EINVAL;

    memset(err, 0, sizeof(*err));
    *out = NULL;
    if (!c || !c->body || !c->region) {
        snprintf(err->reason, sizeof(err->reason), "campaign settings are incomplete");
        goto out;
    }
    if ((rc = ingest_template_compile(&probe, c->body, NULL, c->defaults, c->n_defaults, err)) != 0)
        goto out;
    ing = xcalloc(1, sizeof(*ing));
    ing->camp = c;
    if (opt)
        ing->opt = *opt;
    ing->nthreads = ing->opt.threads > 0 ? ing->opt.threads : 2;
    if (ing->nthreads > INGEST_MAX_THREADS)
        ing->nthreads = INGEST_MAX_THREADS;
    ing->q_max = 2 * ing->nthreads;
    ing->max_batches = ing->q_max + ing->nthreads + 1;
    ing->spool_fd = -1;
    pthread_mutex_init(&ing->mu, NULL);
    pthread_cond_init(&ing->cv_work, NULL);
    pthread_cond_init(&ing->cv_space, NULL);
    pthread_cond_init(&ing->cv_free, NULL);
    pthread_cond_init(&ing->cv_turn, NULL);
    buf_init(&ing->acc_out, OUT_CAP);
    buf_init(&ing->rej_out, OUT_CAP);
    ingest_numset_init(&ing->seen);
    ing->rej_fd = -1;
    buf_init(&ing->hdr_data, HEADER_CAP);
    ing->cur = batch_new();
    ing->n_batches = 1;
    clock_gettime(CLOCK_MONOTONIC, &ing->t0);

    dir = ing->opt.spool_dir ? ing->opt.spool_dir : getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/herald-upload.XXXXXX", dir && *dir ? dir : "/tmp");
    ing->spool_fd = mkstemp(path);
    if (ing->spool_fd < 0) {
        rc = INGEST_EIO;
        snprintf(err->reason, sizeof(err->reason), "cannot create a spool file in %s: %s", dir ? dir : "/tmp",
                 strerror(errno));
        goto out;
    }
    unlink(path);
    snprintf(path, sizeof(path), "%s/herald-rejects.XXXXXX", dir && *dir ? dir : "/tmp");
    ing->rej_fd = mkstemp(path);
    if (ing->rej_fd < 0) {
        rc = INGEST_EIO;
        snprintf(err->reason, sizeof(err->reason), "cannot create a spool file in %s: %s", dir ? dir : "/tmp",
                 strerror(errno));
        goto out;
    }
    unlink(path);
    if (csv_init(&ing->csv, 0) != 0) {
        snprintf(err->reason, sizeof(err->reason), "cannot initialise the CSV parser");
        goto out;
    }
    csv_set_realloc_func(&ing->csv, csv_realloc_capped);
    csv_set_blk_size(&ing->csv, 64 * 1024);
    ing->sha = EVP_MD_CTX_new();
    if (!ing->sha || EVP_DigestInit_ex(ing->sha, EVP_sha256(), NULL) != 1)
        abort();
    rc = 0;
    *out = ing;
    ing = NULL;
out:
    if (rc != 0)
        err->code = rc;
    ingest_free(ing);
    return rc;
}

static void start_threads(ingest_t *ing)
{
    for (int i = 0; i < ing->nthreads; i++)
        if (pthread_create(&ing->threads[i], NULL, worker_main, ing) != 0)
            abort();
    ing->threads_started = 1;
}

static int check_fatal(ingest_t *ing, ingest_error_t *err)
{
    pthread_mutex_lock(&ing->mu);
    if (ing->io_error && !ing->fatal.code) {
        ing->fatal.code = INGEST_EIO;
        snprintf(ing->fatal.reason, sizeof(ing->fatal.reason), "cannot write the spool file: %s",
                 strerror(ing->io_error));
    }
    pthread_mutex_unlock(&ing->mu);
    if (!ing->fatal.code)
        return 0;
    ing->state = ST_FAILED;
    atomic_store_explicit(&ing->stage1, -1, memory_order_release);
    *err = ing->fatal;
    return ing->fatal.code;
}

int ingest_feed(ingest_t *ing, const void *data, size_t len, ingest_error_t *err)
{
    const char *p = data;

    memset(err, 0, sizeof(*err));
    if (ing->state == ST_FINISHED || ing->state == ST_FAILED) {
        err->code = INGEST_ESTATE;
        snprintf(err->reason, sizeof(err->reason), "upload already finished");
        return INGEST_ESTATE;
    }
    EVP_DigestUpdate(ing->sha, data, len);
    /* Parse in slices so a fatal error stops us soon and its byte offset stays exact. */
    while (len > 0) {
        size_t n = len > 256 * 1024 ? 256 * 1024 : len, done;

        done = csv_parse(&ing->csv, p, n, on_field, on_row, ing);
        if (done < n && !ing->fatal.code) {
            char msg[160];
            int e = csv_error(&ing->csv);
            if (e == CSV_ENOMEM || e == CSV_ETOOBIG)
                snprintf(msg, sizeof(msg), "a field is longer than %u bytes (an unterminated quote?)",
                         INGEST_MAX_FIELD);
            else
                snprintf(msg, sizeof(msg), "malformed CSV: %s", csv_strerror(e));
            fail(ing, e == CSV_ENOMEM || e == CSV_ETOOBIG ? INGEST_ETOOBIG : INGEST_EPARSE, msg);
        }
        if (ing->fatal.code) {
            ing->fatal.byte = ing->fed + done;
            return check_fatal(ing, err);
        }
        ing->fed += n;
        p += n;
        len -= n;
    }
    return check_fatal(ing, err);
}

static void stop_threads(ingest_t *ing)
{
    if (!ing->threads_started)
        return;
    pthread_mutex_lock(&ing->mu);
    ing->stopping = 1;
    pthread_cond_broadcast(&ing->cv_work);
    pthread_mutex_unlock(&ing->mu);
    for (int i = 0; i < ing->nthreads; i++)
        pthread_join(ing->threads[i], NULL);
    ing->threads_started = 0;
}

int ingest_finish(ingest_t *ing, ingest_error_t *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc;

    memset(err, 0, sizeof(*err));
    if (ing->state == ST_FINISHED || ing->state == ST_FAILED) {
        err->code = INGEST_ESTATE;
        snprintf(err->reason, sizeof(err->reason), "upload already finished");
        return INGEST_ESTATE;
    }
    /*
     * libcsv reports an open quote at the end only in its strict mode, which would also
     * refuse a stray quote inside an unquoted field ("5'11\""). So look at its state
     * instead: 2 is FIELD_BEGUN in libcsv 3.0's (public) struct.
     */
    if (!ing->fatal.code && ing->csv.pstate == 2 && ing->csv.quoted) {
        fail(ing, INGEST_EPARSE,
             ing->state == ST_HEADER ? "unterminated quoted field in the header row: is this a CSV file?"
                                     : "unterminated quoted field: a '\"' opened in this record is never closed");
        ing->fatal.byte = ing->fed;
    }
    if (!ing->fatal.code)
        csv_fini(&ing->csv, on_field, on_row, ing);
    if (!ing->fatal.code && ing->state == ST_ROWS)
        submit(ing);
    stop_threads(ing);
    if (!ing->fatal.code) {
        flush_to(ing, ing->spool_fd, &ing->acc_out, &ing->spool_bytes);
        flush_to(ing, ing->rej_fd, &ing->rej_out, &ing->rej_bytes);
    }
    if ((rc = check_fatal(ing, err)) != 0)
        return rc;
    if (ing->state == ST_HEADER) {
        ing->state = ST_FAILED;
        atomic_store_explicit(&ing->stage1, -1, memory_order_release);
        err->code = INGEST_EEMPTY;
        snprintf(err->reason, sizeof(err->reason), "the file is empty: a header row is required (with a phone column)");
        return INGEST_EEMPTY;
    }
    if (ing->rn <= 1) {
        ing->state = ST_FAILED;
        atomic_store_explicit(&ing->stage1, -1, memory_order_release);
        err->code = INGEST_ENOROWS;
        err->row = 1;
        snprintf(err->reason, sizeof(err->reason), "the file has a header row but no data rows");
        return INGEST_ENOROWS;
    }
    EVP_DigestFinal_ex(ing->sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(ing->rep.sha256 + 2 * i, 3, "%02x", md[i]);
    ing->rep.rows = ing->rn - 1;
    ing->rep.bytes = ing->fed;
    for (int i = 0; i < INGEST_R_COUNT; i++)
        if (i != INGEST_R_DUPLICATE && i != INGEST_R_SUPPRESSED)
            ing->rep.invalid += ing->rep.by_reason[i];
    ing->rep.duplicate = ing->rep.by_reason[INGEST_R_DUPLICATE];
    ing->rep.parse_seconds = elapsed(&ing->t0);
    ing->state = ST_FINISHED;
    atomic_store_explicit(&ing->stage1, 1, memory_order_release);
    return 0;
}

const ingest_report_t *ingest_report(const ingest_t *ing)
{
    return &ing->rep;
}

long ingest_rows_parsed(const ingest_t *ing)
{
    return atomic_load_explicit(&((ingest_t *)ing)->rows_parsed, memory_order_relaxed);
}

void ingest_free(ingest_t *ing)
{
    batch_t *b;

    if (!ing)
        return;
    stop_threads(ing);
    while ((b = ing->q_head)) {
        ing->q_head = b->next;
        batch_free(b);
    }
    while ((b = ing->free_list)) {
        ing->free_list = b->next;
        batch_free(b);
    }
    if (ing->cur)
        batch_free(ing->cur);
    csv_free(&ing->csv);
    if (ing->sha)
        EVP_MD_CTX_free(ing->sha);
    if (ing->spool_fd >= 0)
        close(ing->spool_fd);
    if (ing->rej_fd >= 0)
        close(ing->rej_fd);
    buf_close(&ing->acc_out);
    buf_close(&ing->rej_out);
    ingest_numset_close(&ing->seen);
    pthread_cond_destroy(&ing->cv_turn);
    ingest_header_free(&ing->hdr);
    buf_close(&ing->hdr_data);
    pthread_mutex_destroy(&ing->mu);
    pthread_cond_destroy(&ing->cv_work);
    pthread_cond_destroy(&ing->cv_space);
    pthread_cond_destroy(&ing->cv_free);
    free(ing);
}

/* ---- shared with commit.c (ingest_int.h) ---- */

int ingest_spool_fd(const ingest_t *ing)
{
    return ing->spool_fd;
}

uint64_t ingest_spool_bytes(const ingest_t *ing)
{
    return ing->spool_bytes;
}

int ingest_rejects_fd(const ingest_t *ing)
{
    return ing->rej_fd;
}

uint64_t ingest_rejects_bytes(const ingest_t *ing)
{
    return ing->rej_bytes;
}

long long ingest_first_segments(const ingest_t *ing)
{
    return ing->seg_first;
}

ingest_report_t *ingest_report_mut(ingest_t *ing)
{
    return &ing->rep;
}

const ingest_options_t *ingest_options(const ingest_t *ing)
{
    return &ing->opt;
}

const ingest_campaign_t *ingest_campaign(const ingest_t *ing)
{
    return ing->camp;
}

int ingest_finished(const ingest_t *ing)
{
    return atomic_load_explicit(&((ingest_t *)ing)->stage1, memory_order_acquire) == 1;
}

int ingest_stage1(const ingest_t *ing)
{
    return atomic_load_explicit(&((ingest_t *)ing)->stage1, memory_order_acquire);
}

void ingest_abort(ingest_t *ing)
{
    if (ing->state != ST_FINISHED) {
        stop_threads(ing);
        ing->state = ST_FAILED;
        atomic_store_explicit(&ing->stage1, -1, memory_order_release);
    }
}

#define FEED_FD_CHUNK (1024u * 1024)

int ingest_feed_fd(ingest_t *ing, int fd, void (*on_read)(uint64_t fed, void *arg), void *arg, ingest_error_t *err)
{
    char *chunk = xmalloc(FEED_FD_CHUNK);
    uint64_t fed = 0;
    int rc;

    for (;;) {
        ssize_t n = read(fd, chunk, FEED_FD_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            memset(err, 0, sizeof(*err));
            err->code = INGEST_EIO;
            snprintf(err->reason, sizeof(err->reason), "%s", strerror(errno));
            ingest_abort(ing);
            rc = INGEST_EIO;
            break;
        }
        if (n == 0) {
            rc = ingest_finish(ing, err);
            break;
        }
        if ((rc = ingest_feed(ing, chunk, (size_t)n, err)) != 0)
            break;
        fed += (uint64_t)n;
        if (on_read)
            on_read(fed, arg);
    }
    free(chunk);
    return rc;
}

int *ingest_committing(ingest_t *ing)
{
    return &ing->committing;
}
