/*
 * ingest: the campaign CSV upload pipeline.
 *
 * An upload has two stages, so that the bytes can come from anywhere (a file, stdin,
 * an HTTP request body arriving in pieces) and the database work stays on the loop:
 *
 *  1. Parse (ingest_feed / ingest_finish, synchronous, any thread but one at a time):
 *     libcsv streams the bytes; the header row picks the phone column (or an alias)
 *     and the merge fields; each data row is checked, normalized to E.164 (the row's
 *     `region` column or the campaign's region), its body rendered from the template,
 *     given opt-out language and counted in segments, by a pool of worker threads.
 *     Results go to an unlinked spool file, so memory does not grow with the file.
 *     Numbers seen earlier in the file are rejected as duplicates (first row wins).
 *  2. Commit (ingest_commit, asynchronous on a db_t): one transaction COPYs the
 *     accepted rows into campaign_recipients, leaving out suppressed numbers, and the
 *     rejected ones into campaign_rejects, then takes out numbers an earlier upload to
 *     the campaign brought. The outbox and contacts are filled from the recipients
 *     while the campaign sends (migration 007). The same file uploaded again to the
 *     same campaign is recognised by its SHA-256 and queues nothing. A dry run does
 *     all of it and rolls back.
 *
 * The two stages overlap when ingest_commit() is called before ingest_finish(): the
 * COPY then follows the parse as the spools grow, and the transaction ends once
 * ingest_finish() has been called and the spools are drained (a repeated file is then
 * only recognised at the end). The feeding must then happen on another thread than
 * the loop's. If the input fails, ingest_finish() or ingest_abort() makes the commit
 * roll back and report an error.
 *
 * A failure or a dropped connection at any point leaves the database as it was.
 *
 * Use from an HTTP handler (POST /broadcast/campaigns/{id}/recipients): load the
 * campaign with INGEST_CAMPAIGN_SQL + ingest_campaign_from_result, ingest_new() when
 * the headers arrive, ingest_feed() each body chunk as it is read (it blocks only
 * while the workers are a few batches behind), ingest_finish() at the end of the
 * body (a fatal error is a 400/413/422 with err.reason), then ingest_commit() on a
 * connection of its own and answer from the report in the callback; ingest_free()
 * after that. The connection must not be shared with other work during the commit.
 */
#ifndef HERALD_INGEST_INGEST_H
#define HERALD_INGEST_INGEST_H
#include "compliance/footer.h"
#include "storage/db.h"

#include <stddef.h>
#include <stdint.h>

#define INGEST_MUSTCHECK __attribute__((warn_unused_result))

/* Caps on what an upload may contain (all refused with a clear error). */
#define INGEST_MAX_COLUMNS 1024            /* columns in the header row */
#define INGEST_MAX_FIELD (1024u * 1024)    /* bytes in one field */
#define INGEST_MAX_ROW (1024u * 1024)      /* bytes in one row, all fields together */
#define INGEST_MAX_ROWS 50000000L          /* data rows in one file */
#define INGEST_MAX_DEFAULTS 64             /* campaign merge-field defaults */
#define INGEST_MAX_PLACEHOLDERS 64         /* {{fields}} in a template */
#define INGEST_MAX_NAME 64                 /* bytes in a column / merge field name */
#define INGEST_MAX_TAGS 32                 /* tags in one row's `tags` column */
#define INGEST_MAX_TAG 64                  /* bytes in one tag */
#define INGEST_MAX_THREADS 16

/* Error codes (negative). */
#define INGEST_EINVAL (-1)    /* bad argument or campaign settings */
#define INGEST_EEMPTY (-2)    /* the input is empty: no header row */
#define INGEST_EHEADER (-3)   /* the header row is unusable (no phone column, ...) */
#define INGEST_EPARSE (-4)    /* the CSV is malformed (unterminated quote) */
#define INGEST_ETOOBIG (-5)   /* a cap above was exceeded */
#define INGEST_ENOROWS (-6)   /* a header but no data rows */
#define INGEST_EIO (-7)       /* the spool file could not be written or read */
#define INGEST_ESTATE (-8)    /* call out of order (feed after finish, ...) */
#define INGEST_ETEMPLATE (-9) /* the body template is malformed */

/* Where and why a parse failed: filled by the calls below that take one. */
typedef struct ingest_error {
    int code;          /* one of INGEST_E*, 0 when there is no error */
    long row;          /* 1-based record number in the file (header = 1), 0 if none */
    uint64_t byte;     /* byte offset in the input where it was detected */
    char reason[256];  /* one line, e.g. "no phone column (looked for phone, ...)" */
} ingest_error_t;

/* One merge-field default ("first_name" -> "there"). Borrowed. */
typedef struct ingest_default {
    const char *name;
    const char *value;
} ingest_default_t;

/*
 * What the pipeline needs to know about the campaign. Strings are borrowed for the
 * life of the ingest_t. ingest_campaign_from_result() fills one from a row of
 * INGEST_CAMPAIGN_SQL.
 */
