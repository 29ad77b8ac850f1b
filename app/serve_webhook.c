/*
 * POST /connect/webhook/twilio/sms: Twilio's inbound-message webhook.
 *
 * One request goes through one state machine (wh_set_state):
 *   CONTEXT  one prepared query (herald_inbound_context) finds the org by the To
 *            number (or AccountSid), its auth token, a previous message with this
 *            MessageSid, the form in progress, the contact's tags and attributes
 *            and the live rule-set version;
 *   (check the X-Twilio-Signature with the org's token: 403 / 400)
 *   RULES    only when the registry holds another version than the database: load
 *            and compile the rule set, swap it in;
 *   APPLY    evaluate (pure) and write the message and every action in one statement
 *            (herald_inbound_apply), so one transaction, before answering TwiML;
 *   REREAD   a concurrent retry won the MessageSid race: read the TwiML it answered.
 * Batching: under load the CONTEXT and APPLY steps of many requests share one
 * statement each. Requests parsed during one loop iteration are queued and sent, at
 * the end of that iteration (a uv_check handle) or when an earlier batch completes,
 * as one herald_inbound_context_batch() call; documents ready to apply are queued the
 * same way and written by one herald_inbound_apply_batch() call, so one transaction,
 * when their actions are the common ones (TwiML reply, add-tag, create-lead, plain
 * events) and no two share a From number. At most one batch of each kind per pooled
 * connection is in flight, so batches grow with the load and a lone request goes out
 * at once. A batch of a kind that could go while another is in flight waits until
 * HERALD_WEBHOOK_BATCH_GAP_US (2 ms) after the previous one went out, or until half a
 * batch is queued (hold_batch()): at 2,000 requests/s it made batches of 2.5 instead
 * of 2.0 and cut Postgres's CPU per request by 15% (each batched statement has a
 * large fixed cost). A batch that fails for a reason of its own (a duplicate MessageSid, a
 * deadlock) is applied again document by document (herald_inbound_apply), each in its
 * own transaction, which gives exactly the single-request outcome.
 * Any database failure answers 503 so that Twilio retries; nothing answers 200
 * unless the message is committed. Actions that call out (go-to-flow, ai-assistant,
 * trigger-automation) are recorded in that transaction as events ("status": "pending")
 * and performed after the commit by jobs (job_*), which record their outcome as a
 * further event and set the pending one "done" in one statement. A call left pending
 * (a crash, SIGTERM during a backoff, too many in flight) is claimed by a later sweep
 * (on_sweep, migration 017) of this or another process once its lease has run out.
 */
#include "app/org_creds.h"
#include "app/serve.h"
#include "common/crypto.h"
#include "common/jsonw.h"
#include "common/utf8.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "compliance/segments.h"
#include "http/form.h"
#include "http/twiml.h"
#include "provider/signature.h"
#include "routing/routing.h"
#include "routing/secrets.h"
#include "storage/inbox.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WH_MAX_FIELDS 200
#define WH_MAX_FIELD_LEN (16 * 1024)
#define WH_MAX_MEDIA 10
#define WH_TWIML_MAX (64 * 1024)
#define JOB_MAX_ATTEMPTS 4
#define JOB_BACKOFF_MS 500
#define JOB_DEFAULT_AI_TIMEOUT_MS 10000
#define JOB_MAX_PENDING 10000
#define WH_BATCH_MAX 64 /* requests per batched statement */
#define WH_TOKEN_CACHE 16 /* orgs whose opened auth token is kept */
#define WH_RELEASE_WAIT_MS 2000 /* on a stop, how long the leases' release may take */
#define WH_SCRATCH_KEEP (256 * 1024) /* a scratch buffer larger than this is freed after use */

typedef enum wh_state {
    WH_CONTEXT,
    WH_RULES,
    WH_APPLY,
    WH_REREAD,
    WH_DONE,
} wh_state_t;

typedef struct webhook {
    serve_ctx_t *ctx;
    routing_registry_t *registry;
    routing_decision_t decision;
    int closing;
    uv_timer_t sweep_timer; /* looks for pending calls to make again (017); on a stop, the release's guard */
    int sweeping;           /* a claim is in flight */
    void (*detached)(void *arg); /* serve_webhook_detach()'s callback while the release runs */
    void *detached_arg;
    buf_t rel_msgs, rel_events; /* what the release takes: message and event ids ("{1,2}") */
    size_t n_released;
    struct job *jobs; /* pending post-commit jobs */
    size_t n_jobs;
    metrics_counter_t *m_ok, *m_dup, *m_bad, *m_forbidden, *m_unknown, *m_unavailable;
    metrics_counter_t *m_jobs_ok, *m_jobs_failed;
    metrics_histogram_t *m_latency;
    metrics_counter_t *m_batches, *m_batch_retries;
    /* Batching (see the top of the file): the context reads and the writes. */
    struct wh_queue {
        struct wh_req *head, *tail; /* FIFO */
        size_t inflight;            /* batches */
        uint64_t sent_ns;           /* uv_hrtime() when the last batch went out */
        int held;                   /* the next batch is being held back (hold_batch()) */
        uv_timer_t timer;           /* hold_batch()'s backstop */
    } ctxq, appq;
    uv_check_t flush_check;
    metrics_counter_t *m_paced;
    /*
     * Auth tokens already opened, by their sealed text (auth_token_enc as the context
     * row gives it): opening one (PQunescapeBytea and AES-256-GCM) was a tenth of the
     * webhook's CPU. The same sealed text under the same master key always opens to
     * the same token, so a changed token is simply another entry. Round-robin.
     */
    struct wh_token {
        char *sealed;
        char token[256];
    } tokens[WH_TOKEN_CACHE];
    size_t token_next;
    /*
     * Scratch buffers lent to one document or batch at a time (scratch_take/give), so
     * that writing them does not grow a fresh allocation step by step every time.
     */
    buf_t s_twiml, s_text, s_reply, s_doc, s_arr[4], s_batch;
} webhook_t;

typedef struct wh_req {
    webhook_t *wh;
    http_request_t *req;
    wh_state_t state;
    uint64_t t0;
    const http_form_t *form; /* request arena; the signature check needs every field */
    const char *signature;   /* X-Twilio-Signature (request memory) */
    const char *to, *from, *sid, *account;
    buf_t body;  /* the Body, invalid UTF-8 replaced */
    json_t *media; /* [{"url","content_type"}], NULL for none */
    /* From the context row (copied). */
    int64_t org_id;
    char *help_text, *opt_out_text, *opt_in_text;
    char *form_state, *contact_tags, *contact_attrs;
    int suppressed;
    int rules_version; /* -1: no active set */
    char *twiml;       /* the answer being given */
    json_t *async;     /* async actions, in order: [{"type", ...}]; NULL for none */
    char *doc;         /* the herald_inbound_apply() document */
    size_t doc_len;
    struct wh_req *qnext; /* in a batching queue */
} wh_req_t;

/* One batched statement in flight; reqs[] are owned by the batch until its callback. */
typedef struct wh_batch {
    webhook_t *wh;
    size_t n;
    wh_req_t *reqs[WH_BATCH_MAX];
} wh_batch_t;

static const char *const wh_state_names[] = {"context", "rules", "apply", "reread", "done"};

static void wh_set_state(wh_req_t *r, wh_state_t to)
{
    log_debug("webhook %s: %s -> %s", r->sid ? r->sid : "?", wh_state_names[r->state], wh_state_names[to]);
    r->state = to;
}

/* Lends a scratch buffer (empty, with its limit); give it back with scratch_give(). */
static buf_t scratch_take(buf_t *s)
{
    buf_t b = *s;
    buf_init(s, b.limit);
    return b;
}

static void scratch_give(buf_t *s, buf_t *b)
{
    if (b->cap > WH_SCRATCH_KEEP)
        buf_close(b);
    else
        buf_reset(b);
    buf_close(s);
    *s = *b;
}

static const char ctx_sql[] = "SELECT org_id, auth_token_enc, help_text, opt_out_text, opt_in_text, dup_message_id,"
                              " dup_twiml, form_state::text, contact_tags::text, contact_attrs::text, suppressed,"
                              " rules_version FROM herald_inbound_context($1, $2, $3, $4)";
static const char rules_sql[] =
    "SELECT version, document::text FROM rule_sets WHERE org_id = $1 AND number = $2 AND active";
static const char ctx_batch_sql[] =
    "SELECT idx, org_id, auth_token_enc, help_text, opt_out_text, opt_in_text, dup_message_id, dup_twiml,"
    " form_state::text, contact_tags::text, contact_attrs::text, suppressed, rules_version"
    " FROM herald_inbound_context_batch($1::text[], $2::text[], $3::text[], $4::text[])";
static const char apply_sql[] = "SELECT herald_inbound_apply($1::jsonb)::text";
static const char apply_batch_sql[] = "SELECT herald_inbound_apply_batch($1::jsonb)::text";
/*
 * A call's outcome: a new event, and its pending event (017) set to "done" in the same
 * statement. Nothing is written when no pending event is left (another process recorded
 * the outcome first). After a commit the job knows its message, not its event: the
 * oldest pending event of that message, action and rule is the one.
 */
static const char event_sql[] =
    "WITH done AS (UPDATE conversation_events e SET detail = jsonb_set(e.detail, '{status}', '\"done\"')"
    " WHERE e.id = (SELECT p.id FROM conversation_events p WHERE p.message_id = $3 AND (p.detail->>'status') = 'pending'"
    " AND p.org_id = $1 AND p.action = $5 AND p.rule_name IS NOT DISTINCT FROM $4 AND ($7::bigint IS NULL OR p.id = $7)"
    " ORDER BY p.id LIMIT 1) RETURNING e.id)"
    " INSERT INTO conversation_events (org_id, conversation_id, message_id, rule_name, action, detail)"
    " SELECT $1, $2, $3, $4, $5, $6::jsonb FROM done";

/*
 * On a clean stop (serve_webhook_detach): the pending calls this process leaves unmade
 * get a lease that has already run out, so that the next sweep of any process makes them
 * instead of waiting HERALD_JOB_LEASE_S: those of its commits by message ($1, only events
 * nobody claimed), those it claimed by event ($2).
 */
