/*
 * The broadcast API owned by serve (issue 4), every route behind serve_auth() and
 * scoped by the key's org (another org's campaign is a 404, like a missing one):
 *
 *   POST /broadcast/campaigns                     create from JSON (app/campaign_spec.c
 *                                                 validates, exactly as `campaign create`)
 *   GET  /broadcast/campaigns/{id}                the campaign and its outbox counts
 *   POST /broadcast/campaigns/{id}/recipients     CSV upload (text/csv), streamed
 *   GET  /broadcast/campaigns/{id}/rejects        rejected rows, keyset pages, JSON or CSV
 *
 * The upload never holds the file: the route is streamed (http_router_add_stream), each
 * piece of the body goes to ingest_feed() on a libuv threadpool thread while the
 * server stops reading the socket (ingest_feed blocks while the ingest workers are
 * behind; the loop must not), one piece at a time per upload, so memory per upload is
 * two HTTP_STREAM_CHUNK buffers plus the ingest's own bounded queue. ingest_finish()
 * runs on the threadpool too, then ingest_commit() on a database connection opened
 * for this upload alone, and the answer is the report. A fatal CSV error, a body over
 * HERALD_MAX_UPLOAD_BYTES or a client that goes away stops the upload before the
 * commit, so nothing is queued; ingest_free() (which joins the worker threads) also
 * runs on the threadpool. Uploads in progress are capped (HERALD_MAX_UPLOADS): each
 * holds a threadpool thread while it parses, and the pool is shared with the loop's
 * other users. The control routes (start/pause/...) belong to app/serve_scheduler.c.
 */
#include "app/campaign_spec.h"
#include "app/serve.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/cursor.h"
#include "http/form.h"
#include "ingest/ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CREATE_MAX_BODY (64 * 1024)
#define REJECTS_LIMIT_DEFAULT 100
#define REJECTS_LIMIT_MAX 1000
#define REJECTS_CSV_LIMIT_DEFAULT 10000
#define REJECTS_CSV_LIMIT_MAX 100000
#define RESPONSE_CAP (64u << 20)

typedef struct bc_state {
    serve_ctx_t *ctx;
    size_t uploads; /* in progress (slots taken) */
} bc_state_t;

static bc_state_t bc;

/* ---- helpers ---- */

/* 1 when the Content-Type header names media type want (parameters ignored). */
static int media_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* Answers with the JSON document (consumed) and status. */
static void respond_doc(http_request_t *req, int status, json_t *doc, const char *const *headers)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    if (!text)
        abort();
    http_respond(req, status, "application/json", headers, text, strlen(text));
    free(text);
}

/* A JSON string, or null when s is NULL (or not UTF-8, which a text column cannot hold anyway). */
static json_t *str_or_null(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

/* ---- GET /broadcast/campaigns/{id} ---- */

typedef struct bc_req {
    serve_ctx_t *ctx;
    http_request_t *req;
} bc_req_t;

static void on_campaign(db_t *db, const PGresult *res, const char *err, void *arg)
{
    bc_req_t *b = arg;

    serve_db_report(b->ctx, db, res, err);
    if (err) {
        log_error("broadcast: query failed: %s", err);
        serve_json_error(b->req, 503, "database unavailable");
    } else if (PQntuples(res) != 1) {
        serve_json_error(b->req, 404, "campaign not found");
    } else {
        const char *v = PQgetvalue(res, 0, 0);
        http_respond(b->req, 200, "application/json", NULL, v, strlen(v));
    }
    free(b);
}

static void authed_get(http_request_t *req, int64_t org_id, void *arg)
{
    serve_ctx_t *ctx = arg;
    int64_t id;
    char org[24], idb[24];
    const char *p[2] = {org, idb};
    bc_req_t *b;
    db_t *db;

    if (serve_parse_id(http_request_param(req, "id"), &id) != 0) {
        serve_json_error(req, 404, "campaign not found");
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    db = serve_db(ctx);
    b = xcalloc(1, sizeof(*b));
    b->ctx = ctx;
    b->req = req;
    if (!db || db_query(db, CAMPAIGN_GET_SQL, 2, p, on_campaign, b) != 0) {
        free(b);
        serve_json_error(req, 503, "database unavailable");
    }
}

/* ---- POST /broadcast/campaigns ---- */

/* JSON names of the fields, and the names GET answers with, accepted as aliases. */
static const char *const api_names[CF_COUNT] = {
    [CF_NAME] = "name",
    [CF_BODY] = "body",
    [CF_FROM] = "from",
    [CF_MG] = "messaging_service_sid",
    [CF_RATE] = "rate",
    [CF_START] = "start",
    [CF_CRON] = "cron",
    [CF_TZ] = "tz",
    [CF_REGION] = "region",
    [CF_QUIET] = "quiet_hours",
    [CF_FOOTER_POLICY] = "footer_policy",
    [CF_FOOTER] = "footer",
    [CF_PRICE] = "price_per_segment",
    [CF_DEFAULTS] = "defaults",
};
static const char *const api_aliases[CF_COUNT] = {
    [CF_RATE] = "rate_mps",      [CF_START] = "start_at",          [CF_TZ] = "timezone",
    [CF_FOOTER] = "footer_text", [CF_DEFAULTS] = "merge_defaults",
};

static void field_error(http_request_t *req, int status, const char *field, const char *msg)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "error", str_or_null(msg));
    json_object_set_new(doc, "field", str_or_null(field));
    respond_doc(req, status, doc, NULL);
}