typedef struct ingest_campaign {
    int64_t org_id;
    int64_t campaign_id;
    const char *body;              /* the template, with {{merge_fields}} */
    const char *region;            /* default region of the numbers ("US") */
    footer_policy_t footer_policy;
    const char *footer_text;       /* NULL: FOOTER_DEFAULT_TEXT */
    const ingest_default_t *defaults;
    size_t n_defaults;
    double price_per_segment;      /* for the cost estimate */
    double rate_mps;               /* messages (segments) per second; 0: unknown */
    const char *timezone;          /* campaign zone for the finish estimate, or NULL */
    int quiet_start_min;           /* campaign window; -1 when none */
    int quiet_end_min;
    int64_t start_at;              /* seconds since the epoch; 0: now */
    const char *status;            /* "draft", ...; uploads are refused once completed/canceled */
} ingest_campaign_t;

/*
 * The query that loads a campaign for ingest_campaign_from_result(): parameters $1
 * campaign id, $2 org id. Zero rows means no such campaign in that org.
 */
extern const char INGEST_CAMPAIGN_SQL[];

/*
 * Fills *c from row 0 of a result of INGEST_CAMPAIGN_SQL. Strings point into res
 * (keep it alive as long as *c); the defaults are allocated into *defaults_out (free
 * with ingest_defaults_free(*defaults_out, c->n_defaults)). Returns 0, or
 * INGEST_EINVAL with err filled (no row, bad merge_defaults JSON, unknown footer policy).
 */
INGEST_MUSTCHECK int ingest_campaign_from_result(const PGresult *res, ingest_campaign_t *c,
                                                 ingest_default_t **defaults_out, ingest_error_t *err);

/* Frees what ingest_campaign_from_result() allocated. NULL is fine. */
void ingest_defaults_free(ingest_default_t *d, size_t n);

/* Progress of an upload, passed to ingest_progress_cb. */
typedef enum ingest_phase {
    INGEST_PHASE_PARSE,    /* reading and checking rows */
    INGEST_PHASE_LOAD,     /* sending the rows to the database (COPY) */
    INGEST_PHASE_FINALIZE, /* de-duplicating, queueing, committing */
} ingest_phase_t;

typedef struct ingest_progress {
    ingest_phase_t phase;
    long rows;           /* rows parsed so far (PARSE) or total (later phases) */
    uint64_t bytes;      /* bytes fed (PARSE) or sent to the database (LOAD) */
    uint64_t bytes_total; /* LOAD: size of the spool; PARSE: 0 (the caller knows its size) */
} ingest_progress_t;

/* Called from ingest_commit()'s COPY producer, on the loop thread. */
typedef void (*ingest_progress_cb)(const ingest_progress_t *p, void *arg);

typedef struct ingest_options {
    int dry_run;          /* do everything, then roll back */
    int threads;          /* worker threads for stage 1; 0: 2 */
    const char *spool_dir; /* NULL: $TMPDIR or /tmp */
    ingest_progress_cb progress;
    void *progress_arg;
} ingest_options_t;

/* Per-reason counts of rejected rows; the reason names are those of ingest_reason_name(). */
typedef enum ingest_reason {
    INGEST_R_INVALID_NUMBER = 0, /* detail: phone_reason(), e.g. "too_short" */
    INGEST_R_MISSING_PHONE,
    INGEST_R_MISSING_FIELD,      /* detail: "missing field NAME" */
    INGEST_R_BODY_TOO_LONG,
    INGEST_R_BAD_TEXT,           /* NUL byte or invalid UTF-8 in a field */
    INGEST_R_BAD_REGION,
    INGEST_R_BAD_TIMEZONE,
    INGEST_R_MALFORMED_ROW,      /* more fields than the header, row over INGEST_MAX_ROW */
    INGEST_R_DUPLICATE,          /* detail: "duplicate of row N" */
    INGEST_R_SUPPRESSED,
    INGEST_R_COUNT
} ingest_reason_t;

typedef struct ingest_report {
    long rows;                     /* data rows read (the header is not counted) */
    long accepted;                 /* queued (or, dry run, would be) */
    long invalid;                  /* rejected for any reason but duplicate/suppressed */
    long duplicate;
    long suppressed;
    long by_reason[INGEST_R_COUNT];
    long first_messages;           /* accepted rows that are the org's first message to the number */
    long long segments;            /* total segments of the accepted messages */
    double cost;                   /* segments * price_per_segment */
    int64_t finish_utc;            /* estimated end of sending; 0 when unknown */
    int64_t upload_id;             /* campaign_uploads.id (0 for a dry run or a repeat) */
    int already_uploaded;          /* this file was uploaded before: nothing queued */
    int64_t previous_upload_id;    /* when already_uploaded */
    char sha256[65];               /* of the bytes fed, lowercase hex */
    uint64_t bytes;                /* bytes fed */
    double parse_seconds;
    double commit_seconds;
} ingest_report_t;

typedef struct ingest ingest_t;

/*
 * Creates an upload for campaign c (borrowed until ingest_free). Starts the worker
 * threads and creates the spool. Returns 0 and *out (free with ingest_free), or
 * INGEST_EINVAL / INGEST_ETEMPLATE / INGEST_EIO with err filled.
 */
