/*
 * The broadcast API owned by serve (issue 4): GET /broadcast/campaigns/{id} answers
 * the campaign and its outbox counts by state, for the key's org only (404 for
 * another org's campaign). Campaign creation and CSV upload over HTTP wait for the
 * ingest module's API; the control endpoints belong to the scheduler.
 */
#include "app/serve.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bc_req {
    serve_ctx_t *ctx;
    http_request_t *req;
} bc_req_t;

static const char campaign_sql[] =
    "SELECT json_build_object('id', c.id, 'name', c.name, 'status', c.status, 'body', c.body,"
    " 'from', c.from_number, 'messaging_service_sid', c.messaging_service_sid, 'rate_mps', c.rate_mps,"
    " 'start_at', c.start_at, 'cron', c.cron, 'timezone', c.timezone, 'created_at', c.created_at,"
    " 'counts', coalesce((SELECT json_object_agg(state, n) FROM (SELECT state, count(*) AS n FROM outbox o"
    "   WHERE o.campaign_id = c.id GROUP BY state) s), '{}'))::text"
    " FROM campaigns c WHERE c.org_id = $1 AND c.id = $2";

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
    const char *id = http_request_param(req, "id");
    char org[24];
    const char *p[2] = {org, id};
    bc_req_t *b;
    db_t *db;

    if (!id || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18) {
        serve_json_error(req, 404, "campaign not found");
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, org_id);
    db = serve_db(ctx);
    b = xcalloc(1, sizeof(*b));
    b->ctx = ctx;
    b->req = req;
    if (!db || db_query(db, campaign_sql, 2, p, on_campaign, b) != 0) {
        free(b);
        serve_json_error(req, 503, "database unavailable");
    }
}

static void on_get(http_request_t *req, void *arg)
{
    serve_auth(arg, req, authed_get, arg);
}

int api_broadcast_attach(serve_ctx_t *ctx)
{
    return http_router_add(ctx->router, "GET", "/broadcast/campaigns/{id}", on_get, ctx);
}