static const char release_sql[] =
    "UPDATE conversation_events SET detail = detail || jsonb_build_object('lease_until', now() - interval '1 second')"
    " WHERE (detail->>'status') = 'pending'"
    " AND ((message_id = ANY ($1::bigint[]) AND NOT detail ? 'lease_until') OR id = ANY ($2::bigint[]))";

/*
 * The sweep (017): claims pending calls whose lease ran out ($1 s after the event or the
 * last claim), except those of messages this process is calling for ($3), and returns
 * what a call needs: its event, the message, and the signing secret of a
 * trigger-automation that had one, from the live rule set (events never hold secrets):
 * sealed (hex, routing/secrets.h), or "s:" and the secret in a set stored before sealing.
 */
static const char claim_sql[] =
    "UPDATE conversation_events e SET detail = e.detail || jsonb_build_object('lease_until',"
    " now() + $1::int * interval '1 second')"
    " FROM (SELECT p.id FROM conversation_events p WHERE (p.detail->>'status') = 'pending'"
    " AND coalesce((p.detail->>'lease_until')::timestamptz, p.created_at + $1::int * interval '1 second') < now()"
    " AND p.message_id <> ALL ($3::bigint[]) ORDER BY p.id LIMIT $2::int FOR UPDATE OF p SKIP LOCKED) c,"
    " messages m, conversations v"
    " WHERE e.id = c.id AND m.id = e.message_id AND v.id = e.conversation_id"
    " RETURNING e.id, e.org_id, e.conversation_id, e.message_id, e.rule_name, e.action, e.detail::text,"
    " coalesce(m.message_sid, ''), m.body, v.our_number, v.contact_e164,"
    " (e.created_at < now() - interval '1 day')::int,"
    " (SELECT coalesce(a->>'secret_sealed', 's:' || (a->>'secret')) FROM rule_sets rs"
    " CROSS JOIN LATERAL jsonb_array_elements(rs.document->'rules') r"
    " CROSS JOIN LATERAL jsonb_array_elements(r->'actions') a WHERE e.action = 'trigger-automation'"
    " AND rs.org_id = e.org_id AND rs.number = v.our_number AND rs.active AND r->>'name' = e.rule_name"
    " AND a->>'type' = 'trigger-automation' AND a->>'url' = e.detail->>'url' AND a ?| array['secret_sealed', 'secret']"
    " LIMIT 1)";
static const char history_sql[] =
    "SELECT coalesce(json_agg(json_build_object('direction', direction, 'body', body, 'at', created_at)"
    " ORDER BY id), '[]')::text FROM (SELECT id, direction, body, created_at FROM messages"
    " WHERE org_id = $1 AND conversation_id = $2 ORDER BY id DESC LIMIT 20) h";

static void wh_free(wh_req_t *r)
{
    buf_close(&r->body);
    json_decref(r->media);
    json_decref(r->async);
    free(r->help_text);
    free(r->opt_out_text);
    free(r->opt_in_text);
    free(r->form_state);
    free(r->contact_tags);
    free(r->contact_attrs);
    free(r->twiml);
    free(r->doc);
    free(r);
}

static void wh_finish(wh_req_t *r, int status, const char *twiml, metrics_counter_t *outcome)
{
    webhook_t *wh = r->wh;

    wh_set_state(r, WH_DONE);
    metrics_counter_add(outcome, 1);
    metrics_histogram_observe(wh->m_latency, (double)(uv_hrtime() - r->t0) / 1e9);
    if (twiml)
        http_respond(r->req, status, "text/xml", NULL, twiml, strlen(twiml));
    else
        http_respond_status(r->req, status);
    wh_free(r);
}

static void wh_unavailable(wh_req_t *r, const char *why)
{
    log_error("webhook %s: not stored (%s): answering 503 so Twilio retries", r->sid, why);
    wh_finish(r, 503, NULL, r->wh->m_unavailable);
}

