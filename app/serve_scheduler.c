/*
 * The scheduler inside `herald serve`: runs the dispatcher and cron on the serve
 * loop, and adds the routes that belong to it:
 *   POST /connect/webhook/twilio/status            message status callbacks
 *   POST /broadcast/campaigns/{id}/start|pause|resume|cancel   campaign control
 * Status callbacks are signed by Twilio with the auth token of the org owning the
 * message (or TWILIO_AUTH_TOKEN), over HERALD_PUBLIC_URL + the request target; the
 * update is idempotent and the outbox trigger keeps state from moving backwards.
 * Control answers after the compare-and-set committed and pokes the dispatcher, so
 * the change takes effect at once in this process and within half a second in others.
 */
#include "app/org_creds.h"
#include "app/serve.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/form.h"
#include "provider/signature.h"
#include "scheduler/scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_MAX_FIELDS 64
#define STATUS_MAX_FIELD_LEN 1024

typedef struct serve_sched {
    serve_ctx_t *ctx;
    sched_t *sched;
    metrics_counter_t *m_cb_ok, *m_cb_bad, *m_cb_forbidden, *m_cb_unknown, *m_ctl;
    void (*done)(void *);
    void *done_arg;
} serve_sched_t;

/* ---- status callbacks ---- */

typedef struct status_req {
    serve_sched_t *ss;
    http_request_t *req;
    http_form_t *form;
    const char *sid, *state, *outbox_id;
    char code[16];
} status_req_t;

static void status_finish(status_req_t *r, int status, metrics_counter_t *m)
{
    metrics_counter_add(m, 1);
    http_respond(r->req, status, "text/plain", NULL, "", 0);
    free(r);
}

static void on_status_updated(db_t *db, const PGresult *res, const char *err, void *arg)
{
    status_req_t *r = arg;

    serve_db_report(r->ss->ctx, db, res, err);
    if (err) {
        log_error("status callback %s: update failed: %s", r->sid, err);
        status_finish(r, 503, r->ss->m_cb_bad);
        return;
    }
    log_debug("status callback %s: %s (%s)", r->sid, r->state, PQntuples(res) ? "applied" : "stale or unknown");
    status_finish(r, 200, r->ss->m_cb_ok);
}

static void status_update(status_req_t *r)
{
    const char *p[4] = {r->outbox_id, r->sid, r->state, r->code[0] ? r->code : NULL};
    db_t *db = serve_db(r->ss->ctx);

    if (!db || db_query(db, sched_sql_status_update, 4, p, on_status_updated, r) != 0)
        status_finish(r, 503, r->ss->m_cb_bad);
}

/* The org's auth token from its sealed column, else TWILIO_AUTH_TOKEN; "" when neither. */
static void org_token(const serve_config_t *cfg, const PGresult *res, char *token, size_t len)
{
    token[0] = '\0';
    if (!PQgetisnull(res, 0, 1) &&
        org_secret_open(cfg->have_master_key ? cfg->master_key : NULL, PQgetvalue(res, 0, 1), token, len) != 0)
        log_error("status callback: org %s: stored auth token cannot be decrypted (HERALD_MASTER_KEY?)",
                  PQgetvalue(res, 0, 0));
    if (!token[0])
        snprintf(token, len, "%s", cfg->env_auth_token);
}

static void on_status_org(db_t *db, const PGresult *res, const char *err, void *arg)
{
    status_req_t *r = arg;
    const serve_config_t *cfg = &r->ss->ctx->cfg;
    char token[256], url[4096];
    twilio_param_t *params;
    int rc;

    serve_db_report(r->ss->ctx, db, res, err);
    if (err) {
        status_finish(r, 503, r->ss->m_cb_bad);
        return;
    }
    if (PQntuples(res) != 1) {
        /* Not ours (or deleted): answer 200 so Twilio does not retry forever. */
        status_finish(r, 200, r->ss->m_cb_unknown);
        return;
    }
    org_token(cfg, res, token, sizeof(token));
    if (!token[0]) {
        log_error("status callback: no auth token for the org and TWILIO_AUTH_TOKEN is unset: refusing");
        status_finish(r, 403, r->ss->m_cb_forbidden);
        return;
    }
    if (cfg->public_url[0]) {
        snprintf(url, sizeof(url), "%s%s", cfg->public_url, r->req->target);
    } else {
        const char *host = http_request_header(r->req, "Host");
        snprintf(url, sizeof(url), "http://%s%s", host ? host : "localhost", r->req->target);
    }
    params = http_arena_alloc(r->req->arena, (r->form->count ? r->form->count : 1) * sizeof(*params));
    for (size_t i = 0; i < r->form->count; i++) {
        params[i].name = r->form->params[i].name;
        params[i].value = r->form->params[i].value;
    }
    rc = twilio_signature_validate_form(token, url, params, r->form->count,
                                        http_request_header(r->req, "X-Twilio-Signature"));
    memset(token, 0, sizeof(token));
    if (rc != 0) {
        log_warn("status callback %s: signature check failed (%s)", r->sid, twilio_signature_strerror(rc));
        status_finish(r, 403, r->ss->m_cb_forbidden);
        return;
    }
    status_update(r);
}

