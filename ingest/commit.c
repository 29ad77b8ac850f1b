/*
 * Stage 2 of an upload (see ingest.h): one transaction on the caller's db_t that
 * turns the spool of stage 1 into queued recipients. The campaign row is locked
 * first, so two uploads to one campaign take turns; the campaign_uploads row is
 * claimed next (UNIQUE campaign_id + file_sha256), which is how a repeated file is
 * recognised before any work. Then the spool is COPYed into a temporary staging
 * table and set-based statements do the rest: first row wins among duplicates,
 * numbers already queued by an earlier upload and suppressed numbers are rejected,
 * contacts are upserted, outbox rows inserted, every reject recorded. Keeping the
 * de-duplication in Postgres is what keeps the client's memory flat. Nothing is
 * visible to anyone until COMMIT; a dry run ends with ROLLBACK instead.
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
#define SQL_MAX 4096

/*
 * How an upload row merges into an existing contact: its region and zone win when
 * given, its tags are added (kept sorted and distinct), its attributes override. w is
 * the winning row (ingest_win); the _EXCLUDED forms are the same for ON CONFLICT.
 */
#define CONTACT_MERGE_OF(REGION, TZ, TAGS, ATTRS)                                                \
    "region = COALESCE(" REGION ", contacts.region), timezone = COALESCE(" TZ ", contacts.timezone), " \
    "tags = ARRAY(SELECT DISTINCT t FROM unnest(contacts.tags || " TAGS ") t ORDER BY t), "       \
    "attributes = contacts.attributes || " ATTRS ", updated_at = now()"
#define CONTACT_CHANGES_OF(REGION, TZ, TAGS, ATTRS)                                              \
    "NOT (contacts.tags @> " TAGS " AND contacts.attributes @> " ATTRS " AND (" REGION " IS NULL " \
    "OR contacts.region = " REGION ") AND (" TZ " IS NULL OR contacts.timezone = " TZ "))"
#define CONTACT_MERGE CONTACT_MERGE_OF("w.region", "w.tz", "w.tags", "w.attrs")
#define CONTACT_CHANGES CONTACT_CHANGES_OF("w.region", "w.tz", "w.tags", "w.attrs")
#define CONTACT_MERGE_EXCLUDED                                                                   \
    CONTACT_MERGE_OF("EXCLUDED.region", "EXCLUDED.timezone", "EXCLUDED.tags", "EXCLUDED.attributes")
#define CONTACT_CHANGES_EXCLUDED                                                                 \
    CONTACT_CHANGES_OF("EXCLUDED.region", "EXCLUDED.timezone", "EXCLUDED.tags", "EXCLUDED.attributes")

