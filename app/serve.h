/*
 * serve_ctx_t: what `herald serve` shares between its parts (webhooks, CRM and
 * broadcast API, scheduler): the loop, a small pool of Postgres connections, the
 * HTTP router, the configuration read from the environment, the metrics registry,
 * and an HTTP client for outgoing calls. Everything runs on the one loop thread.
 *
 * Lifecycle (app/cmd_serve.c): serve_config_load() -> pool connects -> routes are
 * added (serve_webhook_routes(), serve_api_routes(), serve_scheduler_attach())
 * -> listen -> SIGTERM/SIGINT -> stop accepting, serve_scheduler_detach(), drain
 * in-flight HTTP requests -> close the pool -> exit.
 *
 * Modules that plug into serve add their routes with http_router_add(ctx->router,
 * ...) and their metrics with metrics_counter()/metrics_gauge()/metrics_histogram()
 * on ctx->metrics, both from their attach function (before the server listens).
 */
#ifndef HERALD_APP_SERVE_H
#define HERALD_APP_SERVE_H
#include "common/metrics.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"
#include "storage/db.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SERVE_POOL_MAX 32

/* Settings read once at start; const afterwards. */
typedef struct serve_config {
    char listen_host[64];     /* HERALD_LISTEN host part (default 127.0.0.1) */
    int listen_port;          /* HERALD_LISTEN port (default 8080; 0 picks one) */
    char public_url[512];     /* HERALD_PUBLIC_URL without a trailing '/'; "" when unset */
    char conninfo[1024];      /* DATABASE_URL or the private cluster */
    size_t pool_size;         /* HERALD_DB_POOL (default 4, at most SERVE_POOL_MAX) */
    int webhook_insecure;     /* HERALD_WEBHOOK_INSECURE=1: signature checks off (development only) */
    char env_auth_token[128]; /* TWILIO_AUTH_TOKEN: for orgs without a stored token; may be "" */
    unsigned char master_key[32]; /* HERALD_MASTER_KEY, decoded */
    int have_master_key;
    char automation_secret[256]; /* HERALD_AUTOMATION_SECRET: HMAC key of trigger-automation posts */
    char port_file[512];      /* --port-file: the bound port is written there; "" for none */
    uint64_t max_upload_bytes; /* HERALD_MAX_UPLOAD_BYTES: CSV upload body cap (default 1 GiB) */
    size_t max_uploads;        /* HERALD_MAX_UPLOADS: uploads in progress at once (default 2) */
    unsigned job_lease_s;      /* HERALD_JOB_LEASE_S: a pending post-commit call is another's to retry after this (300) */
    unsigned job_sweep_ms;     /* HERALD_JOB_SWEEP_MS: how often pending calls are looked for (30000) */
    unsigned batch_gap_us;     /* HERALD_WEBHOOK_BATCH_GAP_US: how long after the previous webhook batch of
                                  a kind the next waits while one is in flight (2000; 0: no wait) */
} serve_config_t;

struct serve_stmt {
    char *name;
    char *sql;
};

/* One pooled connection (see serve_db()). */
typedef struct serve_pool_conn {
    db_t *db;           /* NULL while reconnecting */
    int ready;          /* connected and prepared */
    unsigned failures;  /* consecutive failed connects (backoff) */
    size_t prepared;    /* statements prepared so far on this connection */
    uint64_t retry_at;  /* uv_now() when the next connect may start */
    struct serve_ctx *ctx;
} serve_pool_conn_t;

typedef struct serve_ctx {
    uv_loop_t *loop;
    serve_config_t cfg;
    serve_pool_conn_t pool[SERVE_POOL_MAX];
    size_t pool_next;
    struct serve_stmt *stmts; /* see serve_db_statement() */
    size_t n_stmts;
    uv_timer_t pool_timer; /* reconnects broken connections */
    http_router_t *router;
    http_server_t *server;
    http_client_t *client;      /* outgoing HTTP (ai-assistant, flows, automations) */
    metrics_registry_t *metrics;
    int stopping;               /* set once shutdown began */
    void *webhook;              /* private to serve_webhook.c */
    void *api;                  /* private to api_*.c */
    void *scheduler;            /* private to serve_scheduler.c */
} serve_ctx_t;

/*
 * Returns a connected pool connection, round robin, or NULL when none is up
 * (answer 503). Borrowed: valid until the next return to the loop.
 */
db_t *serve_db(serve_ctx_t *ctx);

/*
 * Tells the pool an operation on db ended with err (NULL: success). A connection-
 * level failure (no result, an error) marks it broken; the pool reconnects it in the
 * background with backoff. Call it from every db callback of a pooled connection.
 */
void serve_db_report(serve_ctx_t *ctx, db_t *db, const void *res, const char *err);

/*
 * Registers a statement that every pooled connection prepares (as name) right after
 * it connects, before it is handed out, so db_exec_prepared(serve_db(ctx), name, ...)
 * always finds it. Call before the server listens; name and sql are copied.
 */
void serve_db_statement(serve_ctx_t *ctx, const char *name, const char *sql);

/* Number of pooled connections currently up. */
size_t serve_db_ready(const serve_ctx_t *ctx);

/*
 * Adds the scheduler, the status-callback endpoint and the campaign control endpoints
 * (owned by app/serve_scheduler.c). Called after the pool is created and before the
 * server listens. Returns 0 or a negative code (serve then exits with status 1).
 */
__attribute__((warn_unused_result)) int serve_scheduler_attach(serve_ctx_t *ctx);

/*
 * Stops the scheduler gracefully: no new leases, in-flight provider calls finish or
 * are abandoned to the lease expiry. done(arg) must be called exactly once (may be
 * called synchronously) when it is safe to close the pool.
 */
void serve_scheduler_detach(serve_ctx_t *ctx, void (*done)(void *arg), void *arg);

/* Adds POST /connect/webhook/twilio/sms (app/serve_webhook.c). Returns 0 or negative. */
__attribute__((warn_unused_result)) int serve_webhook_attach(serve_ctx_t *ctx);

/*
 * Releases what serve_webhook_attach() created. The post-commit calls not made yet are
 * abandoned, their pending events handed to the next sweep (of any process) at once;
 * done(arg) runs when that is written or has taken 2 s (maybe synchronously), and the
 * pool may be closed then.
 */
void serve_webhook_detach(serve_ctx_t *ctx, void (*done)(void *arg), void *arg);

/* Frees what the webhook keeps (rule registry) once the loop has stopped. */
void serve_webhook_free(serve_ctx_t *ctx);

/* Adds the /crm routes (app/api_crm.c). Returns 0 or negative. */
__attribute__((warn_unused_result)) int api_crm_attach(serve_ctx_t *ctx);

/* Adds the /broadcast routes owned here (app/api_broadcast.c). Returns 0 or negative. */
__attribute__((warn_unused_result)) int api_broadcast_attach(serve_ctx_t *ctx);

/*
 * Authenticates req's "Authorization: Bearer <key>" and calls cb(req, org_id, arg)
 * with the key's org, or answers 401 (JSON) itself and never calls cb. When the
 * database is unreachable it answers 503. Keys are cached for a few seconds.
 */
void serve_auth(serve_ctx_t *ctx, http_request_t *req, void (*cb)(http_request_t *req, int64_t org_id, void *arg),
                void *arg);

/* Parses a positive decimal id of at most 18 digits (a path segment or a query value)
 * into *out. Returns 0, or -1 for anything else, NULL included. */
int serve_parse_id(const char *s, int64_t *out);

/* Answers req with a JSON body {"error": msg} and status. */
void serve_json_error(http_request_t *req, int status, const char *msg);

#endif