/* Returns the decimal value of query parameter name in q, copied into the arena, or NULL. */
static const char *query_id(http_request_t *req, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = req->query; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            size_t len = strspn(v, "0123456789");
            char *out;
            if (len == 0 || len > 18 || (v[len] != '\0' && v[len] != '&'))
                return NULL;
            out = http_arena_alloc(req->arena, len + 1);
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return NULL;
}

static void on_status(http_request_t *req, void *arg)
{
    serve_sched_t *ss = arg;
    http_form_limits_t lim = {STATUS_MAX_FIELDS, STATUS_MAX_FIELD_LEN, 1u << 16};
    http_form_t *form = http_arena_alloc(req->arena, sizeof(*form));
    http_form_error_t ferr;
    const char *st, *code;
    status_req_t *r;

    if (http_form_parse(req->body, req->body_len, &lim, req->arena, form, &ferr) != 0) {
        metrics_counter_add(ss->m_cb_bad, 1);
        http_respond(req, 400, "text/plain", NULL, "bad form body\n", 14);
        return;
    }
    r = xcalloc(1, sizeof(*r));
    r->ss = ss;
    r->req = req;
    r->form = form;
    r->sid = http_form_get(form, "MessageSid");
    if (!r->sid)
        r->sid = http_form_get(form, "SmsSid");
    st = http_form_get(form, "MessageStatus");
    if (!st)
        st = http_form_get(form, "SmsStatus");
    r->state = sched_status_to_state(st);
    code = http_form_get(form, "ErrorCode");
    if (code && *code && strspn(code, "0123456789") == strlen(code) && strlen(code) < 10)
        snprintf(r->code, sizeof(r->code), "%s", code);
    r->outbox_id = query_id(req, "o");
    if (!r->sid || !*r->sid || strlen(r->sid) > 64 || !r->state) {
        free(r);
        metrics_counter_add(ss->m_cb_bad, 1);
        http_respond(req, 400, "text/plain", NULL, "MessageSid and a known MessageStatus are required\n", 50);
        return;
    }
    if (ss->ctx->cfg.webhook_insecure) {
        status_update(r);
        return;
    }
    if (!http_request_header(req, "X-Twilio-Signature")) {
        free(r);
        metrics_counter_add(ss->m_cb_forbidden, 1);
        http_respond(req, 403, "text/plain", NULL, "missing X-Twilio-Signature\n", 27);
        return;
    }
    {
        const char *p[2] = {r->outbox_id, r->sid};
        db_t *db = serve_db(ss->ctx);
        if (!db || db_query(db, sched_sql_status_org, 2, p, on_status_org, r) != 0)
            status_finish(r, 503, ss->m_cb_bad);
    }
}

/* ---- campaign control ---- */

typedef struct ctl_req {
    serve_sched_t *ss;
    http_request_t *req;
    sched_verb_t verb;
    char org[24], id[24];
    char from[24], to[24];
    int tries;
} ctl_req_t;

static void ctl_get(ctl_req_t *c);

static void ctl_fail(ctl_req_t *c, int status, const char *msg)
{
    serve_json_error(c->req, status, msg);
    free(c);
}

static void on_ctl_set(db_t *db, const PGresult *res, const char *err, void *arg)
{
    ctl_req_t *c = arg;
    char body[160];

    serve_db_report(c->ss->ctx, db, res, err);
    if (err) {
        ctl_fail(c, 503, "database unavailable");
        return;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        if (++c->tries < 3) {
            ctl_get(c);
            return;
        }
        ctl_fail(c, 409, "campaign status keeps changing; try again");
        return;
    }
    log_info("campaign %s: %s -> %s (api)", c->id, c->from, c->to);
    metrics_counter_add(c->ss->m_ctl, 1);
    sched_poke(c->ss->sched);
    snprintf(body, sizeof(body), "{\"id\":%s,\"status\":\"%s\",\"previous\":\"%s\"}", c->id, c->to, c->from);
    http_respond(c->req, 200, "application/json", NULL, body, strlen(body));
    free(c);
}

static void on_ctl_get(db_t *db, const PGresult *res, const char *err, void *arg)
{
    ctl_req_t *c = arg;
    sched_campaign_status_t to;
    int64_t next_run;
    char why[160], next_s[24];
    db_t *db2;

    serve_db_report(c->ss->ctx, db, res, err);
    if (err) {
        ctl_fail(c, 503, "database unavailable");
        return;
    }
    if (PQntuples(res) != 1) {
        ctl_fail(c, 404, "campaign not found");
        return;
    }
    if (sched_control_plan(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                           PQgetvalue(res, 0, 3)[0] == 't', c->verb, (int64_t)time(NULL), &to, &next_run, why,
                           sizeof(why)) != 0) {
        ctl_fail(c, 409, why);
        return;
    }
    snprintf(c->from, sizeof(c->from), "%s", PQgetvalue(res, 0, 0));
    snprintf(c->to, sizeof(c->to), "%s", sched_campaign_status_name(to));
    snprintf(next_s, sizeof(next_s), "%" PRId64, next_run);
    {
        const char *p[5] = {c->org, c->id, c->from, c->to, next_run ? next_s : ""};
        db2 = serve_db(c->ss->ctx);
        if (!db2 || db_query(db2, sched_sql_campaign_set, 5, p, on_ctl_set, c) != 0)
            ctl_fail(c, 503, "database unavailable");
    }
}

