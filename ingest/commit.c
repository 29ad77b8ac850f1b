/*
 * Stage 2 of an upload (see ingest.h): one transaction on the caller's db_t that
 * turns the two spools of stage 1 into a campaign's recipients. An advisory lock on
 * the campaign is taken first, so two uploads to one campaign take turns; the campaign_uploads row is
 * claimed next (UNIQUE campaign_id + file_sha256), which is how a repeated file is
 * recognised before any work; the org's suppression list is read at the same time.
 * Then the accepted rows are COPYed into campaign_recipients, each line prefixed with
 * the upload id, except those whose number is suppressed, which join the rejected rows
 * in the COPY into campaign_rejects; herald_upload_settle() (migration 007) takes out
 * the numbers an earlier upload to the campaign brought. The outbox and contacts
 * are filled from campaign_recipients while the campaign sends (herald_fill). Nothing
 * is visible to anyone until COMMIT; a dry run ends with ROLLBACK instead.
 */
#include "ingest/ingest_int.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64u * 1024)
#define INGEST_LOCK_CLASS "1164" /* advisory lock class of uploads: (class, hash of the campaign id) */

typedef enum cstate {
    CS_CLAIM,    /* BEGIN, lock the campaign, claim the upload row */
    CS_REPEAT,   /* the file was uploaded before: look up which upload, roll back */
    CS_LOAD,     /* the two COPYs */
    CS_CHECK,    /* streaming: is the finished file's SHA-256 an earlier upload's? */
    CS_SETTLE,   /* herald_upload_settle(): earlier uploads, fill total */
    CS_RECORD,   /* counts into campaign_uploads */
    CS_END,      /* COMMIT or ROLLBACK */
    CS_DONE,
} cstate_t;

typedef struct commit {
    ingest_t *ing;
    db_t *db;
    ingest_done_cb cb;
    void *arg;
    cstate_t state;
    int outstanding;   /* operations of the current state not yet answered */
    char *err;         /* first error */
    int rollback;      /* end with ROLLBACK (error, dry run, repeat) */
    struct stream {
        int fd;
        off_t off;   /* read with pread: stage 1 may still be appending */
        char prefix[48];
        buf_t pend;  /* read from the spool, not yet a whole line */
        uint64_t sent;
        int eof;
    } acc, rej;
    struct timespec t0, last;
    long long settle[6];
    /* The org's suppression list: number -> index into sup_reason. */
    ingest_numset_t sup;
    char sup_reason[8][24];
    int n_reasons;
    FILE *supf;  /* reject lines of the suppressed rows, streamed after the rejects spool */
    int supf_streaming;
    long long sup_rows, sup_fsegs; /* suppressed rows; their segments with the first-message footer */
    int streaming;      /* started before stage 1 finished: the COPY follows the parse */
    uv_timer_t *wake;   /* while the producer waits for stage 1 */
    /* What each queued operation is, for the per-step timing in the debug log. */
    const char *label[32];
    unsigned lab_in, lab_out;
} commit_t;

static void advance(commit_t *cm);

static void set_err(commit_t *cm, const char *err)
{
    if (!cm->err)
        cm->err = xstrdup(err);
    cm->rollback = 1;
}

static void load_suppression(commit_t *cm, const PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        const char *reason = PQgetvalue(res, i, 1);
        uint64_t key = ingest_e164_key(PQgetvalue(res, i, 0));
        uint32_t r, dummy;
        for (r = 0; r < (uint32_t)cm->n_reasons; r++)
            if (strcmp(cm->sup_reason[r], reason) == 0)
                break;
        if (r == (uint32_t)cm->n_reasons) {
            if (cm->n_reasons < 7 && strlen(reason) < sizeof(cm->sup_reason[0]))
                snprintf(cm->sup_reason[cm->n_reasons++], sizeof(cm->sup_reason[0]), "%s", reason);
            else {
                r = 7;
                snprintf(cm->sup_reason[7], sizeof(cm->sup_reason[7]), "other");
            }
        }
        if (key)
            (void)ingest_numset_put(&cm->sup, key, r, &dummy);
    }
}