static char *dup_value(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

/* ---- post-commit jobs ---- */

typedef enum job_kind { JOB_FLOW, JOB_AI, JOB_AUTOMATION } job_kind_t;

typedef enum job_state {
    JOB_WAITING,  /* timer running (backoff) */
    JOB_HISTORY,  /* ai-assistant: reading the conversation */
    JOB_CALLING,  /* HTTP request in flight */
    JOB_RECORDING, /* writing the outcome */
    JOB_CLOSING,  /* timer closing; freed in its close callback */
} job_state_t;

typedef struct job {
    webhook_t *wh;
    struct job *prev, *next;
    job_kind_t kind;
    job_state_t state;
    uv_timer_t timer;
    int http_pending; /* a request is with the HTTP client (its callback will come) */
    int recorded;     /* the outcome event is written (or given up) */
    int timed_out;
    unsigned attempts;
    unsigned timeout_ms;
    int64_t org_id, conv_id, msg_id;
    int64_t event_id; /* the pending event, when a sweep claimed it; 0 after a commit (found by message) */
    char *rule;
    char *url;
    char *secret;
    char *payload; /* JSON body */
    char *action;  /* action name for the outcome event */
} job_t;

static void job_close(job_t *j);
static void job_call(job_t *j);

static void on_job_timer_closed(uv_handle_t *h)
{
    job_t *j = h->data;
    free(j->rule);
    free(j->url);
    free(j->secret);
    free(j->payload);
    free(j->action);
    free(j);
}

static void job_close(job_t *j)
{
    webhook_t *wh = j->wh;

    if (j->state == JOB_CLOSING)
        return;
    j->state = JOB_CLOSING;
    if (j->prev)
        j->prev->next = j->next;
    else
        wh->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    wh->n_jobs--;
    uv_close((uv_handle_t *)&j->timer, on_job_timer_closed);
}

static void on_job_recorded(db_t *db, const PGresult *res, const char *err, void *arg)
{
    job_t *j = arg;
    serve_db_report(j->wh->ctx, db, res, err);
    if (err)
        log_error("job %s: could not record the outcome: %s", j->action, err);
    j->recorded = 1;
    if (!j->http_pending)
        job_close(j);
}

/* Sends the outcome statement (wh_event) of job j's call; -1 when it could not be sent. */
static int outcome_send(const job_t *j, json_t *detail, db_cb cb, void *arg)
{
    webhook_t *wh = j->wh;
    db_t *db = wh->closing ? NULL : serve_db(wh->ctx);
    char org[24], conv[24], msg[24], ev[24];
    char *d = json_dumps(detail, JSON_COMPACT);
    const char *p[7] = {org, conv, msg, j->rule, j->action, d, j->event_id ? ev : NULL};
    int rc;

    snprintf(org, sizeof(org), "%" PRId64, j->org_id);
    snprintf(conv, sizeof(conv), "%" PRId64, j->conv_id);
    snprintf(msg, sizeof(msg), "%" PRId64, j->msg_id);
    snprintf(ev, sizeof(ev), "%" PRId64, j->event_id);
    rc = !db || !d || db_exec_prepared(db, "wh_event", 7, p, cb, arg) != 0 ? -1 : 0;
    free(d);
    return rc;
}

/* Records the outcome of j's call as an event; j is closed once that is written (or given up). */
static void job_record(job_t *j, json_t *detail, int ok)
{
    metrics_counter_add(ok ? j->wh->m_jobs_ok : j->wh->m_jobs_failed, 1);
    j->state = JOB_RECORDING;
    if (outcome_send(j, detail, on_job_recorded, j) != 0) {
        log_error("job %s: outcome not recorded (database unavailable): a sweep makes the call again", j->action);
        j->recorded = 1;
        if (!j->http_pending)
            job_close(j);
    }
}

static void on_given_up_recorded(db_t *db, const PGresult *res, const char *err, void *arg)
{
    webhook_t *wh = arg;
    serve_db_report(wh->ctx, db, res, err);
    if (err)
        log_error("job sweep: could not record a call given up: %s", err);
}

/* Records the outcome of a claimed call that is not made (j is not in the job list). */
static void job_record_detached(const job_t *j, json_t *detail)
{
    metrics_counter_add(j->wh->m_jobs_failed, 1);
    if (outcome_send(j, detail, on_given_up_recorded, j->wh) != 0)
        log_error("job %s: outcome not recorded (database unavailable)", j->action);
}

static void on_ai_reply_queued(db_t *db, const PGresult *res, const char *err, void *arg)
{
    job_t *j = arg;
    json_t *detail;

    serve_db_report(j->wh->ctx, db, res, err);
    if (err) {
        detail = json_pack("{s:s, s:s}", "status", "failed", "error", "could not queue the answer");
        job_record(j, detail, 0);
    } else {
        const char *outcome = PQntuples(res) ? PQgetvalue(res, 0, 0) : "not found";
        detail = json_pack("{s:s, s:s?}", "status", strcmp(outcome, "queued") == 0 ? "answered" : outcome,
                           "outbox_id", PQntuples(res) && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : NULL);
        job_record(j, detail, 1);
    }
    json_decref(detail);
}

static void job_ai_answer(job_t *j, const char *answer, size_t len)
{
    sms_info_t info;
    char org[24], conv[24], segs[16];
    const char *p[7] = {org, conv, answer, segs, NULL, "auto_reply", "ai-assistant"};
    db_t *db = serve_db(j->wh->ctx);
    json_t *detail;

    if (len == 0 || len > 6400 || sms_analyze(answer, len, 0, &info) != 0 || info.over_limit) {
        detail = json_pack("{s:s, s:s}", "status", "failed", "error", "answer empty, too long or not UTF-8");
        job_record(j, detail, 0);
        json_decref(detail);
        return;
    }
    snprintf(org, sizeof(org), "%" PRId64, j->org_id);
    snprintf(conv, sizeof(conv), "%" PRId64, j->conv_id);
    snprintf(segs, sizeof(segs), "%u", info.segments);
    p[4] = sms_encoding_name(info.encoding);
    j->state = JOB_RECORDING;
    if (!db || db_exec_prepared(db, "wh_queue_reply", 7, p, on_ai_reply_queued, j) != 0) {
        detail = json_pack("{s:s, s:s}", "status", "failed", "error", "database unavailable");
        job_record(j, detail, 0);
        json_decref(detail);
    }
}

static void on_job_retry(uv_timer_t *t)
{
    job_call(t->data);
}

static void on_ai_timeout(uv_timer_t *t)
{
    job_t *j = t->data;
    json_t *detail;

    if (j->state != JOB_CALLING)
        return;
    j->timed_out = 1;
    detail = json_pack("{s:s, s:i}", "status", "timeout", "timeout_ms", (int)j->timeout_ms);
    /* The request's callback still arrives later; it sees timed_out and only closes the job. */
    job_record(j, detail, 0);
    json_decref(detail);
}

static void on_job_response(const http_response_t *resp, void *arg)
{
    job_t *j = arg;
    webhook_t *wh = j->wh;
    int ok = resp->status >= 200 && resp->status < 300;
    int retryable = resp->status == 0 || resp->status == 429 || resp->status >= 500;
    json_t *detail;

    j->http_pending = 0;
    if (j->timed_out) {
        if (j->recorded)
            job_close(j);
        return;
    }
    if (j->kind == JOB_AI)
        uv_timer_stop(&j->timer);
    if (wh->closing) {
        job_close(j);
        return;
    }
    if (ok && j->kind == JOB_AI) {
        json_error_t jerr;
        json_t *doc = json_loadb(resp->body, resp->body_len, 0, &jerr);
        const char *answer = doc ? json_string_value(json_object_get(doc, "reply")) : NULL;
        if (!doc)
            answer = resp->body;
        job_ai_answer(j, answer ? answer : "", answer ? strlen(answer) : 0);
        json_decref(doc);
        return;
    }
    if (!ok && retryable && j->kind == JOB_AUTOMATION && j->attempts < JOB_MAX_ATTEMPTS) {
        j->state = JOB_WAITING;
        uv_timer_start(&j->timer, on_job_retry, (uint64_t)JOB_BACKOFF_MS << (j->attempts - 1), 0);
        return;
    }
    detail = json_pack("{s:s, s:i, s:i, s:s?}", "status", ok ? "delivered" : "failed", "http_status",
                       (int)resp->status, "attempts", (int)j->attempts, "error", resp->error);
    job_record(j, detail, ok);
    json_decref(detail);
}

static void job_call(job_t *j)
{
    webhook_t *wh = j->wh;
    char sig[100], idh[64];
    const char *headers[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    size_t nh = 1;
    json_t *detail;

    if (wh->closing) {
        job_close(j);
        return;
    }
    j->attempts++;
    if (j->secret && *j->secret) {
        unsigned char mac[32];
        char hex[65];
        crypto_hmac_sha256(j->secret, strlen(j->secret), j->payload, strlen(j->payload), mac);
        crypto_hex(mac, 32, hex);
        snprintf(sig, sizeof(sig), "X-Herald-Signature: sha256=%s", hex);
        headers[nh++] = sig;
    }
    snprintf(idh, sizeof(idh), "X-Herald-Message-Id: %" PRId64, j->msg_id);
    headers[nh++] = idh;
    j->state = JOB_CALLING;
    j->http_pending = 1;
    if (http_client_request(wh->ctx->client, "POST", j->url, headers, j->payload, strlen(j->payload), NULL,
                            on_job_response, j) != 0) {
        j->http_pending = 0;
        detail = json_pack("{s:s, s:s}", "status", "failed", "error", "request not started");
        job_record(j, detail, 0);
        json_decref(detail);
        return;
    }
    if (j->kind == JOB_AI)
        uv_timer_start(&j->timer, on_ai_timeout, j->timeout_ms, 0);
}

static void on_ai_history(db_t *db, const PGresult *res, const char *err, void *arg)
{
    job_t *j = arg;
    json_t *payload, *hist;

    serve_db_report(j->wh->ctx, db, res, err);
    if (j->wh->closing) {
        job_close(j);
        return;
    }
    hist = !err && PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    payload = json_loads(j->payload, 0, NULL);
    json_object_set_new(payload, "messages", hist ? hist : json_array());
    free(j->payload);
    j->payload = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    job_call(j);
}

/* Where a job's call comes from: the committed message, and its event when a sweep claimed it. */
typedef struct job_origin {
    int64_t org_id, conv_id, msg_id, event_id;
    const char *sid, *from, *to, *body;
    size_t body_len;
} job_origin_t;

/* Starts the job of one async action (spec: {"type", "url", ...}). */
static void job_start(webhook_t *wh, const job_origin_t *o, json_t *spec)
{
    const char *type = json_string_value(json_object_get(spec, "type"));
    const char *url = json_string_value(json_object_get(spec, "url"));
    json_t *payload;
    job_t *j;

    if (!url || !*url)
        return;
    if (wh->n_jobs >= JOB_MAX_PENDING) {
        log_warn("job %s: %d calls in flight: left pending for a sweep", type, JOB_MAX_PENDING);
        return;
    }
    j = xcalloc(1, sizeof(*j));
    j->wh = wh;
    j->org_id = o->org_id;
    j->conv_id = o->conv_id;
    j->msg_id = o->msg_id;
    j->event_id = o->event_id;
    j->url = xstrdup(url);
    j->action = xstrdup(type);
    j->rule = json_string_value(json_object_get(spec, "rule")) ? xstrdup(json_string_value(json_object_get(spec, "rule")))
                                                                : NULL;
    j->kind = strcmp(type, "ai-assistant") == 0        ? JOB_AI
              : strcmp(type, "trigger-automation") == 0 ? JOB_AUTOMATION
                                                         : JOB_FLOW;
    j->timeout_ms = (unsigned)json_integer_value(json_object_get(spec, "timeout_ms"));
    if (j->timeout_ms == 0)
        j->timeout_ms = JOB_DEFAULT_AI_TIMEOUT_MS;
    if (j->kind == JOB_AUTOMATION) {
        const char *secret = json_string_value(json_object_get(spec, "secret"));
        if (!secret || !*secret)
            secret = wh->ctx->cfg.automation_secret;
        j->secret = xstrdup(secret);
    }
    payload = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s%}", "event",
                        json_string_value(json_object_get(spec, "event")) ? json_string_value(json_object_get(spec, "event"))
                                                                          : type,
                        "org_id", (json_int_t)o->org_id, "conversation_id", (json_int_t)o->conv_id, "message_id",
                        (json_int_t)o->msg_id, "message_sid", o->sid, "from", o->from, "to", o->to, "body", o->body,
                        o->body_len);
    if (json_object_get(spec, "flow"))
        json_object_set(payload, "flow", json_object_get(spec, "flow"));
    if (json_object_get(spec, "prompt"))
        json_object_set(payload, "prompt", json_object_get(spec, "prompt"));
    j->payload = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    uv_timer_init(wh->ctx->loop, &j->timer);
    j->timer.data = j;
    j->next = wh->jobs;
    if (wh->jobs)
        wh->jobs->prev = j;
    wh->jobs = j;
    wh->n_jobs++;
    if (j->kind == JOB_AI) {
        char org[24], cv[24];
        const char *p[2] = {org, cv};
        db_t *db = serve_db(wh->ctx);
        snprintf(org, sizeof(org), "%" PRId64, o->org_id);
        snprintf(cv, sizeof(cv), "%" PRId64, o->conv_id);
        j->state = JOB_HISTORY;
        if (db && db_exec_prepared(db, "wh_history", 2, p, on_ai_history, j) == 0)
            return;
    }
    job_call(j);
}

/* ---- the sweep: pending calls of other processes, or of this one before a restart (017) ---- */

#define JOB_SWEEP_BATCH 100

/*
 * Puts the signing secret of a resumed trigger-automation into spec, from the claim's
 * column (see claim_sql). Returns NULL, or why the call cannot be made.
 */
static const char *resume_secret(const webhook_t *wh, const char *stored, json_t *spec)
{
    const serve_config_t *cfg = &wh->ctx->cfg;
    char opened[RULES_SECRET_MAX + 1];

    if (!stored)
        return "its signing secret is no longer in the number's rule set";
    if (strncmp(stored, "s:", 2) == 0) { /* a rule set stored before sealing */
        json_object_set_new(spec, "secret", json_string(stored + 2));
        return NULL;
    }
    if (crypto_open_hex(cfg->have_master_key ? cfg->master_key : NULL, stored, opened, sizeof(opened)) != 0)
        return "its signing secret does not open under HERALD_MASTER_KEY";
    json_object_set_new(spec, "secret", json_string(opened));
    memset(opened, 0, sizeof(opened));
    return NULL;
}

/* A claimed event's call, made again: its spec comes back from the event's detail. */
static void job_resume(webhook_t *wh, const PGresult *res, int row)
{
    const char *action = PQgetvalue(res, row, 5);
    const char *secret = PQgetisnull(res, row, 12) ? NULL : PQgetvalue(res, row, 12);
    json_t *detail = json_loads(PQgetvalue(res, row, 6), 0, NULL);
    json_t *spec = json_pack("{s:s}", "type", action);
    job_origin_t o = {
        .org_id = strtoll(PQgetvalue(res, row, 1), NULL, 10),
        .conv_id = strtoll(PQgetvalue(res, row, 2), NULL, 10),
        .msg_id = strtoll(PQgetvalue(res, row, 3), NULL, 10),
        .event_id = strtoll(PQgetvalue(res, row, 0), NULL, 10),
        .sid = PQgetvalue(res, row, 7),
        .body = PQgetvalue(res, row, 8),
        .body_len = (size_t)PQgetlength(res, row, 8),
        .to = PQgetvalue(res, row, 9),
        .from = PQgetvalue(res, row, 10),
    };
    const char *why = NULL, *status = "failed"; /* why the call is not made, and its outcome then */

    if (!PQgetisnull(res, row, 4))
        json_object_set_new(spec, "rule", json_string(PQgetvalue(res, row, 4)));
    if (!detail || !json_is_object(detail)) {
        why = "the event's detail is not an object";
    } else if (strcmp(PQgetvalue(res, row, 11), "1") == 0) {
        why = "expired: pending for more than a day";
        status = "expired";
    } else if (strcmp(action, "go-to-flow") == 0) {
        json_object_set(spec, "url", json_object_get(detail, "endpoint"));
        json_object_set(spec, "flow", json_object_get(detail, "flow"));
    } else if (strcmp(action, "ai-assistant") == 0) {
        json_object_set(spec, "url", json_object_get(detail, "endpoint"));
        json_object_set(spec, "timeout_ms", json_object_get(detail, "timeout_ms"));
        json_object_set(spec, "prompt", json_object_get(detail, "prompt"));
    } else if (strcmp(action, "trigger-automation") == 0) {
        json_object_set(spec, "url", json_object_get(detail, "url"));
        json_object_set(spec, "event", json_object_get(detail, "event"));
        if (json_is_true(json_object_get(detail, "signed")))
            why = resume_secret(wh, secret, spec);
    } else {
        why = "not a call";
    }
    if (!why && !json_is_string(json_object_get(spec, "url")))
        why = "the event names no URL";
    if (why) {
        /* Given up: recorded as the call's outcome, so the sweep does not claim it again. */
        job_t j = {.wh = wh, .org_id = o.org_id, .conv_id = o.conv_id, .msg_id = o.msg_id, .event_id = o.event_id};
        json_t *out = json_pack("{s:s, s:s}", "status", status, "error", why);
        j.rule = (char *)json_string_value(json_object_get(spec, "rule"));
        j.action = (char *)action;
        job_record_detached(&j, out);
        json_decref(out);
    } else {
        log_info("job %s: resuming the call of event %" PRId64, action, o.event_id);
        job_start(wh, &o, spec);
    }
    json_decref(spec);
    json_decref(detail);
}

