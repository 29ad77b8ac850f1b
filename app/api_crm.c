/*
 * The CRM inbox over HTTP (/crm/inbox/...): list conversations with filters and
 * keyset pagination, read a conversation's messages, reply as an agent (through
 * compliance: suppression, UTF-8, segments, the 1600-character cap; queued for the
 * scheduler), mark read, close and reopen. Every route authenticates its API key
 * first and every statement is scoped by the key's org: another org's conversation
 * is a 404, exactly like one that does not exist, so ids reveal nothing.
 */
#include "app/serve.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "compliance/segments.h"
#include "http/cursor.h"
#include "http/form.h"
#include "storage/inbox.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum crm_op {
    CRM_LIST,
    CRM_GET,
    CRM_MESSAGES,
    CRM_REPLY,
    CRM_READ,
    CRM_CLOSE,
    CRM_REOPEN,
} crm_op_t;

typedef struct crm_route {
    serve_ctx_t *ctx;
    crm_op_t op;
} crm_route_t;

typedef struct crm_req {
    serve_ctx_t *ctx;
    http_request_t *req;
    crm_op_t op;
    int64_t org_id;
    int64_t conv_id;
    int exists;
    inbox_stmt_t st;
    int have_st;
    sms_info_t info;
} crm_req_t;

static crm_route_t routes[7];

/* The conversation list, prepared on every pooled connection (inbox_sql_conversations). */
static const char list_stmt[] = "crm_conversations";

static void crm_free(crm_req_t *c)
{
    if (c->have_st)
        inbox_stmt_close(&c->st);
    free(c);
}

static void cursor_fn(int64_t key, int64_t id, char out[64])
{
    http_cursor_encode(key, id, out);
}

static void respond_json(http_request_t *req, int status, const char *body)
{
    http_respond(req, status, "application/json", NULL, body, strlen(body));
}

#define CRM_JSON_MAX (64u << 20) /* the largest answer written (a page, or one conversation) */

/* Answers 200 with the JSON written into out, or 500 when writing it failed (rc). */
static void respond_written(crm_req_t *c, int rc, const buf_t *out)
{
    if (rc == BUF_ETOOBIG) {
        serve_json_error(c->req, 500, "response too large");
    } else if (rc != 0) {
        log_error("crm: a conversation's columns cannot be written as JSON (%d)", rc);
        serve_json_error(c->req, 500, "internal error");
    } else {
        http_respond(c->req, 200, "application/json", NULL, buf_str(out), out->len);
    }
}

static void on_page(db_t *db, const PGresult *res, const char *err, void *arg)
{
    crm_req_t *c = arg;
    buf_t out;

    serve_db_report(c->ctx, db, res, err);
    if (err) {
        log_error("crm: query failed: %s", err);
        serve_json_error(c->req, 503, "database unavailable");
    } else if (c->op == CRM_MESSAGES && !c->exists) {
        serve_json_error(c->req, 404, "conversation not found");
    } else {
        buf_init(&out, CRM_JSON_MAX);
        respond_written(c, inbox_page_json(res, &c->st, cursor_fn, &out), &out);
        buf_close(&out);
    }
    crm_free(c);
}

static void on_exists(db_t *db, const PGresult *res, const char *err, void *arg)
{
    crm_req_t *c = arg;
    serve_db_report(c->ctx, db, res, err);
    c->exists = !err && PQntuples(res) == 1;
}

/* Single-row answers: the conversation's JSON, or 404. */
static void on_row(db_t *db, const PGresult *res, const char *err, void *arg)
{
    crm_req_t *c = arg;
    buf_t out;

    serve_db_report(c->ctx, db, res, err);
    if (err) {
        log_error("crm: query failed: %s", err);
        serve_json_error(c->req, 503, "database unavailable");
    } else if (PQntuples(res) != 1) {
        serve_json_error(c->req, 404, "conversation not found");
    } else {
        buf_init(&out, CRM_JSON_MAX);
        respond_written(c, inbox_conversation_json_row(res, 0, 0, &out), &out);
        buf_close(&out);
    }
    crm_free(c);
}