typedef enum cstate {
    CS_CLAIM,    /* BEGIN, lock the campaign, claim the upload row */
    CS_REPEAT,   /* the file was uploaded before: look up which upload, roll back */
    CS_LOAD,     /* staging table, COPY, set-based statements, summary */
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
    uint64_t sent;
    int eof;
    struct timespec t0, last;
    long long summary[6];
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
    } else if (res && cm->state == CS_REPEAT && PQntuples(res) == 1) {
        rep->previous_upload_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else if (res && cm->state == CS_LOAD && PQnfields(res) == 6 && PQntuples(res) == 1) {
        for (int i = 0; i < 6; i++)
            cm->summary[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
    }
    if (--cm->outstanding == 0)
        advance(cm);
}

static int produce(db_t *db, buf_t *out, void *arg)
{
    commit_t *cm = arg;
    const ingest_options_t *opt = ingest_options(cm->ing);
    char chunk[64 * 1024];
    ssize_t n;

    (void)db;
    while (out->len < READ_CHUNK) {
        n = read(ingest_spool_fd(cm->ing), chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            cm->eof = 1;
            break;
        }
        if (buf_append(out, chunk, (size_t)n) != 0)
            return -1;
        cm->sent += (uint64_t)n;
    }
    if (opt->progress) {
        ingest_progress_t p = {.phase = cm->eof ? INGEST_PHASE_FINALIZE : INGEST_PHASE_LOAD,
                               .rows = ingest_report(cm->ing)->rows,
                               .bytes = cm->sent,
                               .bytes_total = ingest_spool_bytes(cm->ing)};
        opt->progress(&p, opt->progress_arg);
    }
    return cm->eof ? DB_COPY_DONE : DB_COPY_MORE;
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
    label(cm, strncmp(sql, "INSERT INTO campaign_rejects", 28) == 0 ? "rejects"
              : strncmp(sql, "UPDATE contacts", 15) == 0        ? "contacts update"
              : strncmp(sql, "DO $ingest$", 11) == 0            ? "contacts insert"
              : strncmp(sql, "INSERT INTO outbox", 18) == 0     ? "outbox insert"
              : strncmp(sql, "CREATE TEMP TABLE ingest_win", 28) == 0 ? "classify winners"
              : strncmp(sql, "CREATE TEMP TABLE ingest_first", 30) == 0 ? "first rows"
              : strncmp(sql, "SELECT (SELECT", 14) == 0          ? "summary"
              : strncmp(sql, "ANALYZE", 7) == 0                  ? "analyze"
              : strncmp(sql, "BEGIN", 5) == 0 || strncmp(sql, "COMMIT", 6) == 0 || strncmp(sql, "ROLLBACK", 8) == 0 ? sql
                                                                 : "statement");
}

/* Text of a statement with the ids filled in (they are integers we produced). */
static const char *sqlf(char *buf, const char *fmt, long long a, long long b, long long c)
{
    snprintf(buf, SQL_MAX, fmt, a, b, c);
    return buf;
}

static void queue_claim(commit_t *cm)
{
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    const ingest_report_t *rep = ingest_report(cm->ing);
    char cid[24], oid[24], rows[24];
    const char *p2[2] = {cid, oid};
    const char *p4[4] = {oid, cid, rep->sha256, rows};

    snprintf(cid, sizeof(cid), "%" PRId64, c->campaign_id);
    snprintf(oid, sizeof(oid), "%" PRId64, c->org_id);
    snprintf(rows, sizeof(rows), "%ld", rep->rows);
    q(cm, "BEGIN", 0, NULL);
    q(cm, "SELECT status FROM campaigns WHERE id = $1::bigint AND org_id = $2::bigint FOR UPDATE", 2, p2);
    q(cm,
      "INSERT INTO campaign_uploads (org_id, campaign_id, file_sha256, rows_total) "
      "VALUES ($1::bigint, $2::bigint, decode($3, 'hex'), $4::bigint) "
      "ON CONFLICT (campaign_id, file_sha256) DO NOTHING RETURNING id",
      4, p4);
}

static void queue_load(commit_t *cm)
{
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    long long org = c->org_id, cid = c->campaign_id, up = ingest_report(cm->ing)->upload_id;
    char s[SQL_MAX];
    const ingest_options_t *opt = ingest_options(cm->ing);

    if (opt->progress) {
        ingest_progress_t p = {.phase = cm->eof ? INGEST_PHASE_FINALIZE : INGEST_PHASE_LOAD, .rows = ingest_report(cm->ing)->rows,
                               .bytes_total = ingest_spool_bytes(cm->ing)};
        opt->progress(&p, opt->progress_arg);
    }
    if (lseek(ingest_spool_fd(cm->ing), 0, SEEK_SET) != 0) {
        set_err(cm, "cannot rewind the spool file");
        return;
    }
    q(cm, "SET LOCAL work_mem = '64MB'", 0, NULL);
    /*
     * The staging tables are passed over several times; with the default 8 MB of local
     * buffers each pass goes through the kernel. temp_buffers can only be raised before
     * the session first touches a temporary table, hence the guard (a connection that
     * did earlier uploads keeps what it has).
     */
    q(cm,
      "DO $ingest$ BEGIN PERFORM set_config('temp_buffers', '256MB', true); "
      "EXCEPTION WHEN invalid_parameter_value THEN NULL; END $ingest$",
      0, NULL);
    q(cm,
      "CREATE TEMP TABLE ingest_stage (rn bigint, to_e164 text, raw text, region text, tz text, body text, "
      "segs int, enc text, f_suffix text, f_segs int, f_enc text, tags text[], attrs jsonb, reason text, "
      "detail text) ON COMMIT DROP",
      0, NULL);
    if (db_copy_in(cm->db, "COPY ingest_stage (" INGEST_STAGE_COLUMNS ") FROM STDIN", produce, cm, on_step, cm) != 0)
        set_err(cm, "the database connection is closed");
    else {
        cm->outstanding++;
        label(cm, "COPY staging");
    }
    /* Statistics, so that the planner hashes the staging rows instead of sorting them on disk. */
    q(cm, "ANALYZE ingest_stage", 0, NULL);
    q(cm,
      "CREATE TEMP TABLE ingest_first ON COMMIT DROP AS "
      "SELECT to_e164, min(rn) AS rn FROM ingest_stage WHERE reason IS NULL GROUP BY to_e164",
      0, NULL);
    q(cm, "ANALYZE ingest_first", 0, NULL);
    q(cm,
      sqlf(s,
           "INSERT INTO campaign_rejects (upload_id, campaign_id, row_number, raw_value, reason, detail) "
           "SELECT %lld, %lld, rn, raw, reason, detail FROM ingest_stage WHERE reason IS NOT NULL",
           up, cid, 0),
      0, NULL);
    q(cm,
      sqlf(s,
           "INSERT INTO campaign_rejects (upload_id, campaign_id, row_number, raw_value, reason, detail) "
           "SELECT %lld, %lld, s.rn, s.raw, 'duplicate', 'duplicate of row ' || f.rn "
           "FROM ingest_stage s JOIN ingest_first f USING (to_e164) WHERE s.reason IS NULL AND s.rn <> f.rn",
           up, cid, 0),
      0, NULL);
    /* The winners, with what decides their fate: already queued, suppressed, first contact. */
    q(cm,
      sqlf(s,
           "CREATE TEMP TABLE ingest_win ON COMMIT DROP AS "
           "SELECT s.rn, s.to_e164, s.raw, s.region, s.tz, s.body, s.segs, s.enc, s.f_suffix, s.f_segs, s.f_enc, "
           "s.tags, s.attrs, o.id IS NOT NULL AS prev, o.upload_id AS prev_upload, o.upload_row AS prev_row, "
           "sp.reason AS sup, NOT EXISTS (SELECT 1 FROM outbox x WHERE x.org_id = %lld AND x.to_e164 = s.to_e164) "
           "AS is_first "
           "FROM ingest_first f JOIN ingest_stage s ON s.rn = f.rn "
           "LEFT JOIN outbox o ON o.campaign_id = %lld AND o.run_key = '' AND o.to_e164 = s.to_e164 "
           "LEFT JOIN suppression sp ON sp.org_id = %lld AND sp.e164 = s.to_e164",
           org, cid, org),
      0, NULL);
    q(cm, "ANALYZE ingest_win", 0, NULL);
    q(cm,
      sqlf(s,
           "INSERT INTO campaign_rejects (upload_id, campaign_id, row_number, raw_value, reason, detail) "
           "SELECT %lld, %lld, rn, raw, 'duplicate', CASE WHEN prev_row IS NOT NULL THEN 'duplicate of row ' || "
           "prev_row || ' of upload ' || prev_upload ELSE 'already queued for this campaign' END "
           "FROM ingest_win WHERE prev",
           up, cid, 0),
      0, NULL);
    q(cm,
      sqlf(s,
           "INSERT INTO campaign_rejects (upload_id, campaign_id, row_number, raw_value, reason, detail) "
           "SELECT %lld, %lld, rn, raw, 'suppressed', 'suppressed (' || sup || ')' "
           "FROM ingest_win WHERE NOT prev AND sup IS NOT NULL",
           up, cid, 0),
      0, NULL);
    /*
     * Contacts: those that exist are updated only when the row brings something they
     * lack, and the new ones are inserted with a plain INSERT, which costs about a
     * quarter less per row than INSERT ... ON CONFLICT (speculative insertion). A
     * contact created by someone else between the two (an inbound message from the
     * number) makes the plain INSERT fail: the block then falls back to the upsert,
     * which gives the same result.
     */
    q(cm,
      sqlf(s,
           "UPDATE contacts SET " CONTACT_MERGE " FROM ingest_win w "
           "WHERE contacts.org_id = %lld AND contacts.e164 = w.to_e164 AND NOT w.prev AND w.sup IS NULL "
           "AND " CONTACT_CHANGES,
           org, 0, 0),
      0, NULL);
    q(cm,
      sqlf(s,
           "DO $ingest$ BEGIN "
           "INSERT INTO contacts (org_id, e164, region, timezone, tags, attributes) "
           "SELECT %lld, w.to_e164, w.region, w.tz, w.tags, w.attrs FROM ingest_win w WHERE NOT w.prev AND w.sup IS NULL "
           "AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.org_id = %lld AND c.e164 = w.to_e164); "
           "EXCEPTION WHEN unique_violation THEN "
           "INSERT INTO contacts AS contacts (org_id, e164, region, timezone, tags, attributes) "
           "SELECT %lld, to_e164, region, tz, tags, attrs FROM ingest_win WHERE NOT prev AND sup IS NULL "
           "ON CONFLICT (org_id, e164) DO UPDATE SET " CONTACT_MERGE_EXCLUDED " WHERE " CONTACT_CHANGES_EXCLUDED "; "
           "END $ingest$",
           org, org, org),
      0, NULL);
    q(cm,
      sqlf(s,
           "INSERT INTO outbox (org_id, campaign_id, contact_id, to_e164, from_number, messaging_service_sid, "
           "body, segments, encoding, timezone, upload_id, upload_row) "
           "SELECT cam.org_id, cam.id, ct.id, w.to_e164, cam.from_number, cam.messaging_service_sid, "
           "CASE WHEN w.is_first AND w.f_suffix IS NOT NULL THEN w.body || w.f_suffix ELSE w.body END, "
           "CASE WHEN w.is_first AND w.f_suffix IS NOT NULL THEN w.f_segs ELSE w.segs END, "
           "CASE WHEN w.is_first AND w.f_suffix IS NOT NULL THEN w.f_enc ELSE w.enc END, "
           "w.tz, %lld, w.rn "
           "FROM (SELECT id, org_id, from_number, messaging_service_sid FROM campaigns WHERE id = %lld) cam "
           "CROSS JOIN ingest_win w JOIN contacts ct ON ct.org_id = cam.org_id AND ct.e164 = w.to_e164 "
           "WHERE NOT w.prev AND w.sup IS NULL",
           up, cid, 0),
      0, NULL);
    q(cm,
      "SELECT (SELECT count(*) FROM ingest_stage WHERE reason IS NULL) - (SELECT count(*) FROM ingest_first), "
      "count(*) FILTER (WHERE prev), count(*) FILTER (WHERE NOT prev AND sup IS NOT NULL), "
      "count(*) FILTER (WHERE NOT prev AND sup IS NULL), "
      "count(*) FILTER (WHERE NOT prev AND sup IS NULL AND is_first), "
      "COALESCE(sum(CASE WHEN is_first AND f_suffix IS NOT NULL THEN f_segs ELSE segs END) "
      "FILTER (WHERE NOT prev AND sup IS NULL), 0) FROM ingest_win",
      0, NULL);
}

static void queue_record(commit_t *cm)
{
    const ingest_report_t *rep = ingest_report(cm->ing);
    char v[6][24];
    const char *p[6] = {v[0], v[1], v[2], v[3], v[4], v[5]};

    snprintf(v[0], sizeof(v[0]), "%" PRId64, rep->upload_id);
    snprintf(v[1], sizeof(v[1]), "%ld", rep->accepted);
    snprintf(v[2], sizeof(v[2]), "%ld", rep->invalid);
    snprintf(v[3], sizeof(v[3]), "%ld", rep->duplicate);
    snprintf(v[4], sizeof(v[4]), "%ld", rep->suppressed);
    snprintf(v[5], sizeof(v[5]), "%lld", rep->segments);
    q(cm,
      "UPDATE campaign_uploads SET accepted = $2::bigint, invalid = $3::bigint, duplicate = $4::bigint, "
      "suppressed = $5::bigint, segments = $6::bigint WHERE id = $1::bigint",
      6, p);
}

static void fill_summary(commit_t *cm)
{
    ingest_report_t *rep = ingest_report_mut(cm->ing);
    const ingest_campaign_t *c = ingest_campaign(cm->ing);
    int64_t start = c->start_at > time(NULL) ? c->start_at : (int64_t)time(NULL);

    rep->duplicate = cm->summary[0] + cm->summary[1];
    rep->suppressed = cm->summary[2];
    rep->accepted = cm->summary[3];
    rep->first_messages = cm->summary[4];
    rep->segments = cm->summary[5];
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
    if (!ingest_finished(ing) || *ingest_committing(ing))
        return INGEST_ESTATE;
    cm = xcalloc(1, sizeof(*cm));
    cm->ing = ing;
    cm->db = db;
    cm->cb = cb;
    cm->arg = arg;
    cm->state = CS_CLAIM;
    clock_gettime(CLOCK_MONOTONIC, &cm->t0);
    cm->last = cm->t0;
    *ingest_committing(ing) = 1;
    queue_claim(cm);
    if (cm->outstanding == 0) {
        /* Nothing could be queued: the connection is closed. */
        *ingest_committing(ing) = 0;
        free(cm->err);
        free(cm);
        return INGEST_EINVAL;
    }
    return 0;
}