/* Adds id to a Postgres bigint array text being built ("{1,2"); -1 when out of memory. */
static int id_array_add(buf_t *b, int64_t id)
{
    return buf_printf(b, b->len > 1 ? ",%" PRId64 : "%" PRId64, id);
}

static void release_claimed(webhook_t *wh, const PGresult *res);

static void on_claimed(db_t *db, const PGresult *res, const char *err, void *arg)
{
    webhook_t *wh = arg;

    serve_db_report(wh->ctx, db, res, err);
    wh->sweeping = 0;
    if (wh->closing) {
        release_claimed(wh, err ? NULL : res); /* claimed during the stop: not called, released */
        return;
    }
    if (err) {
        log_warn("job sweep: %s", err);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        job_resume(wh, res, i);
}

static void on_sweep(uv_timer_t *t)
{
    webhook_t *wh = t->data;
    db_t *db;
    buf_t ids;
    char lease[16], lim[16];
    const char *p[3] = {lease, lim, NULL};
    int rc;

    if (wh->closing || wh->sweeping || wh->n_jobs >= JOB_MAX_PENDING || !(db = serve_db(wh->ctx)))
        return;
    buf_init(&ids, SIZE_MAX);
    rc = buf_append(&ids, "{", 1);
    for (job_t *j = wh->jobs; rc == 0 && j; j = j->next)
        rc = id_array_add(&ids, j->msg_id);
    if (rc == 0)
        rc = buf_append(&ids, "}", 1);
    if (rc != 0) {
        buf_close(&ids);
        return;
    }
    snprintf(lease, sizeof(lease), "%u", wh->ctx->cfg.job_lease_s);
    snprintf(lim, sizeof(lim), "%d", JOB_MAX_PENDING - (int)wh->n_jobs < JOB_SWEEP_BATCH
                                         ? JOB_MAX_PENDING - (int)wh->n_jobs
                                         : JOB_SWEEP_BATCH);
    p[2] = buf_str(&ids);
    if (db_exec_prepared(db, "wh_jobs_claim", 3, p, on_claimed, wh) == 0)
        wh->sweeping = 1;
    buf_close(&ids);
}

/* ---- evaluation and the transaction ---- */

static void on_apply(db_t *db, const PGresult *res, const char *err, void *arg);
static void on_context(db_t *db, const PGresult *res, const char *err, void *arg);
static void flush(webhook_t *wh);
static int array_add(buf_t *b, const char *s, int first);

/* ---- the herald_inbound_apply() document, written as JSON text ---- */

/*
 * The document used to be a jansson tree dumped with json_dumps(): an allocation per
 * value and a slow dump made building it a quarter of the webhook's CPU. It is written
 * straight into a buffer now, member for member what that dump wrote (common/jsonw.h).
 */
typedef jsonw_obj_t doc_w_t;

static void dw_raw(doc_w_t *w, const char *s, size_t n)
{
    w->rc |= buf_append(w->b, s, n);
}

static void dw_open(doc_w_t *w)
{
    dw_raw(w, "{", 1);
    w->first = 1;
}

/*
 * Adds the reply of action a (text) to the answer, or writes its outbox op into ops;
 * returns why it was skipped, or NULL.
 */
static const char *add_reply(wh_req_t *r, buf_t *ops, buf_t *twiml, int *n_twiml, const routing_out_action_t *a)
{
    sms_info_t info;
    doc_w_t w = {ops, 1, 0};

    if (!a->text || a->text_len == 0)
        return NULL;
    if (r->suppressed && a->type != ROUTING_ACT_OPT_IN && a->type != ROUTING_ACT_HELP)
        return "suppressed";
    if (sms_analyze(a->text, a->text_len, 0, &info) != 0 || info.over_limit)
        return "reply too long or not UTF-8";
    if (a->mode == ROUTING_REPLY_QUEUED) {
        dw_open(&w);
        jsonw_member_str(&w, "op", "queue");
        jsonw_member_strn(&w, "body", a->text, a->text_len);
        jsonw_member_str(&w, "to", r->from);
        jsonw_member_int(&w, "segments", (int)info.segments);
        jsonw_member_str(&w, "encoding", sms_encoding_name(info.encoding));
        jsonw_member_str(&w, "source", "auto_reply");
        dw_raw(&w, "}", 1);
    } else {
        if (twiml_message(twiml, a->text, a->text_len) != 0)
            return "answer too long";
        (*n_twiml)++;
        dw_open(&w);
        jsonw_member_str(&w, "op", "twiml");
        jsonw_member_strn(&w, "body", a->text, a->text_len);
        dw_raw(&w, "}", 1);
    }
    if (w.rc != 0)
        abort(); /* the buffer has no limit */
    return NULL;
}

static void queue_push(wh_req_t **head, wh_req_t **tail, wh_req_t *r)
{
    r->qnext = NULL;
    if (*tail)
        (*tail)->qnext = r;
    else
        *head = r;
    *tail = r;
}

/* Whether herald_inbound_apply_batch() can write an op (see 005_inbox_perf.sql). */
static int batchable_op(const char *name)
{
    return strcmp(name, "none") == 0 || strcmp(name, "twiml") == 0 || strcmp(name, "add_tag") == 0 ||
           strcmp(name, "create_lead") == 0;
}

/* Writes r's document alone, in its own transaction. */
static void apply_one(wh_req_t *r)
{
    const char *params[1] = {r->doc};
    db_t *db = serve_db(r->wh->ctx);

    if (!db || db_exec_prepared(db, "wh_apply", 1, params, on_apply, r) != 0)
        wh_unavailable(r, "no database connection");
}

/* Whether an add-tag action before action i of d added the same tag. */
static int tag_added_before(const routing_decision_t *d, size_t i)
{
    const routing_out_action_t *a = &d->actions[i];
    const char *tag = a->spec ? a->spec->u.tag.tag : "";

    for (size_t k = 0; k < i; k++) {
        const routing_out_action_t *b = &d->actions[k];
        if (b->type == ROUTING_ACT_ADD_TAG && strcmp(b->spec ? b->spec->u.tag.tag : "", tag) == 0)
            return 1;
    }
    return 0;
}

static void evaluate_and_apply(wh_req_t *r, routing_ruleset_t *rs)
{
    webhook_t *wh = r->wh;
    routing_decision_t *d = &wh->decision;
    routing_input_t in = {0};
    const char *tags[64];
    routing_attr_t attrs[64];
    json_t *tagsj = r->contact_tags ? json_loads(r->contact_tags, 0, NULL) : NULL;
    json_t *attrsj = r->contact_attrs ? json_loads(r->contact_attrs, 0, NULL) : NULL;
    json_t *formj = r->form_state ? json_loads(r->form_state, 0, NULL) : NULL;
    buf_t twiml, text, reply;
    buf_t reply_words, new_tags; /* the document's "reply" and "tags" (see below) */
    size_t n_new_tags = 0;
    doc_w_t w;
    int n_twiml = 0, fast = 1, first_op = 1;

    in.body = buf_str(&r->body);
    in.body_len = r->body.len;
    in.from = r->from;
    in.to = r->to;
    for (size_t i = 0; i < json_array_size(tagsj) && in.n_tags < 64; i++)
        if (json_is_string(json_array_get(tagsj, i)))
            tags[in.n_tags++] = json_string_value(json_array_get(tagsj, i));
    in.tags = tags;
    {
        const char *k;
        json_t *v;
        json_object_foreach(attrsj, k, v)
        {
            if (in.n_attrs < 64 && json_is_string(v)) {
                attrs[in.n_attrs].key = k;
                attrs[in.n_attrs].value = json_string_value(v);
                in.n_attrs++;
            }
        }
    }
    in.attrs = attrs;
    in.form = json_string_value(json_object_get(formj, "form"));
    in.form_step = (int)json_integer_value(json_object_get(formj, "step"));
    in.opt_out_text = r->opt_out_text;
    in.opt_in_text = r->opt_in_text;
    in.help_text = r->help_text;

    twiml = scratch_take(&wh->s_twiml);
    if (twiml_begin(&twiml) != 0)
        abort();
    if (routing_evaluate(rs, &in, d) != 0) {
        d->n_actions = 0;
        d->form.op = ROUTING_FORM_KEEP;
    }
    if (d->flags & (ROUTING_F_LIMIT_HIT | ROUTING_F_BUDGET))
        log_warn("webhook %s: a rule's regex hit its match limit (counted as no match)", r->sid);

    /*
     * The actions are written into text as they are decided; the rest of the document
     * (which needs the finished TwiML) is written around them at the end. Each action
     * is one op {"op", "action", "rule", "detail": {routing_action_write_json(),
     * "status", "reply_skipped"}, ...its own members..., "async"}, followed by the op
     * of its reply if it has one.
     */
    text = scratch_take(&wh->s_text);
    reply = scratch_take(&wh->s_reply);
    /* What herald_inbound_apply_batch() (014) reads instead of working it out of the
     * actions: the bodies of the TwiML replies joined by spaces (their words go into
     * the conversation's search document) and the add-tag tags without repeats, in
     * order, as a Postgres array literal. */
    w.b = &text;
    w.rc = 0;
    buf_init(&reply_words, SIZE_MAX);
    buf_init(&new_tags, SIZE_MAX);
    w.rc |= buf_append(&new_tags, "{", 1);
    for (size_t i = 0; i < d->n_actions; i++) {
        const routing_out_action_t *a = &d->actions[i];
        const routing_action_t *spec = a->spec;
        const char *op = "none", *skipped = NULL, *why = NULL, *status = NULL, *copy = NULL;
        size_t copy_len = 0;
        int send_reply = 1, forward_ok = 0, async = 0;
        sms_info_t finfo = {0};

        switch (a->type) {
        case ROUTING_ACT_OPT_OUT:
            op = "opt_out";
            /* One confirmation: a contact who is already opted out is not messaged again. */
            if (r->suppressed) {
                send_reply = 0;
                skipped = "already opted out";
            }
            break;
        case ROUTING_ACT_OPT_IN:
            op = "opt_in";
            break;
        case ROUTING_ACT_ADD_TAG:
            op = "add_tag";
            break;
        case ROUTING_ACT_REMOVE_TAG:
            op = "remove_tag";
            break;
        case ROUTING_ACT_CREATE_LEAD:
            op = "create_lead";
            break;
        case ROUTING_ACT_FORM_ANSWER:
            op = "form_answer";
            break;
        case ROUTING_ACT_FORWARD_SMS:
            send_reply = 0;
            /* routing.h names value as the copy; the engine fills text: take either. */
            copy = a->value ? a->value : a->text;
            copy_len = a->value ? a->value_len : a->text_len;
            if (spec && copy) {
                if (sms_analyze(copy, copy_len, 0, &finfo) == 0 && !finfo.over_limit) {
                    op = "queue";
                    forward_ok = 1;
                } else {
                    skipped = "copy too long";
                }
            }
            break;
        case ROUTING_ACT_GO_TO_FLOW:
        case ROUTING_ACT_AI_ASSISTANT:
        case ROUTING_ACT_TRIGGER_AUTOMATION: {
            json_t *spec_j = json_pack("{s:s, s:s?}", "type", routing_action_name(a->type), "rule", a->rule_name);
            if (spec && a->type == ROUTING_ACT_GO_TO_FLOW) {
                json_object_set_new(spec_j, "flow", json_string(spec->u.flow.flow));
                if (spec->u.flow.endpoint)
                    json_object_set_new(spec_j, "url", json_string(spec->u.flow.endpoint));
            } else if (spec && a->type == ROUTING_ACT_AI_ASSISTANT) {
                json_object_set_new(spec_j, "url", json_string(spec->u.ai.endpoint));
                json_object_set_new(spec_j, "timeout_ms", json_integer(spec->u.ai.timeout_ms));
                if (spec->u.ai.prompt)
                    json_object_set_new(spec_j, "prompt", json_string(spec->u.ai.prompt));
            } else if (spec) {
                json_object_set_new(spec_j, "url", json_string(spec->u.automation.url));
                json_object_set_new(spec_j, "event", json_string(spec->u.automation.event ? spec->u.automation.event : "inbound"));
                if (spec->u.automation.secret)
                    json_object_set_new(spec_j, "secret", json_string(spec->u.automation.secret));
            }
            async = 1;
            status = json_object_get(spec_j, "url") ? "pending" : "recorded";
            if (!r->async)
                r->async = json_array();
            json_array_append_new(r->async, spec_j);
            break;
        }
        default:
            break;
        }
        /* The reply first (its op follows this one; a reason it was skipped goes in this one's detail). */
        buf_reset(&reply);
        if (send_reply)
            why = add_reply(r, &reply, &twiml, &n_twiml, a);
        if (why)
            skipped = why;

        if (!first_op)
            dw_raw(&w, ",", 1);
        first_op = 0;
        dw_open(&w);
        jsonw_member_str(&w, "op", op);
        jsonw_member_str(&w, "action", routing_action_name(a->type));
        if (a->rule_name) {
            jsonw_member_str(&w, "rule", a->rule_name);
        } else {
            jsonw_key(&w, "rule"); /* json_pack's "s?": null */
            dw_raw(&w, "null", 4);
        }
        jsonw_key(&w, "detail");
        dw_raw(&w, "{", 1);
        w.rc |= routing_action_write_json(&text, a);
        w.first = 0;
        jsonw_member_str(&w, "status", status);
        jsonw_member_str(&w, "reply_skipped", skipped);
        dw_raw(&w, "}", 1);
        switch (a->type) {
        case ROUTING_ACT_OPT_OUT:
        case ROUTING_ACT_OPT_IN:
            /* consent_events.keyword is the keyword or phrase that caused it: the
             * carrier keyword, or for a free-text revocation ("please stop texting
             * me") and a rule's action (no keyword) the message itself. */
            if (a->keyword && *a->keyword)
                jsonw_member_str(&w, "keyword", a->keyword);
            else
                jsonw_member_strn(&w, "keyword", buf_str(&r->body), r->body.len);
            break;
        case ROUTING_ACT_ADD_TAG:
        case ROUTING_ACT_REMOVE_TAG:
            jsonw_member_str(&w, "tag", spec ? spec->u.tag.tag : "");
            if (a->type == ROUTING_ACT_ADD_TAG && !tag_added_before(d, i))
                w.rc |= array_add(&new_tags, spec ? spec->u.tag.tag : "", n_new_tags++ == 0);
            break;
        case ROUTING_ACT_CREATE_LEAD:
            jsonw_member_str(&w, "source", spec && spec->u.lead.source ? spec->u.lead.source
                                                              : (a->rule_name ? a->rule_name : "sms"));
            break;
        case ROUTING_ACT_FORM_ANSWER:
            jsonw_member_str(&w, "field", a->field ? a->field : "");
            jsonw_member_strn(&w, "value", a->value ? a->value : "", a->value ? a->value_len : 0);
            break;
        case ROUTING_ACT_FORWARD_SMS:
            if (forward_ok) {
                jsonw_member_str(&w, "to", spec->u.forward.to);
                jsonw_member_strn(&w, "body", copy, copy_len);
                jsonw_member_int(&w, "segments", finfo.segments);
                jsonw_member_str(&w, "encoding", sms_encoding_name(finfo.encoding));
                jsonw_member_str(&w, "source", "forward");
            }
            break;
        default:
            break;
        }
        if (async) {
            jsonw_key(&w, "async");
            dw_raw(&w, "true", 4);
        }
        dw_raw(&w, "}", 1);
        fast = fast && !async && batchable_op(op);
        if (reply.len) {
            dw_raw(&w, ",", 1);
            dw_raw(&w, reply.data, reply.len);
            /* A reply op is "queue" or "twiml": only the latter is batchable. */
            if (a->mode == ROUTING_REPLY_QUEUED) {
                fast = 0;
            } else {
                if (reply_words.len)
                    w.rc |= buf_append(&reply_words, " ", 1);
                w.rc |= buf_append(&reply_words, a->text, a->text_len);
            }
        }
    }
    scratch_give(&wh->s_reply, &reply);

    if (twiml_end(&twiml) != 0)
        abort();
    r->twiml = xstrdup(n_twiml ? buf_str(&twiml) : twiml_empty());
    scratch_give(&wh->s_twiml, &twiml);

    /* The document: its head, the actions written above, then the form change. */
    {
        buf_t doc;
        char *media = json_array_size(r->media) ? json_dumps(r->media, JSON_COMPACT) : NULL;

        doc = scratch_take(&wh->s_doc);
        w.b = &doc;
        dw_open(&w);
        jsonw_member_int(&w, "org_id", r->org_id);
        jsonw_member_str(&w, "to", r->to);
        jsonw_member_str(&w, "from", r->from);
        jsonw_member_str(&w, "sid", r->sid);
        jsonw_member_strn(&w, "body", buf_str(&r->body), r->body.len);
        jsonw_key(&w, "media");
        w.rc |= buf_puts(&doc, media ? media : "[]");
        jsonw_member_str(&w, "twiml", r->twiml);
        jsonw_key(&w, "actions");
        dw_raw(&w, "[", 1);
        dw_raw(&w, buf_str(&text), text.len);
        dw_raw(&w, "]", 1);
        if (reply_words.len)
            jsonw_member_strn(&w, "reply", reply_words.data, reply_words.len);
        if (n_new_tags) {
            w.rc |= buf_append(&new_tags, "}", 1);
            jsonw_member_str(&w, "tags", buf_str(&new_tags));
        }
        if (d->form.op == ROUTING_FORM_SET && d->form.form && utf8_valid(d->form.form, strlen(d->form.form))) {
            jsonw_key(&w, "form");
            dw_open(&w);
            jsonw_member_str(&w, "op", "set");
            jsonw_member_str(&w, "form", d->form.form);
            jsonw_member_int(&w, "step", d->form.step);
            dw_raw(&w, "}", 1);
        } else if (d->form.op == ROUTING_FORM_CLEAR) {
            jsonw_key(&w, "form");
            dw_raw(&w, "{\"op\":\"clear\"}", 14);
        }
        dw_raw(&w, "}", 1);
        free(media);
        scratch_give(&wh->s_text, &text);
        buf_close(&reply_words);
        buf_close(&new_tags);
        if (w.rc == 0) {
            r->doc = xmalloc(doc.len + 1);
            memcpy(r->doc, doc.data, doc.len + 1);
            r->doc_len = doc.len;
        }
        scratch_give(&wh->s_doc, &doc);
    }
    json_decref(tagsj);
    json_decref(attrsj);
    json_decref(formj);
    rules_unref(rs);
    if (w.rc != 0) {
        /* None of the buffers has a limit, so only a failed size computation gets here;
         * the MessageSid is letters and digits (is_sid) and cannot. */
        wh_unavailable(r, "document not written");
        return;
    }

    wh_set_state(r, WH_APPLY);
    fast = fast && d->form.op == ROUTING_FORM_KEEP;
    if (fast) {
        queue_push(&wh->appq.head, &wh->appq.tail, r);
        return;
    }
    apply_one(r);
}

static void on_apply(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wh_req_t *r = arg;
    webhook_t *wh = r->wh;
    const char *state;
    json_t *out;
    const char *params[4];
    int64_t conv, msg;

    serve_db_report(wh->ctx, db, res, err);
    if (err) {
        state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (state && strcmp(state, "HR001") == 0) {
            /* A retry of the same message committed first: answer what it answered. */
            wh_set_state(r, WH_REREAD);
            params[0] = r->to;
            params[1] = r->from;
            params[2] = r->sid;
            params[3] = r->account;
            db = serve_db(wh->ctx);
            if (!db || db_exec_prepared(db, "wh_ctx", 4, params, on_context, r) != 0)
                wh_unavailable(r, "no database connection");
            return;
        }
        wh_unavailable(r, err);
        return;
    }
    out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    conv = json_integer_value(json_object_get(out, "conversation_id"));
    msg = json_integer_value(json_object_get(out, "message_id"));
    for (size_t i = 0; i < json_array_size(r->async) && !wh->closing; i++) {
        job_origin_t o = {.org_id = r->org_id, .conv_id = conv, .msg_id = msg, .sid = r->sid, .from = r->from,
                          .to = r->to, .body = buf_str(&r->body), .body_len = r->body.len};
        job_start(wh, &o, json_array_get(r->async, i));
    }
    json_decref(out);
    wh_finish(r, 200, r->twiml, wh->m_ok);
}

static void on_rules(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wh_req_t *r = arg;
    webhook_t *wh = r->wh;
    routing_ruleset_t *rs = NULL;
    routing_error_t rerr;

    serve_db_report(wh->ctx, db, res, err);
    if (err) {
        wh_unavailable(r, err);
        return;
    }
    if (PQntuples(res) == 1) {
        const serve_config_t *cfg = &wh->ctx->cfg;
        const char *docs = PQgetvalue(res, 0, 1);
        char why[256], *opened = NULL;
        if (rules_secrets_open(docs, cfg->have_master_key ? cfg->master_key : NULL, 0, &opened, why, sizeof(why)) !=
            0) {
            log_error("rules for org %" PRId64 ": %s (carrier keywords only)", r->org_id, why);
        } else if (rules_compile(opened ? opened : docs, strlen(opened ? opened : docs), &rs, &rerr) != 0) {
            log_error("rules for org %" PRId64 ": %s (carrier keywords only)", r->org_id, rerr.text);
            rs = NULL;
        } else {
            rules_set_version(rs, atoi(PQgetvalue(res, 0, 0)));
        }
        if (opened) {
            memset(opened, 0, strlen(opened));
            free(opened);
        }
    }
    if (routing_registry_swap(wh->registry, r->org_id, r->to, rs ? rules_ref(rs) : NULL) != 0)
        log_error("rules for org %" PRId64 ": swap failed", r->org_id);
    evaluate_and_apply(r, rs);
}

/* org_secret_open() through wh->tokens (only tokens that opened are kept). */
static int open_token(webhook_t *wh, const char *sealed, char *out, size_t outlen)
{
    const serve_config_t *cfg = &wh->ctx->cfg;
    struct wh_token *t;

    for (size_t i = 0; i < WH_TOKEN_CACHE; i++) {
        t = &wh->tokens[i];
        if (t->sealed && strcmp(t->sealed, sealed) == 0 && strlen(t->token) < outlen) {
            memcpy(out, t->token, strlen(t->token) + 1);
            return 0;
        }
    }
    if (org_secret_open(cfg->have_master_key ? cfg->master_key : NULL, sealed, out, outlen) != 0)
        return -1;
    if (strlen(out) < sizeof(t->token)) {
        t = &wh->tokens[wh->token_next];
        wh->token_next = (wh->token_next + 1) % WH_TOKEN_CACHE;
        free(t->sealed);
        memset(t->token, 0, sizeof(t->token));
        t->sealed = xstrdup(sealed);
        memcpy(t->token, out, strlen(out) + 1);
    }
    return 0;
}

/* 0 when r's X-Twilio-Signature is that of its URL and form under token (else see twilio_signature_strerror()). */
static int signature_check(wh_req_t *r, const http_form_t *form, const char *token)
{
    const serve_config_t *cfg = &r->wh->ctx->cfg;
    twilio_param_t *params;
    char url[4096];

    if (cfg->public_url[0]) {
        snprintf(url, sizeof(url), "%s%s", cfg->public_url, r->req->target);
    } else {
        const char *host = http_request_header(r->req, "Host");
        snprintf(url, sizeof(url), "http://%s%s", host ? host : "localhost", r->req->target);
    }
    params = http_arena_alloc(r->req->arena, (form->count ? form->count : 1) * sizeof(*params));
    for (size_t i = 0; i < form->count; i++) {
        params[i].name = form->params[i].name;
        params[i].value = form->params[i].value;
    }
    return twilio_signature_validate_form(token, url, params, form->count, r->signature);
}

/* Checks the signature; answers 403/400 itself and returns -1 when it fails. */
static int check_signature(wh_req_t *r, const http_form_t *form, const PGresult *res, int row, int base)
{
    webhook_t *wh = r->wh;
    const serve_config_t *cfg = &wh->ctx->cfg;
    char token[256];
    int rc;

    if (cfg->webhook_insecure)
        return 0;
    token[0] = '\0';
    if (!PQgetisnull(res, row, base + 1) && open_token(wh, PQgetvalue(res, row, base + 1), token, sizeof(token)) != 0)
        log_error("webhook: org %" PRId64 ": stored auth token cannot be decrypted (HERALD_MASTER_KEY?)", r->org_id);
    if (!token[0])
        snprintf(token, sizeof(token), "%s", cfg->env_auth_token);
    if (!token[0]) {
        log_error("webhook: org %" PRId64 " has no auth token and TWILIO_AUTH_TOKEN is unset: refusing", r->org_id);
        wh_finish(r, 403, NULL, wh->m_forbidden);
        return -1;
    }
    rc = signature_check(r, form, token);
    memset(token, 0, sizeof(token));
    if (rc != 0) {
        log_warn("webhook %s: signature check failed (%s)", r->sid, twilio_signature_strerror(rc));
        wh_finish(r, 403, NULL, wh->m_forbidden);
        return -1;
    }
    return 0;
}

/*
 * Goes on with r from its context row (columns from base on are those of
 * herald_inbound_context()): signature, duplicate, rules, then evaluation.
 */
static void context_row(wh_req_t *r, const PGresult *res, int row, int base)
{
    webhook_t *wh = r->wh;
    routing_ruleset_t *rs;
    db_t *db2;

    if (r->state == WH_CONTEXT) {
        if (check_signature(r, r->form, res, row, base) != 0)
            return;
    }
    if (!PQgetisnull(res, row, base + 5)) {
        wh_finish(r, 200, PQgetisnull(res, row, base + 6) ? twiml_empty() : PQgetvalue(res, row, base + 6), wh->m_dup);
        return;
    }
    if (r->state == WH_REREAD) {
        wh_unavailable(r, "duplicate MessageSid vanished");
        return;
    }
    r->org_id = strtoll(PQgetvalue(res, row, base + 0), NULL, 10);
    r->help_text = dup_value(res, row, base + 2);
    r->opt_out_text = dup_value(res, row, base + 3);
    r->opt_in_text = dup_value(res, row, base + 4);
    r->form_state = dup_value(res, row, base + 7);
    r->contact_tags = dup_value(res, row, base + 8);
    r->contact_attrs = dup_value(res, row, base + 9);
    r->suppressed = PQgetvalue(res, row, base + 10)[0] == 't';
    r->rules_version = PQgetisnull(res, row, base + 11) ? -1 : atoi(PQgetvalue(res, row, base + 11));

    rs = routing_registry_acquire(wh->registry, r->org_id, r->to);
    if ((rs ? rules_version(rs) : -1) == r->rules_version) {
        evaluate_and_apply(r, rs);
        return;
    }
    rules_unref(rs);
    if (r->rules_version < 0) {
        if (routing_registry_swap(wh->registry, r->org_id, r->to, NULL) != 0)
            log_error("rules: swap failed");
        evaluate_and_apply(r, NULL);
        return;
    }
    wh_set_state(r, WH_RULES);
    {
        char org[24];
        const char *params[2] = {org, r->to};
        snprintf(org, sizeof(org), "%" PRId64, r->org_id);
        db2 = serve_db(wh->ctx);
        if (!db2 || db_exec_prepared(db2, "wh_rules", 2, params, on_rules, r) != 0)
            wh_unavailable(r, "no database connection");
    }
}

/*
 * No org receives on r's To number. The answer is 404 only when the request is Twilio's
 * (its signature checks out under TWILIO_AUTH_TOKEN) or checks are off; any other is
 * refused like a forged one (403), so that nobody can find out which numbers are
 * registered by probing. The log says which number it was either way.
 */
static void unknown_number(wh_req_t *r)
{
    const serve_config_t *cfg = &r->wh->ctx->cfg;
    char masked[32];

    log_warn("webhook %s: no org receives on %s", r->sid, log_mask_phone(r->to, masked, sizeof(masked)));
    if (cfg->webhook_insecure || (cfg->env_auth_token[0] && signature_check(r, r->form, cfg->env_auth_token) == 0))
        wh_finish(r, 404, NULL, r->wh->m_unknown);
    else
        wh_finish(r, 403, NULL, r->wh->m_forbidden);
}

static void on_context(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wh_req_t *r = arg;
    webhook_t *wh = r->wh;

    serve_db_report(wh->ctx, db, res, err);
    if (err) {
        wh_unavailable(r, err);
        return;
    }
    if (PQntuples(res) == 0) {
        unknown_number(r);
        return;
    }
    context_row(r, res, 0, 0);
}

/* ---- batches ---- */

/* Appends s to an array literal being built in b ("{" already there). */
static int array_add(buf_t *b, const char *s, int first)
{
    int rc = first ? buf_append(b, "\"", 1) : buf_append(b, ",\"", 2);
    const char *run = s, *p;

    for (p = s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            /* The run up to p, then a backslash; p starts the next run. */
            rc |= buf_append(b, run, (size_t)(p - run));
            rc |= buf_append(b, "\\", 1);
            run = p;
        }
    }
    rc |= buf_append(b, run, (size_t)(p - run));
    return rc | buf_append(b, "\"", 1);
}

