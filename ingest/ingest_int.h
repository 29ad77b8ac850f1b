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
    unsigned first_segments; /* with the first-message footer (= segments when there is none) */
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

/*
 * A set of E.164 numbers (as the integer of their digits) with the record number that
 * brought each in first: the within-file de-duplication of stage 1. 8 bytes a number
 * for numbers of up to 12 digits in the first 16M records, 12 otherwise; see numset.c.
 */
#define INGEST_NUMSET_PARTS 256
typedef struct ingest_numset {
    struct ingest_numset_packed {
        uint64_t *slots; /* key << 24 | record number; 0: empty */
        size_t cap, n;
    } packed[INGEST_NUMSET_PARTS];
    struct ingest_numset_wide {
        uint64_t *keys; /* 0: empty */
        uint32_t *vals;
        size_t cap, n;
    } wide[INGEST_NUMSET_PARTS];
    size_t n;
} ingest_numset_t;

void ingest_numset_init(ingest_numset_t *s);
void ingest_numset_close(ingest_numset_t *s);
/* Adds key -> val. Returns 0 when added, 1 when the key was there (*first = its value). */
int ingest_numset_put(ingest_numset_t *s, uint64_t key, uint32_t val, uint32_t *first);
/* Bytes the set's tables take. */
size_t ingest_numset_bytes(const ingest_numset_t *s);
/* 1 and *val when key is in the set, else 0. */
int ingest_numset_get(const ingest_numset_t *s, uint64_t key, uint32_t *val);
/* The digits of "+E164" as an integer (0 for anything else). */
uint64_t ingest_e164_key(const char *e164);

/*
 * Between ingest.c (stage 1) and commit.c (stage 2). Stage 1 leaves two spools, both in
 * file order: the accepted rows (first occurrence of each number), one line each in the
 * column order INGEST_RECIPIENT_COLUMNS, and the rejected rows as INGEST_REJECT_COLUMNS.
 */
#define INGEST_RECIPIENT_COLUMNS "rn, to_e164, raw, region, tz, body, segs, enc, f_suffix, f_segs, f_enc, tags, attrs"
#define INGEST_REJECT_COLUMNS "row_number, raw_value, reason, detail"
int ingest_spool_fd(const ingest_t *ing);
uint64_t ingest_spool_bytes(const ingest_t *ing);
/* Field k (0-based) of a tab-separated spool line (len without its newline); *n its length. */
const char *ingest_line_field(const char *line, size_t len, int k, size_t *n);
int ingest_rejects_fd(const ingest_t *ing);
uint64_t ingest_rejects_bytes(const ingest_t *ing);
/* Segments of the accepted rows of stage 1, each with its first-message footer. */
long long ingest_first_segments(const ingest_t *ing);
ingest_report_t *ingest_report_mut(ingest_t *ing);
const ingest_options_t *ingest_options(const ingest_t *ing);
const ingest_campaign_t *ingest_campaign(const ingest_t *ing);
int ingest_finished(const ingest_t *ing);
/* 0 while stage 1 runs, 1 once it finished cleanly (the spools are complete), -1 if it
 * failed. Safe from any thread. */
int ingest_stage1(const ingest_t *ing);
int *ingest_committing(ingest_t *ing);

#endif
