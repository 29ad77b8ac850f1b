/*
 * Internals shared by the ingest/ files and their unit tests: the header map, the
 * compiled body template and the pure per-row step (fields in, COPY line out).
 */
#ifndef HERALD_INGEST_INGEST_INT_H
#define HERALD_INGEST_INGEST_INT_H
#include "common/buf.h"
#include "ingest/ingest.h"

#include <stddef.h>

/* Accepted phone column names, most specific first. */
#define INGEST_PHONE_ALIASES "phone, phone_number, mobile, number, to"

typedef struct ingest_header {
    int ncols;
    char (*names)[INGEST_MAX_NAME + 1]; /* normalized names, "" for a blank header cell */
    int phone_col;                      /* -1 when none */
    int region_col, tz_col, tags_col;   /* -1 when absent */
} ingest_header_t;

/*
 * Normalizes a column or merge-field name: ASCII white space trimmed, letters
 * lowercased, runs of ' ' and '-' turned into '_'. Returns 0, or -1 when the name is
 * longer than INGEST_MAX_NAME bytes or holds a NUL, a control character or invalid
 * UTF-8 (out is then "").
 */
int ingest_name_normalize(const char *s, size_t n, char out[INGEST_MAX_NAME + 1]);

/*
 * Reads the header row (fields[i], lens[i], n of them; a leading UTF-8 BOM on the
 * first field is skipped) into *h. Fails with INGEST_EHEADER (no phone column,
 * duplicate or unreadable names) or INGEST_ETOOBIG (over INGEST_MAX_COLUMNS), err
 * filled. Free with ingest_header_free() (also after a failure).
 */
INGEST_MUSTCHECK int ingest_header_parse(ingest_header_t *h, const char *const *fields, const size_t *lens,
                                         int n, ingest_error_t *err);

/* Frees the names of *h (safe on a zeroed or failed header). */
void ingest_header_free(ingest_header_t *h);

/* Column index of a normalized name, or -1. */
int ingest_header_find(const ingest_header_t *h, const char *name);

typedef struct ingest_tpl_part {
    size_t lit_off, lit_len; /* literal text before the placeholder, in the body */
    int col;                 /* column of the merge field, -1 if the file has none */
    int def;                 /* index into the campaign defaults, -1 if none */
    char name[INGEST_MAX_NAME + 1];
} ingest_tpl_part_t;

typedef struct ingest_template {
    const char *body; /* borrowed */
    int nparts;       /* placeholders; the text after the last one is the tail */
    ingest_tpl_part_t part[INGEST_MAX_PLACEHOLDERS];
    size_t tail_off, tail_len;
} ingest_template_t;

/*
 * Compiles body against a header (may be NULL: every field then comes from the
 * defaults) and the campaign's defaults. Returns 0 or INGEST_ETEMPLATE with err filled.
 */
INGEST_MUSTCHECK int ingest_template_compile(ingest_template_t *t, const char *body, const ingest_header_t *h,
                                             const ingest_default_t *defs, size_t ndefs, ingest_error_t *err);

/* One data row: borrowed fields of the record numbered rn (header = 1). */
#define INGEST_ROW_TOO_MANY_FIELDS 0x1u
#define INGEST_ROW_TOO_LONG 0x2u
typedef struct ingest_row {
    long rn;
    int nfields;
    const char *const *f;
    const size_t *len;
    unsigned flags;
} ingest_row_t;

/*
 * Appends the rendered body to out. A merge field whose cell is missing or blank takes
 * the campaign default; with none, returns -1 and *missing = the field name (out then
 * holds a partial body). Returns 0 on success, BUF_ETOOBIG if out's cap is reached.
 */
INGEST_MUSTCHECK int ingest_template_render(const ingest_template_t *t, const ingest_row_t *row,
                                            const ingest_default_t *defs, buf_t *out, const char **missing);

/* Per-thread state of the row step. Init with ingest_rowctx_init, free with _close. */
#define INGEST_TZ_CACHE 8
typedef struct ingest_rowctx {
    const ingest_campaign_t *camp;
    const ingest_header_t *hdr;
    const ingest_template_t *tpl;
    buf_t body, plain, first, tmp;
    struct {
        char name[64];
        int valid;
    } tz[INGEST_TZ_CACHE];
    unsigned tz_next;
} ingest_rowctx_t;

/* Prepares x for rows of campaign c under header h and template t (all borrowed). */
void ingest_rowctx_init(ingest_rowctx_t *x, const ingest_campaign_t *c, const ingest_header_t *h,
                        const ingest_template_t *t);

/* Frees the buffers of x. */
void ingest_rowctx_close(ingest_rowctx_t *x);

/* What the row step decided. */
typedef struct ingest_row_result {
    int reason;          /* -1 accepted, else an ingest_reason_t */
    char e164[17];
    unsigned segments;   /* of the body without a first-message footer */
    char detail[160];    /* reason detail for a reject */
} ingest_row_result_t;

/*
 * The pure per-row step: checks the row's text, normalizes the phone, renders and
 * completes the body, and appends one line of the staging COPY (text format; the
 * columns of INGEST_STAGE_COLUMNS) to copy_out — for accepted and rejected rows
 * alike. Returns 0, or BUF_ETOOBIG when copy_out's cap is reached.
 */
#define INGEST_STAGE_COLUMNS "rn, to_e164, raw, region, tz, body, segs, enc, f_suffix, f_segs, f_enc, tags, attrs, reason, detail"
INGEST_MUSTCHECK int ingest_row_process(ingest_rowctx_t *x, const ingest_row_t *row, buf_t *copy_out,
                                        ingest_row_result_t *res);

/* Appends s[0..n) to out escaped for COPY text format (\\, \t, \n, \r). */
INGEST_MUSTCHECK int ingest_copy_escape(buf_t *out, const char *s, size_t n);

/* 1 if s[0..n) is valid UTF-8 without NUL bytes. */
int ingest_utf8_ok(const char *s, size_t n);

/* Between ingest.c (stage 1) and commit.c (stage 2): the spool and its size, the report
 * being filled, the options and campaign given to ingest_new, whether stage 1 ended
 * cleanly, and the flag that keeps two commits from running at once. */
int ingest_spool_fd(const ingest_t *ing);
uint64_t ingest_spool_bytes(const ingest_t *ing);
ingest_report_t *ingest_report_mut(ingest_t *ing);
const ingest_options_t *ingest_options(const ingest_t *ing);
const ingest_campaign_t *ingest_campaign(const ingest_t *ing);
int ingest_finished(const ingest_t *ing);
int *ingest_committing(ingest_t *ing);

#endif