static void on_step(db_t *db, const PGresult *res, const char *err, void *arg)
{
    commit_t *cm = arg;
    ingest_report_t *rep = ingest_report_mut(cm->ing);

    (void)db;
    if (log_current_level >= LOG_LEVEL_DEBUG) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        log_cdebug("upload", "%s: %.3f s", cm->label[cm->lab_out++ % 32],
                   (double)(t.tv_sec - cm->last.tv_sec) + (double)(t.tv_nsec - cm->last.tv_nsec) / 1e9);
        cm->last = t;
    }
    if (err) {
        set_err(cm, err);
    } else if (res && cm->state == CS_CLAIM && PQnfields(res) == 1 && strcmp(PQfname(res, 0), "status") == 0) {
        if (PQntuples(res) != 1)
            set_err(cm, "no such campaign");
        else if (strcmp(PQgetvalue(res, 0, 0), "completed") == 0 || strcmp(PQgetvalue(res, 0, 0), "canceled") == 0)
            set_err(cm, "the campaign is completed or canceled: uploads are closed");
    } else if (res && cm->state == CS_CLAIM && PQnfields(res) == 1 && strcmp(PQfname(res, 0), "id") == 0) {
        if (PQntuples(res) == 1)
            rep->upload_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        else
            rep->already_uploaded = 1;
    } else if (res && cm->state == CS_CHECK && PQntuples(res) == 1) {
        rep->already_uploaded = 1;
        rep->previous_upload_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else if (res && cm->state == CS_REPEAT && PQntuples(res) == 1) {
        rep->previous_upload_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else if (res && cm->state == CS_CLAIM && PQnfields(res) == 2 && strcmp(PQfname(res, 0), "e164") == 0) {
        load_suppression(cm, res);
    } else if (res && cm->state == CS_SETTLE && PQnfields(res) == 6 && PQntuples(res) == 1) {
        for (int i = 0; i < 6; i++)
            cm->settle[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
    }
    if (--cm->outstanding == 0)
        advance(cm);
}

/*
 * An accepted line whose number is on the suppression list: its reject line goes to
 * supf and its segments are counted. Returns 1 if so, 0 if not, -1 on a write error.
 */
static int divert_suppressed(commit_t *cm, const char *line, size_t len)
{
    char e164[20];
    size_t n, rn_len, raw_len, segs_len, fsegs_len;
    const char *f = ingest_line_field(line, len, 1, &n), *rn, *raw, *segs, *fsegs;
    uint32_t r;

    if (n >= sizeof(e164))
        return 0;
    memcpy(e164, f, n);
    e164[n] = '\0';
    if (!ingest_numset_get(&cm->sup, ingest_e164_key(e164), &r))
        return 0;
    rn = ingest_line_field(line, len, 0, &rn_len);
    raw = ingest_line_field(line, len, 2, &raw_len);
    segs = ingest_line_field(line, len, 6, &segs_len);
    fsegs = ingest_line_field(line, len, 9, &fsegs_len);
    cm->sup_rows++;
    cm->sup_fsegs += fsegs[0] == '\\' ? strtol(segs, NULL, 10) : strtol(fsegs, NULL, 10);
    if (fprintf(cm->supf, "%.*s\t%.*s\tsuppressed\tsuppressed (%s)\n", (int)rn_len, rn, (int)raw_len, raw,
                cm->sup_reason[r]) < 0)
        return -1;
    return 1;
}

/*
 * Appends the whole lines of st->pend to out, each behind st->prefix (accepted lines
 * with a suppressed number go to supf instead), and keeps the unfinished last line.
 */
static int prefix_lines(commit_t *cm, struct stream *st, buf_t *out)
{
    size_t plen = strlen(st->prefix), done = 0;
    const char *p = st->pend.data;
    int filter = st == &cm->acc && cm->sup.n > 0;

    for (;;) {
        const char *nl = memchr(p + done, '\n', st->pend.len - done);
        size_t n;
        int d = 0;
        if (!nl)
            break;
        n = (size_t)(nl - (p + done)) + 1;
        if (filter && (d = divert_suppressed(cm, p + done, n - 1)) < 0)
            return -1;
        if (!d && (buf_append(out, st->prefix, plen) != 0 || buf_append(out, p + done, n) != 0))
            return -1;
        done += n;
    }
    if (done > 0) {
        memmove(st->pend.data, p + done, st->pend.len - done);
        st->pend.len -= done;
    }
    return 0;
}

static void on_wake(uv_timer_t *t)
{
    commit_t *cm = t->data;
    db_copy_resume(cm->db);
}

static void wake_closed(uv_handle_t *h)
{
    free(h);
}

/* Nothing more in the spool yet, stage 1 still running: ask again in a moment. */
static int wait_for_stage1(commit_t *cm)
{
    if (!cm->wake) {
        cm->wake = xcalloc(1, sizeof(*cm->wake));
        uv_timer_init(db_loop(cm->db), cm->wake);
        cm->wake->data = cm;
    }
    uv_timer_start(cm->wake, on_wake, 2, 0);
    return DB_COPY_WAIT;
}

static int produce_stream(commit_t *cm, struct stream *st, buf_t *out, uint64_t total)
{
    const ingest_options_t *opt = ingest_options(cm->ing);
    char chunk[64 * 1024];
    ssize_t n;
    int rc = DB_COPY_MORE;

    while (out->len < READ_CHUNK && !st->eof) {
        int s1 = ingest_stage1(cm->ing);
        n = pread(st->fd, chunk, sizeof(chunk), st->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0 && s1 == 0) {
            rc = wait_for_stage1(cm);
            break;
        }
        if (n == 0 && s1 < 0)
            return -1; /* the input failed: roll back */
        if (n == 0 && st == &cm->rej && !cm->supf_streaming && cm->sup_rows > 0) {
            /* The rejects spool is done: the suppressed rows follow. */
            if (fflush(cm->supf) != 0)
                return -1;
            st->fd = fileno(cm->supf);
            st->off = 0;
            cm->supf_streaming = 1;
            continue;
        }
        if (n == 0) {
            st->eof = 1;
            if (st->pend.len != 0)
                return -1; /* the spool ends inside a line: it was not written whole */
            break;
        }
        st->off += n;
        if (buf_append(&st->pend, chunk, (size_t)n) != 0 || prefix_lines(cm, st, out) != 0)
            return -1;
        st->sent += (uint64_t)n;
    }
    if (opt->progress && st == &cm->acc) {
        ingest_progress_t p = {.phase = st->eof ? INGEST_PHASE_FINALIZE : INGEST_PHASE_LOAD,
                               .rows = ingest_rows_parsed(cm->ing),
                               .bytes = st->sent,
                               .bytes_total = total};
        opt->progress(&p, opt->progress_arg);
    }
    return st->eof ? DB_COPY_DONE : rc;
}

static int produce_accepted(db_t *db, buf_t *out, void *arg)
{
    commit_t *cm = arg;
    (void)db;
    return produce_stream(cm, &cm->acc, out, ingest_spool_bytes(cm->ing));
}

static int produce_rejects(db_t *db, buf_t *out, void *arg)
{
    commit_t *cm = arg;
    (void)db;
    return produce_stream(cm, &cm->rej, out, ingest_rejects_bytes(cm->ing));
}

static void label(commit_t *cm, const char *sql)
{
    cm->label[cm->lab_in++ % 32] = sql;
}

static void q(commit_t *cm, const char *sql, int n, const char *const *params)
{
    if (db_query(cm->db, sql, n, params, on_step, cm) != 0) {
        set_err(cm, "the database connection is closed");
        return;
    }
    cm->outstanding++;
    label(cm, strncmp(sql, "SELECT * FROM herald_upload_settle", 34) == 0 ? "settle" : sql);
}

static void copy(commit_t *cm, const char *sql, db_copy_producer producer, const char *what)
{
    if (db_copy_in(cm->db, sql, producer, cm, on_step, cm) != 0) {
        set_err(cm, "the database connection is closed");
        return;
    }
    cm->outstanding++;
    label(cm, what);
}

static void queue_claim(commit_t *cm)
{
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    const ingest_report_t *rep = ingest_report(cm->ing);
    char cid[24], oid[24], rows[24];
    const char *p2[2] = {cid, oid};
    const char *p4[4] = {oid, cid, rep->sha256, rows};
    const char *p1[1] = {oid};

    snprintf(cid, sizeof(cid), "%" PRId64, c->campaign_id);
    snprintf(oid, sizeof(oid), "%" PRId64, c->org_id);
    snprintf(rows, sizeof(rows), "%ld", rep->rows);
    q(cm, "BEGIN", 0, NULL);
    /*
     * Uploads to one campaign take turns (the check against earlier uploads needs it),
     * under a transaction-scoped advisory lock rather than a lock on the campaign row,
     * which would hold up pause, resume, cancel and the scheduler for as long as a file
     * is being read.
     */
    q(cm, "SELECT pg_advisory_xact_lock(" INGEST_LOCK_CLASS ", hashtext($1))", 1, p2);
    q(cm, "SELECT status FROM campaigns WHERE id = $1::bigint AND org_id = $2::bigint", 2, p2);
    if (cm->streaming)
        /* The file's SHA-256 is known only at its end: a placeholder until then (16
         * bytes, so never a real one), checked against earlier uploads in CS_CHECK. */
        q(cm,
          "INSERT INTO campaign_uploads (org_id, campaign_id, file_sha256, rows_total) "
          "VALUES ($1::bigint, $2::bigint, decode(md5(random()::text || clock_timestamp()::text), 'hex'), 0) "
          "RETURNING id",
          2, p4);
    else
        q(cm,
          "INSERT INTO campaign_uploads (org_id, campaign_id, file_sha256, rows_total) "
          "VALUES ($1::bigint, $2::bigint, decode($3, 'hex'), $4::bigint) "
          "ON CONFLICT (campaign_id, file_sha256) DO NOTHING RETURNING id",
          4, p4);
    q(cm, "SELECT e164, reason FROM suppression WHERE org_id = $1::bigint", 1, p1);
}

static void rewind_stream(struct stream *st, int fd)
{
    st->fd = fd;
    st->off = 0;
    st->sent = 0;
    st->eof = 0;
    buf_reset(&st->pend);
}

static void queue_load(commit_t *cm)
{
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    int64_t up = ingest_report(cm->ing)->upload_id;
    char v[3][24];
    const char *p[3] = {v[0], v[1], v[2]};

    rewind_stream(&cm->acc, ingest_spool_fd(cm->ing));
    rewind_stream(&cm->rej, ingest_rejects_fd(cm->ing));
    snprintf(cm->acc.prefix, sizeof(cm->acc.prefix), "%" PRId64 "\t", up);
    snprintf(cm->rej.prefix, sizeof(cm->rej.prefix), "%" PRId64 "\t%" PRId64 "\t", up, c->campaign_id);
    snprintf(v[0], sizeof(v[0]), "%" PRId64, up);
    snprintf(v[1], sizeof(v[1]), "%" PRId64, c->campaign_id);
    snprintf(v[2], sizeof(v[2]), "%" PRId64, c->org_id);
    cm->supf = tmpfile();
    if (!cm->supf) {
        set_err(cm, "cannot create a temporary file for the suppressed rows");
        return;
    }
    q(cm, "SET LOCAL work_mem = '64MB'", 0, NULL);
    copy(cm, "COPY campaign_recipients (upload_id, " INGEST_RECIPIENT_COLUMNS ") FROM STDIN", produce_accepted,
         "COPY recipients");
    copy(cm, "COPY campaign_rejects (upload_id, campaign_id, " INGEST_REJECT_COLUMNS ") FROM STDIN", produce_rejects,
         "COPY rejects");
    (void)p;
}

/* The rows accepted and not suppressed are only known once the COPY is done. */
static void queue_settle(commit_t *cm)
{
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    char v[4][24];
    const char *p[4] = {v[0], v[1], v[2], v[3]};

    snprintf(v[0], sizeof(v[0]), "%" PRId64, ingest_report(cm->ing)->upload_id);
    snprintf(v[1], sizeof(v[1]), "%" PRId64, c->campaign_id);
    snprintf(v[2], sizeof(v[2]), "%" PRId64, c->org_id);
    snprintf(v[3], sizeof(v[3]), "%lld", (long long)ingest_report(cm->ing)->accepted - cm->sup_rows);
    q(cm, "SELECT * FROM herald_upload_settle($1::bigint, $2::bigint, $3::bigint, $4::bigint)", 4, p);
}

static void queue_record(commit_t *cm)
{
    const ingest_report_t *rep = ingest_report(cm->ing);
    char v[7][24];
    const char *p[8] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], rep->sha256};

    snprintf(v[0], sizeof(v[0]), "%" PRId64, rep->upload_id);
    snprintf(v[1], sizeof(v[1]), "%ld", rep->accepted);
    snprintf(v[2], sizeof(v[2]), "%ld", rep->invalid);
    snprintf(v[3], sizeof(v[3]), "%ld", rep->duplicate);
    snprintf(v[4], sizeof(v[4]), "%ld", rep->suppressed);
    snprintf(v[5], sizeof(v[5]), "%lld", rep->segments);
    snprintf(v[6], sizeof(v[6]), "%ld", rep->rows);
    q(cm,
      "UPDATE campaign_uploads SET accepted = $2::bigint, invalid = $3::bigint, duplicate = $4::bigint, "
      "suppressed = $5::bigint, segments = $6::bigint, rows_total = $7::bigint, file_sha256 = decode($8, 'hex') "
      "WHERE id = $1::bigint",
      8, p);
}