static void on_created(db_t *db, const PGresult *res, const char *err, void *arg)
{
    bc_req_t *b = arg;

    serve_db_report(b->ctx, db, res, err);
    if (err) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* Data and constraint errors are the request's fault (all checked above; a backstop). */
        if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)) {
            field_error(b->req, 422, NULL, err);
        } else {
            log_error("broadcast: create failed: %s", err);
            serve_json_error(b->req, 503, "database unavailable");
        }
    } else if (PQntuples(res) != 1) {
        serve_json_error(b->req, 500, "the campaign was not stored");
    } else {
        const char *v = PQgetvalue(res, 0, 0);
        json_t *doc = json_loads(v, 0, NULL);
        char *loc = http_arena_alloc(b->req->arena, 64);
        const char *headers[] = {loc, NULL};
        snprintf(loc, 64, "Location: /broadcast/campaigns/%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(doc, "id")));
        json_decref(doc);
        http_respond(b->req, 201, "application/json", headers, v, strlen(v));
    }
    free(b);
}

static void authed_create(http_request_t *req, int64_t org_id, void *arg)
{
    serve_ctx_t *ctx = arg;
    const char *ct = http_request_header(req, "Content-Type");
    const char *names[CF_COUNT];
    char numbuf[2][40];
    int nnum = 0;
    campaign_spec_t spec = {0};
    campaign_spec_error_t serr;
    campaign_insert_t ins;
    json_error_t jerr;
    json_t *doc = NULL, *val;
    const char *key;
    bc_req_t *b;
    db_t *db;

    if (ct && !media_is(ct, "application/json")) {
        serve_json_error(req, 415, "Content-Type must be application/json");
        return;
    }
    if (req->body_len > CREATE_MAX_BODY) {
        serve_json_error(req, 413, "the campaign document is larger than 64 KiB");
        return;
    }
    doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        char msg[256];
        if (doc)
            snprintf(msg, sizeof(msg), "expected a JSON object");
        else
            snprintf(msg, sizeof(msg), "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                     jerr.column);
        field_error(req, 400, NULL, msg);
        json_decref(doc);
        return;
    }
    memcpy(names, api_names, sizeof(names));
    json_object_foreach(doc, key, val)
    {
        campaign_field_t f = CF_COUNT;
        char msg[256];
        for (int i = 0; i < CF_COUNT && f == CF_COUNT; i++)
            if (strcmp(key, api_names[i]) == 0 || (api_aliases[i] && strcmp(key, api_aliases[i]) == 0))
                f = (campaign_field_t)i;
        if (f == CF_COUNT) {
            snprintf(msg, sizeof(msg), "unknown field '%.100s'", key);
            field_error(req, 422, key, msg);
            goto out;
        }
        if ((f == CF_DEFAULTS ? spec.defaults != NULL : spec.v[f] != NULL)) {
            snprintf(msg, sizeof(msg), "give %s or %s, not both", api_names[f], api_aliases[f]);
            field_error(req, 422, key, msg);
            goto out;
        }
        names[f] = key;
        if (json_is_null(val))
            continue;
        if (f == CF_DEFAULTS) {
            if (!json_is_object(val)) {
                snprintf(msg, sizeof(msg), "%s must be an object of field names and their text", key);
                field_error(req, 422, key, msg);
                goto out;
            }
            spec.defaults = val;
        } else if (f == CF_RATE || f == CF_PRICE) {
            if (json_is_integer(val))
                snprintf(numbuf[nnum], sizeof(numbuf[0]), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
            else if (json_is_real(val))
                snprintf(numbuf[nnum], sizeof(numbuf[0]), "%.15g", json_real_value(val));
            else {
                snprintf(msg, sizeof(msg), "%s must be a number", key);
                field_error(req, 422, key, msg);
                goto out;
            }
            spec.v[f] = numbuf[nnum++];
        } else {
            if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val)) {
                snprintf(msg, sizeof(msg), "%s must be a string (without NUL characters)", key);
                field_error(req, 422, key, msg);
                goto out;
            }
            spec.v[f] = json_string_value(val);
        }
    }
    if (campaign_spec_check(&spec, names, &serr) != 0) {
        field_error(req, 422, names[serr.field], serr.msg);
        goto out;
    }
    campaign_insert_init(&ins, &spec, org_id);
    db = serve_db(ctx);
    b = xcalloc(1, sizeof(*b));
    b->ctx = ctx;
    b->req = req;
    if (!db ||
        db_query(db, CAMPAIGN_INSERT_JSON_SQL, CAMPAIGN_INSERT_NPARAMS, ins.values, on_created, b) != 0) {
        free(b);
        serve_json_error(req, 503, "database unavailable");
    }
    campaign_insert_free(&ins);