INGEST_MUSTCHECK int ingest_new(const ingest_campaign_t *c, const ingest_options_t *opt, ingest_t **out,
                                ingest_error_t *err);

/*
 * Feeds the next len bytes of the CSV. Blocks while the workers are behind (a few
 * batches are queued at most). Returns 0, or a negative INGEST_E* code with err
 * filled (the upload is then dead: only ingest_free() is left).
 */
INGEST_MUSTCHECK int ingest_feed(ingest_t *ing, const void *data, size_t len, ingest_error_t *err);

/*
 * Ends the input: flushes the parser, waits for the workers and closes stage 1.
 * Returns 0, or INGEST_EEMPTY, INGEST_ENOROWS, INGEST_EPARSE, ... with err filled.
 */
INGEST_MUSTCHECK int ingest_finish(ingest_t *ing, ingest_error_t *err);

/*
 * Outcome of ingest_commit(). err is NULL on success (the report is final), else a
 * one-line reason (borrowed) and nothing was changed in the database.
 */
typedef void (*ingest_done_cb)(ingest_t *ing, const ingest_report_t *report, const char *err, void *arg);

/*
 * Runs stage 2 on db (borrowed; it must not be used for anything else until cb runs).
 * May be called before ingest_finish() (see the top of this file). cb runs once, from
 * the loop, never from inside this call. Returns 0, or INGEST_ESTATE (stage 1 failed,
 * or commit already started) / INGEST_EINVAL (then cb never runs).
 */
INGEST_MUSTCHECK int ingest_commit(ingest_t *ing, db_t *db, ingest_done_cb cb, void *arg);

/* The report as it stands (stage-1 counts after ingest_finish; final after commit). Borrowed. */
const ingest_report_t *ingest_report(const ingest_t *ing);

/* Rows parsed so far; safe to call from the thread that feeds. */
long ingest_rows_parsed(const ingest_t *ing);

/*
 * Feeds everything read from fd, then ingest_finish(): the reading loop of the CLI
 * (and of bench_upload), for use on a thread of its own when the commit follows the
 * parse. on_read (may be NULL) is called after each piece with the bytes fed so far.
 * Returns 0, or the INGEST_E* code of a failed feed or finish with err filled; a read
 * error aborts the upload (ingest_abort) and returns INGEST_EIO with err->reason
 * holding strerror().
 */
INGEST_MUSTCHECK int ingest_feed_fd(ingest_t *ing, int fd, void (*on_read)(uint64_t fed, void *arg), void *arg,
                                    ingest_error_t *err);

/*
 * Gives up on the input (from the feeding thread): stops the workers; a commit that is
 * following the parse rolls back and reports an error. Then only ingest_free() is left.
 */
void ingest_abort(ingest_t *ing);

/* Stops the workers, deletes the spool and frees everything. Not during a commit. NULL is fine. */
void ingest_free(ingest_t *ing);

/* "invalid_number", "missing_phone", "missing_field", "body_too_long", "invalid_text",
 * "invalid_region", "invalid_timezone", "malformed_row", "duplicate", "suppressed". Static. */
const char *ingest_reason_name(ingest_reason_t r);

/* Static description of an INGEST_E* code. */
const char *ingest_strerror(int err);

/*
 * Estimated end of sending `segments` segments at c->rate_mps (1 when unknown)
 * starting at start_utc, sending only inside the legal window (08:00-21:00) and the
 * campaign's window in the campaign's zone (its timezone, else its region's primary
 * zone). Returns 0 and *out, or a negative QUIET_E* code.
 */
INGEST_MUSTCHECK int ingest_estimate_finish(const ingest_campaign_t *c, long long segments, int64_t start_utc,
                                            int64_t *out);

/* ---- validation shared by `herald campaign create` and POST /broadcast/campaigns ---- */

/*
 * Checks a body template: valid UTF-8, 1..SMS_MAX_UNITS characters, every "{{" closed
 * by "}}" around a field name of letters, digits, '_', '-', '.' (spaces around it are
 * allowed; names are case-insensitive). Returns 0 or INGEST_ETEMPLATE with err->byte
 * at the fault and err->reason.
 */
INGEST_MUSTCHECK int ingest_template_check(const char *body, ingest_error_t *err);

/*
 * Checks the syntax of a 5-field cron expression "m h dom mon dow": each field '*' or
 * a list of N, N-M, with optional "/STEP", within its range (months and days may be
 * named: jan..dec, sun..sat; day of week 0-7). Returns 0, or INGEST_EINVAL with
 * err->reason naming the field.
 */
INGEST_MUSTCHECK int ingest_cron_check(const char *expr, ingest_error_t *err);

/* 1 if s is an E.164 sender (+ then 2..15 digits, no leading 0), else 0. */
int ingest_e164_shape(const char *s);

/* 1 if s is a Messaging Service SID ("MG" + 32 lowercase hex digits), else 0. */
int ingest_mg_sid_shape(const char *s);

#endif