static void on_context_batch(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wh_batch_t *b = arg;
    webhook_t *wh = b->wh;
    int seen[WH_BATCH_MAX] = {0};

    serve_db_report(wh->ctx, db, res, err);
    wh->ctxq.inflight--;
    if (err) {
        for (size_t i = 0; i < b->n; i++)
            wh_unavailable(b->reqs[i], err);
    } else {
        for (int row = 0; row < PQntuples(res); row++) {
            long idx = strtol(PQgetvalue(res, row, 0), NULL, 10);
            if (idx < 1 || (size_t)idx > b->n || seen[idx - 1])
                continue;
            seen[idx - 1] = 1;
            context_row(b->reqs[idx - 1], res, row, 1);
        }
        for (size_t i = 0; i < b->n; i++)
            if (!seen[i])
                unknown_number(b->reqs[i]);
    }
    free(b);
    flush(wh);
}

static void on_hold_over(uv_timer_t *t)
{
    flush(t->data);
}

/*
 * Pacing (cfg.batch_gap_us): 1 when q's next batch is held back, because one of its
 * kind is in flight, the previous went out less than the gap ago and less than half a
 * batch is queued; then q's timer is armed for the rest of the gap (a backstop at
 * millisecond resolution: every loop iteration's flush looks again). Counts each
 * batch held back once.
 */