out:
    json_decref(doc);
}

/* ---- GET /broadcast/campaigns/{id}/rejects ---- */

static const char rejects_sql[] =
    "SELECT upload_id, row_number, raw_value, reason, detail FROM campaign_rejects"
    " WHERE campaign_id = $1::bigint AND ($2::bigint IS NULL OR upload_id = $2::bigint)"
    " AND (upload_id, row_number) > ($3::bigint, $4::bigint)"
    " ORDER BY upload_id, row_number LIMIT $5::bigint";

typedef struct rej_req {
    serve_ctx_t *ctx;
    http_request_t *req;
    int64_t campaign_id;
    long limit;
    int csv;
    int exists;
} rej_req_t;

static void on_rej_exists(db_t *db, const PGresult *res, const char *err, void *arg)
{
    rej_req_t *r = arg;
    serve_db_report(r->ctx, db, res, err);
    if (!r->req) {
        /* The page query could not be queued (and was answered 503). */
        free(r);
        return;
    }
    r->exists = !err && PQntuples(res) == 1;
}

static int csv_cell(buf_t *out, const char *s)
{
    int rc = 0;
    if (strpbrk(s, ",\"\r\n") == NULL)
        return buf_puts(out, s);
    rc |= buf_append(out, "\"", 1);
    for (; *s; s++) {
        if (*s == '"')
            rc |= buf_append(out, "\"", 1);
        rc |= buf_append(out, s, 1);
    }
    return rc | buf_append(out, "\"", 1);
}

static void on_rej_page(db_t *db, const PGresult *res, const char *err, void *arg)
{
    rej_req_t *r = arg;
    int n = res ? PQntuples(res) : 0, shown;
    char cursor[HTTP_CURSOR_MAX] = "";

    serve_db_report(r->ctx, db, res, err);
    if (err) {
        log_error("broadcast: rejects query failed: %s", err);
        serve_json_error(r->req, 503, "database unavailable");
        goto out;
    }
    if (!r->exists) {
        serve_json_error(r->req, 404, "campaign not found");
        goto out;
    }
    /* One row more than the page was asked for: its presence means there is a next page. */
    shown = n > r->limit ? (int)r->limit : n;
    if (n > r->limit)
        http_cursor_encode(strtoll(PQgetvalue(res, shown - 1, 0), NULL, 10),
                           strtoll(PQgetvalue(res, shown - 1, 1), NULL, 10), cursor);
    if (r->csv) {
        buf_t out;
        int rc;
        char *hdr[3] = {NULL, NULL, NULL};
        buf_init(&out, RESPONSE_CAP);
        rc = buf_puts(&out, "upload,row,raw_value,reason,detail\n");
        for (int i = 0; i < shown && rc == 0; i++) {
            for (int k = 0; k < 5; k++) {
                if (k)
                    rc |= buf_append(&out, ",", 1);
                rc |= csv_cell(&out, PQgetvalue(res, i, k));
            }
            rc |= buf_append(&out, "\n", 1);
        }
        hdr[0] = http_arena_alloc(r->req->arena, 96);
        snprintf(hdr[0], 96, "Content-Disposition: attachment; filename=\"campaign-%" PRId64 "-rejects.csv\"",
                 r->campaign_id);
        if (cursor[0]) {
            hdr[1] = http_arena_alloc(r->req->arena, HTTP_CURSOR_MAX + 16);
            snprintf(hdr[1], HTTP_CURSOR_MAX + 16, "X-Next-Cursor: %s", cursor);
        }
        if (rc != 0)
            serve_json_error(r->req, 500, "response too large");
        else
            http_respond(r->req, 200, "text/csv; charset=utf-8", (const char *const *)hdr, buf_str(&out),
                         out.len);
        buf_close(&out);
    } else {
        json_t *doc = json_object(), *data = json_array();
        for (int i = 0; i < shown; i++) {
            json_t *row = json_object();
            json_object_set_new(row, "upload_id", json_integer(strtoll(PQgetvalue(res, i, 0), NULL, 10)));
            json_object_set_new(row, "row_number", json_integer(strtoll(PQgetvalue(res, i, 1), NULL, 10)));
            json_object_set_new(row, "raw_value",
                                str_or_null(PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2)));
            json_object_set_new(row, "reason", str_or_null(PQgetvalue(res, i, 3)));
            json_object_set_new(row, "detail",
                                str_or_null(PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4)));
            json_array_append_new(data, row);
        }
        json_object_set_new(doc, "data", data);
        json_object_set_new(doc, "next_cursor", cursor[0] ? json_string(cursor) : json_null());
        respond_doc(r->req, 200, doc, NULL);
    }