static void ctl_get(ctl_req_t *c)
{
    const char *p[2] = {c->org, c->id};
    db_t *db = serve_db(c->ss->ctx);

    if (!db || db_query(db, sched_sql_campaign_get, 2, p, on_ctl_get, c) != 0)
        ctl_fail(c, 503, "database unavailable");
}

static void ctl_authed(http_request_t *req, int64_t org_id, void *arg)
{
    serve_sched_t *ss = arg;
    const char *id = http_request_param(req, "id");
    const char *path = req->path;
    const char *slash = NULL;
    ctl_req_t *c;
    char verb[16];

    for (size_t i = 0; i < req->path_len; i++)
        if (path[i] == '/')
            slash = path + i;
    if (!slash || (size_t)(path + req->path_len - slash - 1) >= sizeof(verb)) {
        serve_json_error(req, 404, "not found");
        return;
    }
    memcpy(verb, slash + 1, (size_t)(path + req->path_len - slash - 1));
    verb[path + req->path_len - slash - 1] = '\0';
    if (!id || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18 || atoll(id) <= 0) {
        serve_json_error(req, 404, "campaign not found");
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->ss = ss;
    c->req = req;
    c->verb = sched_verb_parse(verb);
    snprintf(c->org, sizeof(c->org), "%" PRId64, org_id);
    snprintf(c->id, sizeof(c->id), "%s", id);
    ctl_get(c);
}

static void on_control(http_request_t *req, void *arg)
{
    serve_sched_t *ss = arg;
    serve_auth(ss->ctx, req, ctl_authed, ss);
}

/* ---- attach / detach ---- */

int serve_scheduler_attach(serve_ctx_t *ctx)
{
    /*
     * One per process and never freed: requests already routed here may still finish
     * after detach (serve drains them), and they only need the counters and ctx.
     */
    static serve_sched_t instance;
    serve_sched_t *ss = &instance;
    static const char cb_help[] = "Message status callbacks by outcome.";
    static const char *const verbs[] = {"start", "pause", "resume", "cancel"};
    sched_config_t cfg;
    int rc;

    ss->ctx = ctx;
    ctx->scheduler = ss;
    ss->m_cb_ok = metrics_counter(ctx->metrics, "herald_status_callbacks_total", cb_help, "outcome=\"applied\"");
    ss->m_cb_bad = metrics_counter(ctx->metrics, "herald_status_callbacks_total", cb_help, "outcome=\"bad_request\"");
    ss->m_cb_forbidden = metrics_counter(ctx->metrics, "herald_status_callbacks_total", cb_help, "outcome=\"forbidden\"");
    ss->m_cb_unknown = metrics_counter(ctx->metrics, "herald_status_callbacks_total", cb_help, "outcome=\"unknown\"");
    ss->m_ctl = metrics_counter(ctx->metrics, "herald_campaign_control_total", "Campaign control changes via the API.", "");

    sched_config_init(&cfg);
    org_creds_sched_config(&cfg, ctx->cfg.have_master_key ? ctx->cfg.master_key : NULL);
    cfg.conninfo = ctx->cfg.conninfo;
    cfg.public_url = ctx->cfg.public_url[0] ? ctx->cfg.public_url : NULL;
    cfg.metrics = ctx->metrics;
    if (!cfg.twilio.account_sid || !*cfg.twilio.account_sid) {
        log_warn("scheduler: TWILIO_ACCOUNT_SID is unset: nothing will be sent (status callbacks and control work)");
    } else if ((rc = sched_start(ctx->loop, &cfg, &ss->sched)) != 0) {
        log_error("scheduler: cannot start (Twilio configuration unusable)");
        return rc;
    }
    rc = http_router_add(ctx->router, "POST", TWILIO_STATUS_CALLBACK_PATH, on_status, ss);
    for (size_t i = 0; rc == 0 && i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        char pattern[64];
        snprintf(pattern, sizeof(pattern), "/broadcast/campaigns/{id}/%s", verbs[i]);
        rc = http_router_add(ctx->router, "POST", pattern, on_control, ss);
    }
    return rc;
}

static void on_sched_stopped(void *arg)
{
    serve_sched_t *ss = arg;
    void (*done)(void *) = ss->done;
    void *done_arg = ss->done_arg;

    ss->done = NULL;
    if (done)
        done(done_arg);
}

void serve_scheduler_detach(serve_ctx_t *ctx, void (*done)(void *arg), void *arg)
{
    serve_sched_t *ss = ctx->scheduler;

    if (!ss) {
        if (done)
            done(arg);
        return;
    }
    ss->done = done;
    ss->done_arg = arg;
    if (ss->sched) {
        sched_stop(ss->sched, on_sched_stopped, ss);
        ss->sched = NULL;
        return;
    }
    on_sched_stopped(ss);
}