static int hold_batch(webhook_t *wh, struct wh_queue *q)
{
    uint64_t gap = (uint64_t)wh->ctx->cfg.batch_gap_us * 1000, now;
    const wh_req_t *r = q->head;
    size_t n = 0;

    if (gap == 0 || q->inflight == 0 || wh->closing)
        return q->held = 0;
    now = uv_hrtime();
    if (now - q->sent_ns >= gap)
        return q->held = 0;
    for (; r && n < WH_BATCH_MAX / 2; r = r->qnext)
        n++;
    if (n >= WH_BATCH_MAX / 2)
        return q->held = 0;
    if (!q->held)
        metrics_counter_add(wh->m_paced, 1);
    q->held = 1;
    if (!uv_is_active((uv_handle_t *)&q->timer))
        uv_timer_start(&q->timer, on_hold_over, (q->sent_ns + gap - now + 999999) / 1000000, 0);
    return 1;
}

/* Sends the queued context reads, one batch per free connection. */
static void flush_context(webhook_t *wh, size_t limit)
{
    struct wh_queue *q = &wh->ctxq;

    while (q->head && q->inflight < limit && !hold_batch(wh, q)) {
        wh_batch_t *b = xcalloc(1, sizeof(*b));
        buf_t a[4];
        const char *params[4];
        int rc = 0;
        db_t *db;

        b->wh = wh;
        for (int k = 0; k < 4; k++) {
            a[k] = scratch_take(&wh->s_arr[k]);
            rc |= buf_append(&a[k], "{", 1);
        }
        while (q->head && b->n < WH_BATCH_MAX) {
            wh_req_t *r = q->head;
            q->head = r->qnext;
            if (!q->head)
                q->tail = NULL;
            rc |= array_add(&a[0], r->to, b->n == 0);
            rc |= array_add(&a[1], r->from, b->n == 0);
            rc |= array_add(&a[2], r->sid, b->n == 0);
            rc |= array_add(&a[3], r->account, b->n == 0);
            b->reqs[b->n++] = r;
        }
        for (int k = 0; k < 4; k++) {
            rc |= buf_append(&a[k], "}", 1);
            params[k] = buf_str(&a[k]);
        }
        if (rc != 0)
            abort(); /* the fields are capped far below the buffer limit */
        metrics_counter_add(wh->m_batches, 1);
        db = serve_db(wh->ctx);
        if (!db || db_exec_prepared(db, "wh_ctx_batch", 4, params, on_context_batch, b) != 0) {
            for (size_t i = 0; i < b->n; i++)
                wh_unavailable(b->reqs[i], "no database connection");
            free(b);
        } else {
            q->inflight++;
            q->sent_ns = uv_hrtime();
        }
        for (int k = 0; k < 4; k++)
            scratch_give(&wh->s_arr[k], &a[k]);
    }
}