out:
    free(r);
}

static void authed_rejects(http_request_t *req, int64_t org_id, void *arg)
{
    serve_ctx_t *ctx = arg;
    http_form_t q;
    http_form_error_t ferr;
    const char *v, *why = NULL;
    int64_t id, upload = 0, after_upload = 0, after_row = 0, n;
    char org[24], idb[24], upb[24], aub[24], arb[24], limb[24];
    const char *pe[2] = {org, idb}, *pp[5] = {idb, NULL, aub, arb, limb};
    rej_req_t *r;
    db_t *db;
    int csv = 0;
    long limit;

    if (serve_parse_id(http_request_param(req, "id"), &id) != 0) {
        serve_json_error(req, 404, "campaign not found");
        return;
    }
    if (http_form_parse(req->query, strlen(req->query), NULL, req->arena, &q, &ferr) != 0) {
        serve_json_error(req, 400, "malformed query string");
        return;
    }
    v = http_form_get(&q, "format");
    if (v && strcmp(v, "csv") == 0)
        csv = 1;
    else if (v && strcmp(v, "json") != 0)
        why = "format must be json or csv";
    limit = csv ? REJECTS_CSV_LIMIT_DEFAULT : REJECTS_LIMIT_DEFAULT;
    v = http_form_get(&q, "limit");
    if (v && (serve_parse_id(v, &n) != 0 || n > (csv ? REJECTS_CSV_LIMIT_MAX : REJECTS_LIMIT_MAX)))
        why = csv ? "limit must be 1..100000" : "limit must be 1..1000";
    else if (v)
        limit = (long)n;
    v = http_form_get(&q, "upload_id");
    if (v && serve_parse_id(v, &upload) != 0)
        why = "upload_id must be a positive integer";
    v = http_form_get(&q, "cursor");
    if (v && *v && http_cursor_decode(v, &after_upload, &after_row) != 0)
        why = "invalid cursor";
    if (why) {
        serve_json_error(req, 400, why);
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    snprintf(upb, sizeof(upb), "%" PRId64, upload);
    snprintf(aub, sizeof(aub), "%" PRId64, after_upload);
    snprintf(arb, sizeof(arb), "%" PRId64, after_row);
    snprintf(limb, sizeof(limb), "%ld", limit + 1);
    pp[1] = upload ? upb : NULL;
    r = xcalloc(1, sizeof(*r));
    r->ctx = ctx;
    r->req = req;
    r->campaign_id = id;
    r->limit = limit;
    r->csv = csv;
    db = serve_db(ctx);
    /* Both on one connection, so on_rej_exists has run when on_rej_page does. */
    if (!db || db_query(db, "SELECT 1 FROM campaigns WHERE org_id = $1::bigint AND id = $2::bigint", 2, pe,
                        on_rej_exists, r) != 0) {
        free(r);
        serve_json_error(req, 503, "database unavailable");
        return;
    }
    if (db_query(db, rejects_sql, 5, pp, on_rej_page, r) != 0) {
        /* on_rej_exists still runs and frees r. */
        r->req = NULL;
        serve_json_error(req, 503, "database unavailable");
    }
}

/* ---- POST /broadcast/campaigns/{id}/recipients ---- */

typedef enum up_state {
    UP_LOOKUP,     /* loading the campaign on a pooled connection */
    UP_READING,    /* body arriving; no piece with a worker */
    UP_FEEDING,    /* one piece in ingest_feed() on the threadpool; the socket is not read */
    UP_FINISHING,  /* ingest_finish() on the threadpool */
    UP_CONNECTING, /* opening the upload's own database connection */
    UP_COMMITTING, /* ingest_commit() */
    UP_CLEANUP,    /* answered; ingest_free() on the threadpool */
} up_state_t;

typedef struct upload {
    up_state_t state;
    serve_ctx_t *ctx;
    http_request_t *req; /* NULL once answered */
    int64_t campaign_id;
    int dry_run;
    PGresult *camp_res; /* owns the strings camp points at */
    ingest_campaign_t camp;
    ingest_default_t *defs;
    ingest_t *ing;
    ingest_error_t ierr; /* of the last worker call */
    int rc;
    const char *piece; /* borrowed from the server until http_request_body_next() */
    size_t piece_len;
    uv_work_t work;
    db_t *db;
} upload_t;

static void up_set_state(upload_t *u, up_state_t to)
{
    static const char *const names[] = {"lookup",     "reading",    "feeding", "finishing",
                                        "connecting", "committing", "cleanup"};
    static const unsigned char allowed[7][7] = {
        /*              look read feed fini conn comm clean */
        /* lookup  */ {0, 1, 0, 0, 0, 0, 1},
        /* reading */ {0, 0, 1, 1, 0, 0, 1},
        /* feeding */ {0, 1, 0, 0, 0, 0, 1},
        /* finish  */ {0, 0, 0, 0, 1, 0, 1},
        /* connect */ {0, 0, 0, 0, 0, 1, 1},
        /* commit  */ {0, 0, 0, 0, 0, 0, 1},
        /* cleanup */ {0, 0, 0, 0, 0, 0, 0},
    };
    if (!allowed[u->state][to]) {
        log_error("upload: bad transition %s -> %s", names[u->state], names[to]);
        abort();
    }
    log_debug("upload %p (campaign %" PRId64 "): %s -> %s", (void *)u, u->campaign_id, names[u->state],
              names[to]);
    u->state = to;
}

static void up_free_work(uv_work_t *w)
{
    upload_t *u = w->data;
    ingest_free(u->ing);
}

static void up_freed(uv_work_t *w, int status)
{
    upload_t *u = w->data;
    (void)status;
    if (u->camp_res)
        PQclear(u->camp_res);
    ingest_defaults_free(u->defs, u->defs ? u->camp.n_defaults : 0);
    free(u);
    bc.uploads--;
}

/*
 * After the answer: frees everything. ingest_free() joins the worker threads and
 * closes the spool (a large unlinked file), so it runs off the loop.
 */
static void up_end(upload_t *u)
{
    up_set_state(u, UP_CLEANUP);
    u->req = NULL;
    if (u->db) {
        db_close(u->db, NULL, NULL);
        u->db = NULL;
    }
    u->work.data = u;
    if (!u->ing || uv_queue_work(u->ctx->loop, &u->work, up_free_work, up_freed) != 0) {
        up_free_work(&u->work);
        up_freed(&u->work, 0);
    }
}

/* Answers {"error": msg, "row": row or null}; row is the CSV record (header = 1). */
static void row_error(http_request_t *req, int status, const char *msg, long row)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "error", str_or_null(msg));
    json_object_set_new(doc, "row", row > 0 ? json_integer(row) : json_null());
    respond_doc(req, status, doc, NULL);
}