static void on_reply(db_t *db, const PGresult *res, const char *err, void *arg)
{
    crm_req_t *c = arg;
    char body[256];

    serve_db_report(c->ctx, db, res, err);
    if (err) {
        log_error("crm: reply failed: %s", err);
        serve_json_error(c->req, 503, "database unavailable");
    } else if (PQntuples(res) != 1) {
        serve_json_error(c->req, 404, "conversation not found");
    } else if (strcmp(PQgetvalue(res, 0, 0), "suppressed") == 0) {
        respond_json(c->req, 409, "{\"error\":\"the contact has opted out\",\"reason\":\"suppressed\"}");
    } else {
        snprintf(body, sizeof(body),
                 "{\"status\":\"queued\",\"outbox_id\":%s,\"message_id\":%s,\"segments\":%u,\"encoding\":\"%s\"}",
                 PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), c->info.segments,
                 sms_encoding_name(c->info.encoding));
        respond_json(c->req, 201, body);
    }
    crm_free(c);
}

static int parse_list_filter(crm_req_t *c, inbox_filter_t *f, const char **why)
{
    http_form_t q;
    http_form_error_t ferr;
    const char *v;

    memset(f, 0, sizeof(*f));
    f->org_id = c->org_id;
    if (http_form_parse(c->req->query, strlen(c->req->query), NULL, c->req->arena, &q, &ferr) != 0) {
        *why = "malformed query string";
        return -1;
    }
    f->status = http_form_get(&q, "status");
    f->tag = http_form_get(&q, "tag");
    f->number = http_form_get(&q, "number");
    f->q = http_form_get(&q, "q");
    if (f->q && !*f->q)
        f->q = NULL;
    v = http_form_get(&q, "unread");
    f->unread = v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
    v = http_form_get(&q, "limit");
    if (v) {
        int64_t n;
        if (serve_parse_id(v, &n) != 0 || n > INBOX_LIMIT_MAX) {
            *why = "limit must be 1..200";
            return -1;
        }
        f->limit = (size_t)n;
    }
    v = http_form_get(&q, "cursor");
    if (v && *v) {
        if (http_cursor_decode(v, &f->after_key, &f->after_id) != 0) {
            *why = "invalid cursor";
            return -1;
        }
        f->has_after = 1;
    }
    return 0;
}