static void on_apply_batch(db_t *db, const PGresult *res, const char *err, void *arg)
{
    wh_batch_t *b = arg;
    webhook_t *wh = b->wh;

    serve_db_report(wh->ctx, db, res, err);
    wh->appq.inflight--;
    if (err && res) {
        /* The statement failed, not the connection: apply each document on its own. */
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        log_info("webhook batch of %zu: %s (SQLSTATE %s): applying one by one", b->n, err, state ? state : "?");
        metrics_counter_add(wh->m_batch_retries, 1);
        for (size_t i = 0; i < b->n; i++)
            apply_one(b->reqs[i]);
    } else if (err) {
        for (size_t i = 0; i < b->n; i++)
            wh_unavailable(b->reqs[i], err);
    } else {
        for (size_t i = 0; i < b->n; i++)
            wh_finish(b->reqs[i], 200, b->reqs[i]->twiml, wh->m_ok);
    }
    free(b);
    flush(wh);
}

/* Sends the queued documents, one batch per free connection; no two share a From. */
static void flush_apply(webhook_t *wh, size_t limit)
{
    struct wh_queue *q = &wh->appq;

    while (q->head && q->inflight < limit && !hold_batch(wh, q)) {
        wh_batch_t *b = xcalloc(1, sizeof(*b));
        wh_req_t *keep_head = NULL, *keep_tail = NULL, *r, *next;
        buf_t text;
        const char *params[1];
        db_t *db;
        int rc = 0;

        b->wh = wh;
        for (r = q->head; r; r = next) {
            int clash = 0;
            next = r->qnext;
            for (size_t i = 0; i < b->n && !clash; i++)
                clash = strcmp(b->reqs[i]->from, r->from) == 0;
            if (clash || b->n == WH_BATCH_MAX)
                queue_push(&keep_head, &keep_tail, r);
            else
                b->reqs[b->n++] = r;
        }
        q->head = keep_head;
        q->tail = keep_tail;
        /* Alone too: since 010_webhook_perf.sql the batch function writes one document
         * with fewer statements and row versions than herald_inbound_apply(), which
         * stays for the documents it cannot take and for the retries. */
        text = scratch_take(&wh->s_batch);
        rc |= buf_append(&text, "[", 1);
        for (size_t i = 0; i < b->n; i++) {
            if (i)
                rc |= buf_append(&text, ",", 1);
            rc |= buf_append(&text, b->reqs[i]->doc, b->reqs[i]->doc_len);
        }
        rc |= buf_append(&text, "]", 1);
        if (rc != 0)
            abort();
        params[0] = buf_str(&text);
        metrics_counter_add(wh->m_batches, 1);
        db = serve_db(wh->ctx);
        if (!db || db_exec_prepared(db, "wh_apply_batch", 1, params, on_apply_batch, b) != 0) {
            for (size_t i = 0; i < b->n; i++)
                wh_unavailable(b->reqs[i], "no database connection");
            free(b);
        } else {
            q->inflight++;
            q->sent_ns = uv_hrtime();
        }
        scratch_give(&wh->s_batch, &text);
    }
}

static void flush(webhook_t *wh)
{
    size_t limit = serve_db_ready(wh->ctx);

    if (limit == 0)
        limit = 1; /* serve_db() then answers NULL and the requests get 503 */
    flush_context(wh, limit);
    flush_apply(wh, limit);
}

static void on_flush_check(uv_check_t *h)
{
    flush(h->data);
}

static int is_e164(const char *s)
{
    size_t n;
    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    n = strlen(s + 1);
    return n >= 2 && n <= 15 && strspn(s + 1, "0123456789") == n;
}

/*
 * A Twilio SID (MessageSid, AccountSid): letters and digits, 1 to 64 of them. Anything
 * else is refused before the request joins a batch: a MessageSid that is not UTF-8, say,
 * would fail the batched read of every request that shares it.
 */
static int is_sid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 64
           && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == n;
}

static void bad_request(webhook_t *wh, http_request_t *req, const char *why)
{
    metrics_counter_add(wh->m_bad, 1);
    http_respond(req, 400, "text/plain", NULL, why, strlen(why));
}

static void on_sms(http_request_t *req, void *arg)
{
    webhook_t *wh = arg;
    http_form_limits_t lim = {WH_MAX_FIELDS, WH_MAX_FIELD_LEN, 1u << 20};
    http_form_t *form = http_arena_alloc(req->arena, sizeof(*form));
    http_form_error_t ferr;
    const char *body, *nmedia, *sig;
    wh_req_t *r;
    int rc;

    rc = http_form_parse(req->body, req->body_len, &lim, req->arena, form, &ferr);
    if (rc != 0) {
        char why[160];
        snprintf(why, sizeof(why), "bad form body at byte %zu: %s\n", ferr.offset, ferr.reason);
        bad_request(wh, req, why);
        return;
    }
    sig = http_request_header(req, "X-Twilio-Signature");
    if (!wh->ctx->cfg.webhook_insecure && !sig) {
        bad_request(wh, req, "missing X-Twilio-Signature\n");
        return;
    }
    r = xcalloc(1, sizeof(*r));
    r->signature = sig;
    r->wh = wh;
    r->req = req;
    r->t0 = uv_hrtime();
    r->sid = http_form_get(form, "MessageSid");
    if (!r->sid)
        r->sid = http_form_get(form, "SmsSid");
    r->to = http_form_get(form, "To");
    r->from = http_form_get(form, "From");
    r->account = http_form_get(form, "AccountSid");
    if (!r->account)
        r->account = "";
    body = http_form_get(form, "Body");
    if (!is_sid(r->sid) || !is_e164(r->to) || !is_e164(r->from)) {
        free(r);
        bad_request(wh, req, "MessageSid (letters and digits), To and From (E.164) are required\n");
        return;
    }
    if (*r->account && !is_sid(r->account)) {
        free(r);
        bad_request(wh, req, "AccountSid: letters and digits only\n");
        return;
    }
    buf_init(&r->body, 3 * WH_MAX_FIELD_LEN + 16);
    if (body && twiml_utf8_clean(&r->body, body, strlen(body)) != 0)
        abort();
    nmedia = http_form_get(form, "NumMedia");
    for (int i = 0; nmedia && i < WH_MAX_MEDIA && i < atoi(nmedia); i++) {
        char n1[32], n2[32];
        const char *url, *ct;
        snprintf(n1, sizeof(n1), "MediaUrl%d", i);
        snprintf(n2, sizeof(n2), "MediaContentType%d", i);
        url = http_form_get(form, n1);
        ct = http_form_get(form, n2);
        if (url && !r->media)
            r->media = json_array();
        if (url)
            json_array_append_new(r->media, json_pack("{s:s, s:s?}", "url", url, "content_type", ct));
    }
    r->form = form;
    wh_set_state(r, WH_CONTEXT);
    /* Read at the end of this loop iteration, with the others that arrived in it. */
    queue_push(&wh->ctxq.head, &wh->ctxq.tail, r);
}