static void up_fail(upload_t *u, int status, const char *msg, long row)
{
    row_error(u->req, status, msg, row);
    up_end(u);
}

/* A fatal ingest error: nothing was committed. */
static void up_fail_ingest(upload_t *u, const ingest_error_t *e, int code)
{
    int status;
    switch (code) {
    case INGEST_EEMPTY:
    case INGEST_EPARSE:
        status = 400;
        break;
    case INGEST_ETOOBIG:
        status = 413;
        break;
    case INGEST_EHEADER:
    case INGEST_ENOROWS:
    case INGEST_ETEMPLATE:
    case INGEST_EINVAL:
        status = 422;
        break;
    default:
        status = 500;
        break;
    }
    log_info("upload to campaign %" PRId64 " refused (%d): %s", u->campaign_id, status, e->reason);
    up_fail(u, status, e->reason[0] ? e->reason : ingest_strerror(code), e->row);
}

static void up_summary(upload_t *u, const ingest_report_t *rep)
{
    static const ingest_reason_t invalid_reasons[] = {
        INGEST_R_INVALID_NUMBER, INGEST_R_MISSING_PHONE, INGEST_R_MISSING_FIELD, INGEST_R_BODY_TOO_LONG,
        INGEST_R_BAD_TEXT,       INGEST_R_BAD_REGION,    INGEST_R_BAD_TIMEZONE,  INGEST_R_MALFORMED_ROW};
    const ingest_campaign_t *c = &u->camp;
    json_t *doc = json_object(), *by = json_object();
    /* A repeat queued nothing: its counts are zero; upload_id names the earlier upload. */
    int again = rep->already_uploaded;
    int64_t upload_id = again ? rep->previous_upload_id : rep->upload_id;

    json_object_set_new(doc, "campaign_id", json_integer(c->campaign_id));
    json_object_set_new(doc, "upload_id", upload_id > 0 ? json_integer(upload_id) : json_null());
    json_object_set_new(doc, "dry_run", json_boolean(u->dry_run));
    json_object_set_new(doc, "already_uploaded", json_boolean(again));
    json_object_set_new(doc, "rows", json_integer(rep->rows));
    json_object_set_new(doc, "accepted", json_integer(again ? 0 : rep->accepted));
    json_object_set_new(doc, "invalid", json_integer(again ? 0 : rep->invalid));
    for (size_t i = 0; i < sizeof(invalid_reasons) / sizeof(invalid_reasons[0]); i++)
        if (!again && rep->by_reason[invalid_reasons[i]])
            json_object_set_new(by, ingest_reason_name(invalid_reasons[i]),
                                json_integer(rep->by_reason[invalid_reasons[i]]));
    json_object_set_new(doc, "invalid_by_reason", by);
    json_object_set_new(doc, "duplicate", json_integer(again ? 0 : rep->duplicate));
    json_object_set_new(doc, "suppressed", json_integer(again ? 0 : rep->suppressed));
    json_object_set_new(doc, "segments", json_integer(again ? 0 : rep->segments));
    json_object_set_new(doc, "first_messages", json_integer(again ? 0 : rep->first_messages));
    json_object_set_new(doc, "footer_policy", json_string(footer_policy_name(c->footer_policy)));
    json_object_set_new(doc, "estimated_cost", json_real(again ? 0.0 : rep->cost));
    json_object_set_new(doc, "price_per_segment", json_real(c->price_per_segment));
    if (!again && rep->finish_utc > 0 && rep->accepted > 0) {
        char when[32];
        time_t t = (time_t)rep->finish_utc;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new(doc, "estimated_finish", json_string(when));
    } else {
        json_object_set_new(doc, "estimated_finish", json_null());
    }
    json_object_set_new(doc, "rate_mps", json_real(c->rate_mps > 0 ? c->rate_mps : 1.0));
    json_object_set_new(doc, "rate_assumed", json_boolean(c->rate_mps <= 0));
    json_object_set_new(doc, "sha256", json_string(rep->sha256));
    json_object_set_new(doc, "bytes", json_integer((json_int_t)rep->bytes));
    json_object_set_new(doc, "parse_seconds", json_real(rep->parse_seconds));
    json_object_set_new(doc, "commit_seconds", json_real(rep->commit_seconds));
    log_info("upload to campaign %" PRId64
             ": %ld rows, %ld accepted, %ld invalid, %ld duplicate, %ld suppressed"
             "%s%s (%.2f s + %.2f s)",
             c->campaign_id, rep->rows, rep->accepted, rep->invalid, rep->duplicate, rep->suppressed,
             u->dry_run ? ", dry run" : "", again ? ", already uploaded" : "", rep->parse_seconds,
             rep->commit_seconds);
    respond_doc(u->req, 200, doc, NULL);
}