static void authed(http_request_t *req, int64_t org_id, void *arg)
{
    crm_route_t *rt = arg;
    crm_req_t *c = xcalloc(1, sizeof(*c));
    const char *why = NULL;
    char org[24], conv[24];
    const char *p[3] = {org, conv, NULL};
    db_t *db;
    int rc = 0;

    c->ctx = rt->ctx;
    c->req = req;
    c->op = rt->op;
    c->org_id = org_id;
    if (rt->op != CRM_LIST && serve_parse_id(http_request_param(req, "id"), &c->conv_id) != 0) {
        serve_json_error(req, 404, "conversation not found");
        crm_free(c);
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    snprintf(conv, sizeof(conv), "%" PRId64, c->conv_id);

    if (rt->op == CRM_LIST) {
        inbox_filter_t f;
        if (parse_list_filter(c, &f, &why) != 0 || inbox_conversations_stmt(&f, &c->st, &why) != 0) {
            serve_json_error(req, 400, why);
            crm_free(c);
            return;
        }
        c->have_st = 1;
    } else if (rt->op == CRM_MESSAGES) {
        http_form_t q;
        http_form_error_t ferr;
        const char *v;
        int64_t limit = INBOX_LIMIT_DEFAULT, after_key = 0, after_id = 0;
        if (http_form_parse(req->query, strlen(req->query), NULL, req->arena, &q, &ferr) != 0) {
            serve_json_error(req, 400, "malformed query string");
            crm_free(c);
            return;
        }
        v = http_form_get(&q, "limit");
        if (v && (serve_parse_id(v, &limit) != 0 || limit > INBOX_LIMIT_MAX)) {
            serve_json_error(req, 400, "limit must be 1..200");
            crm_free(c);
            return;
        }
        v = http_form_get(&q, "cursor");
        if (v && *v && http_cursor_decode(v, &after_key, &after_id) != 0) {
            serve_json_error(req, 400, "invalid cursor");
            crm_free(c);
            return;
        }
        inbox_messages_stmt(org_id, c->conv_id, after_id, (size_t)limit, &c->st);
        c->have_st = 1;
    } else if (rt->op == CRM_REPLY) {
        json_error_t jerr;
        json_t *doc = json_loadb(req->body, req->body_len, 0, &jerr);
        const char *text = json_string_value(json_object_get(doc, "body"));
        size_t len = text ? json_string_length(json_object_get(doc, "body")) : 0;
        if (!text || len == 0 || strlen(text) != len) {
            why = "expected JSON {\"body\": \"non-empty text\"}";
        } else if (sms_analyze(text, len, 0, &c->info) != 0) {
            why = "body is not valid UTF-8";
        } else if (c->info.over_limit) {
            why = "body exceeds 1600 characters";
        }
        if (why) {
            json_decref(doc);
            serve_json_error(req, 400, why);
            crm_free(c);
            return;
        }
        {
            char segs[16];
            const char *rp[7] = {org, conv, text, segs, sms_encoding_name(c->info.encoding), "reply", "agent"};
            snprintf(segs, sizeof(segs), "%u", c->info.segments);
            db = serve_db(c->ctx);
            rc = db ? db_exec_prepared(db, "wh_queue_reply", 7, rp, on_reply, c) : -1;
        }
        json_decref(doc);
        if (rc != 0 || !db) {
            serve_json_error(req, 503, "database unavailable");
            crm_free(c);
        }
        return;
    }

    db = serve_db(c->ctx);
    if (!db) {
        serve_json_error(req, 503, "database unavailable");
        crm_free(c);
        return;
    }
    switch (rt->op) {
    case CRM_LIST:
        /* The filter has no display columns, so st's SQL is the prepared statement's. */
        rc = db_exec_prepared(db, list_stmt, c->st.nparams, c->st.params, on_page, c);
        break;
    case CRM_MESSAGES:
        /* Both run on one connection, so on_exists has run when on_page does. */
        rc = db_query(db, inbox_sql_conversation_exists, 2, p, on_exists, c);
        if (rc == 0)
            rc = db_query(db, buf_str(&c->st.sql), c->st.nparams, c->st.params, on_page, c);
        break;
    case CRM_GET:
        rc = db_query(db, inbox_sql_conversation, 2, p, on_row, c);
        break;
    case CRM_READ:
        rc = db_query(db, inbox_sql_mark_read, 2, p, on_row, c);
        break;
    case CRM_CLOSE:
    case CRM_REOPEN:
        p[2] = rt->op == CRM_CLOSE ? "closed" : "open";
        rc = db_query(db, inbox_sql_set_status, 3, p, on_row, c);
        break;
    default:
        break;
    }
    if (rc != 0) {
        serve_json_error(req, 503, "database unavailable");
        crm_free(c);
    }
}

static void on_crm(http_request_t *req, void *arg)
{
    crm_route_t *rt = arg;
    serve_auth(rt->ctx, req, authed, rt);
}

int api_crm_attach(serve_ctx_t *ctx)
{
    static const struct {
        const char *method, *pattern;
        crm_op_t op;
    } table[] = {
        {"GET", "/crm/inbox/conversations", CRM_LIST},
        {"GET", "/crm/inbox/conversations/{id}", CRM_GET},
        {"GET", "/crm/inbox/conversations/{id}/messages", CRM_MESSAGES},
        {"POST", "/crm/inbox/conversations/{id}/messages", CRM_REPLY},
        {"POST", "/crm/inbox/conversations/{id}/read", CRM_READ},
        {"POST", "/crm/inbox/conversations/{id}/close", CRM_CLOSE},
        {"POST", "/crm/inbox/conversations/{id}/reopen", CRM_REOPEN},
    };

    serve_db_statement(ctx, list_stmt, inbox_sql_conversations);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        routes[i].ctx = ctx;
        routes[i].op = table[i].op;
        if (http_router_add(ctx->router, table[i].method, table[i].pattern, on_crm, &routes[i]) != 0)
            return -1;
    }
    return 0;
}