int serve_webhook_attach(serve_ctx_t *ctx)
{
    webhook_t *wh = xcalloc(1, sizeof(*wh));
    static const char help_req[] = "Inbound SMS webhooks by outcome.";

    wh->ctx = ctx;
    wh->registry = routing_registry_new();
    buf_init(&wh->s_twiml, WH_TWIML_MAX);
    buf_init(&wh->s_text, SIZE_MAX);
    buf_init(&wh->s_reply, SIZE_MAX);
    buf_init(&wh->s_doc, SIZE_MAX);
    for (int k = 0; k < 4; k++)
        buf_init(&wh->s_arr[k], 64u * 1024 * WH_BATCH_MAX);
    buf_init(&wh->s_batch, SIZE_MAX);
    routing_decision_init(&wh->decision);
    wh->m_ok = metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"stored\"");
    wh->m_dup = metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"duplicate\"");
    wh->m_bad = metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"bad_request\"");
    wh->m_forbidden = metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"forbidden\"");
    wh->m_unknown = metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"unknown_number\"");
    wh->m_unavailable =
        metrics_counter(ctx->metrics, "herald_webhook_sms_total", help_req, "outcome=\"unavailable\"");
    wh->m_jobs_ok = metrics_counter(ctx->metrics, "herald_webhook_jobs_total", "Post-commit action calls.",
                                    "outcome=\"ok\"");
    wh->m_jobs_failed = metrics_counter(ctx->metrics, "herald_webhook_jobs_total", "Post-commit action calls.",
                                        "outcome=\"failed\"");
    wh->m_latency = metrics_histogram(ctx->metrics, "herald_webhook_sms_seconds",
                                      "Inbound SMS webhook latency, request to answer.", "", metrics_latency_buckets,
                                      metrics_latency_nbuckets);
    wh->m_batches = metrics_counter(ctx->metrics, "herald_webhook_batches_total",
                                    "Batched context reads and writes of inbound SMS.", "");
    wh->m_paced = metrics_counter(ctx->metrics, "herald_webhook_batches_paced_total",
                                  "Batches held back while one of their kind was in flight "
                                  "(HERALD_WEBHOOK_BATCH_GAP_US).",
                                  "");
    wh->m_batch_retries = metrics_counter(ctx->metrics, "herald_webhook_batch_retries_total",
                                          "Batched writes that failed and were applied one by one.", "");
    uv_check_init(ctx->loop, &wh->flush_check);
    wh->flush_check.data = wh;
    uv_check_start(&wh->flush_check, on_flush_check);
    /* The check only flushes queues; it must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&wh->flush_check);
    ctx->webhook = wh;
    serve_db_statement(ctx, "wh_ctx", ctx_sql);
    serve_db_statement(ctx, "wh_ctx_batch", ctx_batch_sql);
    serve_db_statement(ctx, "wh_apply_batch", apply_batch_sql);
    serve_db_statement(ctx, "wh_rules", rules_sql);
    serve_db_statement(ctx, "wh_apply", apply_sql);
    serve_db_statement(ctx, "wh_event", event_sql);
    serve_db_statement(ctx, "wh_history", history_sql);
    serve_db_statement(ctx, "wh_jobs_claim", claim_sql);
    serve_db_statement(ctx, "wh_release", release_sql);
    serve_db_statement(ctx, "wh_queue_reply", inbox_sql_queue_reply);
    uv_timer_init(ctx->loop, &wh->ctxq.timer);
    uv_timer_init(ctx->loop, &wh->appq.timer);
    wh->ctxq.timer.data = wh->appq.timer.data = wh;
    uv_timer_init(ctx->loop, &wh->sweep_timer);
    wh->sweep_timer.data = wh;
    /* The first sweep soon after start: calls a stopped process left are made again. */
    uv_timer_start(&wh->sweep_timer, on_sweep, ctx->cfg.job_sweep_ms < 1000 ? ctx->cfg.job_sweep_ms : 1000,
                   ctx->cfg.job_sweep_ms);
    uv_unref((uv_handle_t *)&wh->sweep_timer);
    return http_router_add(ctx->router, "POST", "/connect/webhook/twilio/sms", on_sms, wh);
}

/* The end of the release (or of its wait): serve_webhook_detach()'s callback, once. */
static void release_done(webhook_t *wh, const char *err)
{
    void (*done)(void *) = wh->detached;

    if (!done)
        return;
    wh->detached = NULL;
    if (err)
        log_warn("stop: %zu unmade calls keep their lease (%s)", wh->n_released, err);
    else if (wh->n_released)
        log_info("stop: %zu unmade calls handed to the next sweep", wh->n_released);
    buf_close(&wh->rel_msgs);
    buf_close(&wh->rel_events);
    uv_close((uv_handle_t *)&wh->sweep_timer, NULL);
    done(wh->detached_arg);
}

static void on_released(db_t *db, const PGresult *res, const char *err, void *arg)
{
    webhook_t *wh = arg;
    serve_db_report(wh->ctx, db, res, err);
    release_done(wh, err);
}

static void on_release_timeout(uv_timer_t *t)
{
    release_done(t->data, "no answer from the database in time");
}

/* Adds id to one of the release's arrays; -1 when out of memory. */
static int release_add(webhook_t *wh, buf_t *b, int64_t id)
{
    wh->n_released++;
    return id_array_add(b, id);
}

/*
 * Notes what wh_release is to take: the calls this process leaves unmade (waiting for a
 * retry, in flight, not started). A call from a commit here is known by its message,
 * and only its events nobody has claimed are taken; a message with a call whose outcome
 * is being written is left out, since released before that outcome commits, its call
 * could be made again. A claimed call is known by its event.
 */
static int release_collect(webhook_t *wh)
{
    int rc = 0;

    buf_init(&wh->rel_msgs, SIZE_MAX);
    buf_init(&wh->rel_events, SIZE_MAX);
    if (buf_append(&wh->rel_msgs, "{", 1) != 0 || buf_append(&wh->rel_events, "{", 1) != 0)
        return -1;
    for (job_t *j = wh->jobs; rc == 0 && j; j = j->next) {
        int writing = j->state == JOB_RECORDING || j->recorded;
        if (j->event_id) {
            if (!writing)
                rc = release_add(wh, &wh->rel_events, j->event_id);
            continue;
        }
        for (job_t *k = wh->jobs; k && !writing; k = k->next)
            writing = k->msg_id == j->msg_id && !k->event_id && (k->state == JOB_RECORDING || k->recorded);
        if (!writing)
            rc = release_add(wh, &wh->rel_msgs, j->msg_id);
    }
    return rc;
}

/* Sends wh_release; 1 when sent, 0 when there is nothing to release, -1 when it cannot be sent. */
static int release_send(webhook_t *wh)
{
    const char *p[2];
    db_t *db;

    if (wh->n_released == 0)
        return 0;
    if (buf_append(&wh->rel_msgs, "}", 1) != 0 || buf_append(&wh->rel_events, "}", 1) != 0 ||
        !(db = serve_db(wh->ctx)))
        return -1;
    p[0] = buf_str(&wh->rel_msgs);
    p[1] = buf_str(&wh->rel_events);
    return db_exec_prepared(db, "wh_release", 2, p, on_released, wh) == 0 ? 1 : -1;
}

/* The stop's claim answered (on_claimed): its rows go with the rest. */
static void release_claimed(webhook_t *wh, const PGresult *res)
{
    int rc = 0;

    if (!wh->detached)
        return; /* the wait is over */
    for (int i = 0; res && rc == 0 && i < PQntuples(res); i++)
        rc = release_add(wh, &wh->rel_events, strtoll(PQgetvalue(res, i, 0), NULL, 10));
    rc = rc == 0 ? release_send(wh) : -1;
    if (rc <= 0)
        release_done(wh, rc < 0 ? "the release could not be sent" : NULL);
}

void serve_webhook_detach(serve_ctx_t *ctx, void (*done)(void *arg), void *arg)
{
    webhook_t *wh = ctx->webhook;
    int rc;

    if (!wh || wh->closing) {
        done(arg);
        return;
    }
    wh->closing = 1;
    /* The server has drained: no request is queued any more. */
    uv_close((uv_handle_t *)&wh->flush_check, NULL);
    uv_close((uv_handle_t *)&wh->ctxq.timer, NULL);
    uv_close((uv_handle_t *)&wh->appq.timer, NULL);
    uv_timer_stop(&wh->sweep_timer);
    wh->detached = done;
    wh->detached_arg = arg;
    rc = release_collect(wh);
    /* Jobs waiting on a backoff timer are dropped; the others end in their callbacks. */
    for (job_t *j = wh->jobs, *next; j; j = next) {
        next = j->next;
        if (j->state == JOB_WAITING)
            job_close(j);
    }
    /* A claim in flight: its rows are released with the rest when it answers (on_claimed). */
    if (rc == 0 && !wh->sweeping)
        rc = release_send(wh);
    if (rc == 1 || (rc == 0 && wh->sweeping)) {
        uv_ref((uv_handle_t *)&wh->sweep_timer);
        uv_timer_start(&wh->sweep_timer, on_release_timeout, WH_RELEASE_WAIT_MS, 0);
    } else {
        release_done(wh, rc < 0 ? "the release could not be sent" : NULL);
    }
}

void serve_webhook_free(serve_ctx_t *ctx)
{
    webhook_t *wh = ctx->webhook;
    if (!wh)
        return;
    routing_decision_close(&wh->decision);
    routing_registry_free(wh->registry);
    buf_close(&wh->s_twiml);
    buf_close(&wh->s_text);
    buf_close(&wh->s_reply);
    buf_close(&wh->s_doc);
    for (int k = 0; k < 4; k++)
        buf_close(&wh->s_arr[k]);
    buf_close(&wh->s_batch);
    for (size_t i = 0; i < WH_TOKEN_CACHE; i++) {
        free(wh->tokens[i].sealed);
        memset(wh->tokens[i].token, 0, sizeof(wh->tokens[i].token));
    }
    free(wh);
    ctx->webhook = NULL;
}