static void on_committed(ingest_t *ing, const ingest_report_t *rep, const char *err, void *arg)
{
    upload_t *u = arg;

    (void)ing;
    if (err) {
        char msg[512];
        int closed = strstr(err, "completed or canceled") != NULL;
        log_error("upload to campaign %" PRId64 ": commit failed: %s", u->campaign_id, err);
        snprintf(msg, sizeof(msg), "nothing queued: %s", err);
        up_fail(u, closed ? 409 : 503, msg, 0);
        return;
    }
    up_summary(u, rep);
    up_end(u);
}

static void on_up_connected(db_t *db, const char *err, void *arg)
{
    upload_t *u = arg;

    (void)db;
    if (err) {
        log_error("upload to campaign %" PRId64 ": database: %s", u->campaign_id, err);
        up_fail(u, 503, "database unavailable: nothing queued", 0);
        return;
    }
    up_set_state(u, UP_COMMITTING);
    if (ingest_commit(u->ing, u->db, on_committed, u) != 0)
        up_fail(u, 500, "cannot start the database work: nothing queued", 0);
}

static void up_finish_work(uv_work_t *w)
{
    upload_t *u = w->data;
    u->rc = ingest_finish(u->ing, &u->ierr);
}

static void up_finished(uv_work_t *w, int status)
{
    upload_t *u = w->data;

    (void)status;
    if (u->rc != 0) {
        up_fail_ingest(u, &u->ierr, u->rc);
        return;
    }
    up_set_state(u, UP_CONNECTING);
    if (db_connect(u->ctx->loop, u->ctx->cfg.conninfo, on_up_connected, u, &u->db) != 0) {
        u->db = NULL;
        up_fail(u, 503, "database unavailable: nothing queued", 0);
    }
}