static void fill_summary(commit_t *cm)
{
    ingest_report_t *rep = ingest_report_mut(cm->ing);
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    int64_t start = c->start_at > time(NULL) ? c->start_at : (int64_t)time(NULL);
    const long long *st = cm->settle;
    long long first = ingest_first_segments(cm->ing);

    /* settle: earlier-upload rows, their segs and fsegs; rows seen before, their extra segs; remaining */
    rep->duplicate = rep->by_reason[INGEST_R_DUPLICATE] + st[0];
    rep->suppressed = cm->sup_rows;
    rep->accepted = st[5];
    rep->first_messages = st[5] - st[3];
    rep->segments = first - cm->sup_fsegs - st[2] - st[4];
    rep->by_reason[INGEST_R_DUPLICATE] = rep->duplicate;
    rep->by_reason[INGEST_R_SUPPRESSED] = rep->suppressed;
    rep->cost = (double)rep->segments * c->price_per_segment;
    if (ingest_estimate_finish(c, rep->segments, start, &rep->finish_utc) != 0)
        rep->finish_utc = 0;
}

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Runs when every operation of the current state has answered. */
static void advance(commit_t *cm)
{
    ingest_report_t *rep = ingest_report_mut(cm->ing);
    char cid[24];
    const char *p1[2] = {cid, rep->sha256};

    switch (cm->state) {
    case CS_CLAIM:
        if (!cm->err && rep->already_uploaded) {
            cm->state = CS_REPEAT;
            cm->rollback = 1;
            snprintf(cid, sizeof(cid), "%" PRId64, ingest_campaign(cm->ing)->campaign_id);
            q(cm, "SELECT id FROM campaign_uploads WHERE campaign_id = $1::bigint AND file_sha256 = decode($2, 'hex')", 2,
              p1);
            if (cm->outstanding)
                return;
        } else if (!cm->err) {
            cm->state = CS_LOAD;
            queue_load(cm);
            if (cm->outstanding)
                return;
        }
        break;
    case CS_LOAD:
        if (!cm->err && cm->streaming) {
            cm->state = CS_CHECK;
            snprintf(cid, sizeof(cid), "%" PRId64, ingest_campaign(cm->ing)->campaign_id);
            q(cm, "SELECT id FROM campaign_uploads WHERE campaign_id = $1::bigint AND file_sha256 = decode($2, 'hex')", 2,
              p1);
            if (cm->outstanding)
                return;
            break;
        }
        /* fall through */
    case CS_CHECK:
        if (!cm->err && rep->already_uploaded) {
            cm->rollback = 1; /* a repeat found at the end: undo the COPYs */
        } else if (!cm->err) {
            cm->state = CS_SETTLE;
            queue_settle(cm);
            if (cm->outstanding)
                return;
        }
        break;
    case CS_SETTLE:
        if (!cm->err) {
            const ingest_options_t *opt = ingest_options(cm->ing);
            fill_summary(cm);
            if (opt->dry_run)
                cm->rollback = 1;
            cm->state = CS_RECORD;
            queue_record(cm);
            if (cm->outstanding)
                return;
        }
        break;
    default:
        break;
    }
    if (cm->state != CS_END && cm->state != CS_DONE) {
        cm->state = CS_END;
        q(cm, cm->rollback ? "ROLLBACK" : "COMMIT", 0, NULL);
        if (cm->outstanding)
            return;
    }
    /* CS_END answered (or nothing could be queued): report. */
    cm->state = CS_DONE;
    rep->commit_seconds = since(&cm->t0);
    if (cm->err || ingest_options(cm->ing)->dry_run || rep->already_uploaded)
        rep->upload_id = 0;
    *ingest_committing(cm->ing) = 0;
    {
        ingest_done_cb cb = cm->cb;
        void *arg = cm->arg;
        ingest_t *ing = cm->ing;
        char *err = cm->err;
        buf_close(&cm->acc.pend);
        buf_close(&cm->rej.pend);
        ingest_numset_close(&cm->sup);
        if (cm->supf)
            fclose(cm->supf);
        if (cm->wake)
            uv_close((uv_handle_t *)cm->wake, wake_closed);
        free(cm);
        cb(ing, ingest_report(ing), err, arg);
        free(err);
    }
}