static void up_feed_work(uv_work_t *w)
{
    upload_t *u = w->data;
    u->rc = ingest_feed(u->ing, u->piece, u->piece_len, &u->ierr);
}

static void up_fed(uv_work_t *w, int status)
{
    upload_t *u = w->data;

    (void)status;
    up_set_state(u, UP_READING);
    u->piece = NULL;
    if (u->rc != 0) {
        /* Answering stops the body; the server drops the rest and closes the connection. */
        up_fail_ingest(u, &u->ierr, u->rc);
        return;
    }
    /* May call on_data / on_end / on_error at once: nothing of u is touched after it. */
    http_request_body_next(u->req);
}

static void on_up_data(http_request_t *req, const char *data, size_t len, void *arg)
{
    upload_t *u = arg;

    (void)req;
    up_set_state(u, UP_FEEDING);
    u->piece = data;
    u->piece_len = len;
    u->work.data = u;
    if (uv_queue_work(u->ctx->loop, &u->work, up_feed_work, up_fed) != 0)
        abort();
}

static void on_up_end(http_request_t *req, void *arg)
{
    upload_t *u = arg;

    (void)req;
    up_set_state(u, UP_FINISHING);
    u->work.data = u;
    if (uv_queue_work(u->ctx->loop, &u->work, up_finish_work, up_finished) != 0)
        abort();
}

static void on_up_error(http_request_t *req, int status, void *arg)
{
    upload_t *u = arg;
    char msg[160];

    log_info("upload to campaign %" PRId64 " abandoned: %s", u->campaign_id,
             status == 0 ? "the client went away" : http_status_reason(status));
    switch (status) {
    case 0:
        http_request_reset(req);
        up_end(u);
        return;
    case 413:
        snprintf(msg, sizeof(msg),
                 "the upload is larger than %llu bytes (HERALD_MAX_UPLOAD_BYTES): nothing queued",
                 (unsigned long long)u->ctx->cfg.max_upload_bytes);
        break;
    case 408:
        snprintf(msg, sizeof(msg), "the upload stalled: nothing queued");
        break;
    default:
        snprintf(msg, sizeof(msg), "the request body is malformed or ended early: nothing queued");
        break;
    }
    up_fail(u, status, msg, 0);
}

static void on_up_campaign(db_t *db, const PGresult *res, const char *err, void *arg)
{
    static const http_body_reader_t reader = {on_up_data, on_up_end, on_up_error};
    upload_t *u = arg;
    ingest_options_t opt = {0};
    const char *status;
    int rc;

    serve_db_report(u->ctx, db, res, err);
    if (err) {
        log_error("upload: campaign lookup failed: %s", err);
        up_fail(u, 503, "database unavailable", 0);
        return;
    }
    if (PQntuples(res) != 1) {
        up_fail(u, 404, "campaign not found", 0);
        return;
    }
    /* The campaign's strings point into the result, which must outlive this callback. */
    u->camp_res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (!u->camp_res)
        abort();
    if (ingest_campaign_from_result(u->camp_res, &u->camp, &u->defs, &u->ierr) != 0) {
        log_error("upload: campaign %" PRId64 ": %s", u->campaign_id, u->ierr.reason);
        up_fail(u, 500, u->ierr.reason, 0);
        return;
    }
    status = u->camp.status ? u->camp.status : "";
    if (strcmp(status, "completed") == 0 || strcmp(status, "canceled") == 0) {
        up_fail(u, 409, "the campaign is completed or canceled: uploads are closed", 0);
        return;
    }
    opt.dry_run = u->dry_run;
    opt.threads = 2;
    if ((rc = ingest_new(&u->camp, &opt, &u->ing, &u->ierr)) != 0) {
        u->ing = NULL;
        up_fail_ingest(u, &u->ierr, rc);
        return;
    }
    up_set_state(u, UP_READING);
    /* Content-Length was checked against the cap before the lookup, so this only fails on a bug. */
    if (http_request_read_body(u->req, &reader, u->ctx->cfg.max_upload_bytes, u) != 0)
        up_fail(u, 500, "cannot read the request body", 0);
}