int ingest_commit(ingest_t *ing, db_t *db, ingest_done_cb cb, void *arg)
{
    commit_t *cm;

    if (!ing || !db || !cb)
        return INGEST_EINVAL;
    if (ingest_stage1(ing) < 0 || *ingest_committing(ing))
        return INGEST_ESTATE;
    cm = xcalloc(1, sizeof(*cm));
    cm->ing = ing;
    cm->db = db;
    cm->cb = cb;
    cm->arg = arg;
    cm->state = CS_CLAIM;
    cm->streaming = !ingest_finished(ing);
    ingest_numset_init(&cm->sup);
    buf_init(&cm->acc.pend, 2 * INGEST_MAX_ROW * 8);
    buf_init(&cm->rej.pend, 2 * INGEST_MAX_ROW * 8);
    clock_gettime(CLOCK_MONOTONIC, &cm->t0);
    cm->last = cm->t0;
    *ingest_committing(ing) = 1;
    queue_claim(cm);
    if (cm->outstanding == 0) {
        /* Nothing could be queued: the connection is closed. */
        *ingest_committing(ing) = 0;
        free(cm->err);
        buf_close(&cm->acc.pend);
        buf_close(&cm->rej.pend);
        ingest_numset_close(&cm->sup);
        free(cm);
        return INGEST_EINVAL;
    }
    return 0;
}