static void authed_upload(http_request_t *req, int64_t org_id, void *arg)
{
    serve_ctx_t *ctx = arg;
    const char *ct = http_request_header(req, "Content-Type");
    http_form_t q;
    http_form_error_t ferr;
    const char *dry;
    int64_t id;
    char org[24], idb[24];
    const char *p[2] = {idb, org};
    upload_t *u;
    db_t *db;
    char msg[160];

    if (serve_parse_id(http_request_param(req, "id"), &id) != 0) {
        serve_json_error(req, 404, "campaign not found");
        return;
    }
    if (!media_is(ct, "text/csv")) {
        serve_json_error(req, 415, "Content-Type must be text/csv");
        return;
    }
    if (http_form_parse(req->query, strlen(req->query), NULL, req->arena, &q, &ferr) != 0) {
        serve_json_error(req, 400, "malformed query string");
        return;
    }
    dry = http_form_get(&q, "dry_run");
    if (dry && strcmp(dry, "1") != 0 && strcmp(dry, "true") != 0 && strcmp(dry, "0") != 0 &&
        strcmp(dry, "false") != 0) {
        serve_json_error(req, 400, "dry_run must be 1, true, 0 or false");
        return;
    }
    if (req->content_length > 0 && (uint64_t)req->content_length > ctx->cfg.max_upload_bytes) {
        snprintf(msg, sizeof(msg),
                 "the upload is larger than %llu bytes (HERALD_MAX_UPLOAD_BYTES): nothing queued",
                 (unsigned long long)ctx->cfg.max_upload_bytes);
        row_error(req, 413, msg, 0);
        return;
    }
    if (bc.uploads >= ctx->cfg.max_uploads) {
        static const char *const retry[] = {"Retry-After: 5", NULL};
        static const char body[] = "{\"error\":\"too many uploads in progress; retry later\"}";
        http_respond(req, 503, "application/json", retry, body, sizeof(body) - 1);
        return;
    }
    db = serve_db(ctx);
    if (!db) {
        serve_json_error(req, 503, "database unavailable");
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    u = xcalloc(1, sizeof(*u));
    u->state = UP_LOOKUP;
    u->ctx = ctx;
    u->req = req;
    u->campaign_id = id;
    u->dry_run = dry && (strcmp(dry, "1") == 0 || strcmp(dry, "true") == 0);
    bc.uploads++;
    if (db_query(db, INGEST_CAMPAIGN_SQL, 2, p, on_up_campaign, u) != 0)
        up_fail(u, 503, "database unavailable", 0);
}

/* ---- routes ---- */

static void on_get(http_request_t *req, void *arg)
{
    serve_auth(arg, req, authed_get, arg);
}

static void on_create(http_request_t *req, void *arg)
{
    serve_auth(arg, req, authed_create, arg);
}

static void on_rejects(http_request_t *req, void *arg)
{
    serve_auth(arg, req, authed_rejects, arg);
}

static void on_upload(http_request_t *req, void *arg)
{
    serve_auth(arg, req, authed_upload, arg);
}

static double gauge_uploads(void *arg)
{
    (void)arg;
    return (double)bc.uploads;
}

int api_broadcast_attach(serve_ctx_t *ctx)
{
    bc.ctx = ctx;
    if (metrics_gauge_fn(ctx->metrics, "herald_api_uploads_active", "CSV uploads in progress over HTTP.", "",
                         gauge_uploads, NULL) != 0)
        return -1;
    if (http_router_add(ctx->router, "POST", "/broadcast/campaigns", on_create, ctx) != 0 ||
        http_router_add(ctx->router, "GET", "/broadcast/campaigns/{id}", on_get, ctx) != 0 ||
        http_router_add_stream(ctx->router, "POST", "/broadcast/campaigns/{id}/recipients", on_upload, ctx) !=
            0 ||
        http_router_add(ctx->router, "GET", "/broadcast/campaigns/{id}/rejects", on_rejects, ctx) != 0)
        return -1;
    return 0;
}
