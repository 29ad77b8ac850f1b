/*
 * herald serve: the long-running process. Reads its configuration from the
 * environment, keeps a small pool of Postgres connections (reconnected in the
 * background with backoff when the server goes away), wires the HTTP server and
 * router to the webhook, the CRM and broadcast APIs and the scheduler, serves
 * /healthz and /metrics, and shuts down gracefully on SIGTERM/SIGINT: stop
 * accepting, let the scheduler and in-flight requests finish, then close the pool.
 * The pool, the API-key check and the JSON error helper declared in serve.h live
 * here because every part of serve uses them.
 */
#include "app/commands.h"
#include "app/serve.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "storage/migrate.h"
#include "storage/pgcluster.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POOL_TICK_MS 250
#define POOL_BACKOFF_MAX_MS 5000
#define AUTH_CACHE_SLOTS 1024
#define AUTH_CACHE_TTL_MS 10000
#define API_KEY_MAX 128

typedef enum serve_state {
    SERVE_STARTING,  /* connecting, migrating */
    SERVE_RUNNING,   /* listening */
    SERVE_DRAINING,  /* signal received: scheduler and in-flight requests finishing */
    SERVE_CLOSING,   /* closing the pool and the loop's handles */
    SERVE_DONE,
} serve_state_t;

typedef struct auth_slot {
    unsigned char hash[32];
    int64_t org_id; /* 0: the key is unknown (negative cache) */
    uint64_t expires;
} auth_slot_t;

typedef struct serve_main {
    serve_ctx_t ctx;
    serve_state_t state;
    uv_signal_t sigterm, sigint;
    int exit_status;
    int migrated;
    char migrate_err[512];
    auth_slot_t auth_cache[AUTH_CACHE_SLOTS];
    metrics_counter_t *auth_fail;
} serve_main_t;

static const char *const state_names[] = {"starting", "running", "draining", "closing", "done"};

static void set_state(serve_main_t *m, serve_state_t to)
{
    log_debug("serve: %s -> %s", state_names[m->state], state_names[to]);
    m->state = to;
}

/* ---- pool ---- */

static void pool_conn_start(serve_pool_conn_t *pc);

static void pool_conn_broken(serve_pool_conn_t *pc, const char *why)
{
    serve_ctx_t *ctx = pc->ctx;
    unsigned shift = pc->failures < 5 ? pc->failures : 5;
    uint64_t backoff = 100u << shift;

    if (!pc->db)
        return;
    if (pc->ready || pc->failures == 0)
        log_error("database connection lost: %s (reconnecting)", why ? why : "unknown error");
    db_close(pc->db, NULL, NULL);
    pc->db = NULL;
    pc->ready = 0;
    pc->failures++;
    pc->retry_at = uv_now(ctx->loop) + (backoff < POOL_BACKOFF_MAX_MS ? backoff : POOL_BACKOFF_MAX_MS);
}

static void on_pool_prepared(db_t *db, const PGresult *res, const char *err, void *arg)
{
    serve_pool_conn_t *pc = arg;
    (void)res;
    if (pc->db != db)
        return;
    if (err) {
        pool_conn_broken(pc, err);
        return;
    }
    if (++pc->prepared == pc->ctx->n_stmts) {
        pc->ready = 1;
        if (pc->failures)
            log_info("database connection restored");
        pc->failures = 0;
    }
}

static void on_pool_connect(db_t *db, const char *err, void *arg)
{
    serve_pool_conn_t *pc = arg;
    serve_ctx_t *ctx = pc->ctx;

    if (pc->db != db)
        return;
    if (err) {
        pool_conn_broken(pc, err);
        return;
    }
    pc->prepared = 0;
    if (ctx->n_stmts == 0) {
        pc->ready = 1;
        pc->failures = 0;
        return;
    }
    for (size_t i = 0; i < ctx->n_stmts; i++)
        if (db_prepare(db, ctx->stmts[i].name, ctx->stmts[i].sql, on_pool_prepared, pc) != 0) {
            pool_conn_broken(pc, "could not queue a prepare");
            return;
        }
}

static void pool_conn_start(serve_pool_conn_t *pc)
{
    serve_ctx_t *ctx = pc->ctx;

    pc->ready = 0;
    if (db_connect(ctx->loop, ctx->cfg.conninfo, on_pool_connect, pc, &pc->db) != 0) {
        pc->db = NULL;
        pc->failures++;
        pc->retry_at = uv_now(ctx->loop) + POOL_BACKOFF_MAX_MS;
    }
}

static void on_pool_tick(uv_timer_t *t)
{
    serve_ctx_t *ctx = t->data;

    if (ctx->stopping)
        return;
    for (size_t i = 0; i < ctx->cfg.pool_size; i++) {
        serve_pool_conn_t *pc = &ctx->pool[i];
        if (!pc->db && uv_now(ctx->loop) >= pc->retry_at)
            pool_conn_start(pc);
    }
}

db_t *serve_db(serve_ctx_t *ctx)
{
    for (size_t k = 0; k < ctx->cfg.pool_size; k++) {
        serve_pool_conn_t *pc = &ctx->pool[(ctx->pool_next + k) % ctx->cfg.pool_size];
        if (pc->db && pc->ready) {
            ctx->pool_next = (ctx->pool_next + k + 1) % ctx->cfg.pool_size;
            return pc->db;
        }
    }
    return NULL;
}

void serve_db_report(serve_ctx_t *ctx, db_t *db, const void *res, const char *err)
{
    if (!err || res)
        return;
    for (size_t i = 0; i < ctx->cfg.pool_size; i++)
        if (ctx->pool[i].db == db && db) {
            pool_conn_broken(&ctx->pool[i], err);
            return;
        }
}

size_t serve_db_ready(const serve_ctx_t *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < ctx->cfg.pool_size; i++)
        n += ctx->pool[i].db && ctx->pool[i].ready;
    return n;
}

void serve_db_statement(serve_ctx_t *ctx, const char *name, const char *sql)
{
    ctx->stmts = xrealloc(ctx->stmts, (ctx->n_stmts + 1) * sizeof(*ctx->stmts));
    ctx->stmts[ctx->n_stmts].name = xstrdup(name);
    ctx->stmts[ctx->n_stmts].sql = xstrdup(sql);
    ctx->n_stmts++;
}

/* ---- JSON errors and API keys ---- */

int serve_parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

void serve_json_error(http_request_t *req, int status, const char *msg)
{
    char body[512];
    size_t o = 0;

    o += (size_t)snprintf(body, sizeof(body), "{\"error\":\"");
    for (const char *p = msg; *p && o < sizeof(body) - 8; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            body[o++] = '\\';
            body[o++] = (char)ch;
        } else if (ch < 0x20) {
            body[o++] = ' ';
        } else {
            body[o++] = (char)ch;
        }
    }
    o += (size_t)snprintf(body + o, sizeof(body) - o, "\"}");
    http_respond(req, status, "application/json", NULL, body, o);
}

typedef struct auth_req {
    serve_main_t *m;
    http_request_t *req;
    unsigned char hash[32];
    void (*cb)(http_request_t *req, int64_t org_id, void *arg);
    void *arg;
} auth_req_t;

static auth_slot_t *auth_slot(serve_main_t *m, const unsigned char hash[32])
{
    return &m->auth_cache[(hash[0] | hash[1] << 8) % AUTH_CACHE_SLOTS];
}

static void on_auth_result(db_t *db, const PGresult *res, const char *err, void *arg)
{
    auth_req_t *a = arg;
    serve_main_t *m = a->m;
    int64_t org = 0;
    auth_slot_t *slot;

    serve_db_report(&m->ctx, db, res, err);
    if (err) {
        log_error("api key lookup failed: %s", err);
        serve_json_error(a->req, 503, "database unavailable");
        free(a);
        return;
    }
    if (PQntuples(res) == 1)
        org = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    slot = auth_slot(m, a->hash);
    memcpy(slot->hash, a->hash, 32);
    slot->org_id = org;
    slot->expires = uv_now(m->ctx.loop) + AUTH_CACHE_TTL_MS;
    if (org > 0) {
        a->cb(a->req, org, a->arg);
    } else {
        metrics_counter_add(m->auth_fail, 1);
        serve_json_error(a->req, 401, "invalid API key");
    }
    free(a);
}

void serve_auth(serve_ctx_t *ctx, http_request_t *req, void (*cb)(http_request_t *req, int64_t org_id, void *arg),
                void *arg)
{
    serve_main_t *m = (serve_main_t *)ctx;
    const char *h = http_request_header(req, "Authorization");
    const char *key;
    size_t klen;
    unsigned char hash[32];
    char hex[2 + 65];
    const char *params[1];
    auth_slot_t *slot;
    auth_req_t *a;
    db_t *db;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        metrics_counter_add(m->auth_fail, 1);
        serve_json_error(req, 401, "missing bearer token");
        return;
    }
    key = h + 7;
    while (*key == ' ')
        key++;
    klen = strlen(key);
    while (klen > 0 && key[klen - 1] == ' ')
        klen--;
    if (klen == 0 || klen > API_KEY_MAX) {
        metrics_counter_add(m->auth_fail, 1);
        serve_json_error(req, 401, "invalid API key");
        return;
    }
    crypto_sha256(key, klen, hash);
    slot = auth_slot(m, hash);
    if (slot->expires > uv_now(ctx->loop) && crypto_equal(slot->hash, hash, 32)) {
        if (slot->org_id > 0) {
            cb(req, slot->org_id, arg);
        } else {
            metrics_counter_add(m->auth_fail, 1);
            serve_json_error(req, 401, "invalid API key");
        }
        return;
    }
    db = serve_db(ctx);
    if (!db) {
        serve_json_error(req, 503, "database unavailable");
        return;
    }
    hex[0] = '\\';
    hex[1] = 'x';
    crypto_hex(hash, 32, hex + 2);
    params[0] = hex;
    a = xcalloc(1, sizeof(*a));
    a->m = m;
    a->req = req;
    memcpy(a->hash, hash, 32);
    a->cb = cb;
    a->arg = arg;
    if (db_exec_prepared(db, "auth_key", 1, params, on_auth_result, a) != 0) {
        free(a);
        serve_json_error(req, 503, "database unavailable");
    }
}

/* ---- /healthz and /metrics ---- */

static void on_healthz(http_request_t *req, void *arg)
{
    serve_ctx_t *ctx = arg;
    char body[128];
    size_t ready = serve_db_ready(ctx);
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"db_connections\":%zu}\n",
                     ctx->stopping ? "stopping" : "ok", ready);
    http_respond(req, 200, "application/json", NULL, body, (size_t)n);
}

static void on_metrics(http_request_t *req, void *arg)
{
    serve_ctx_t *ctx = arg;
    buf_t out;

    buf_init(&out, 16u << 20);
    if (metrics_render(ctx->metrics, &out) != 0) {
        buf_close(&out);
        http_respond_status(req, 500);
        return;
    }
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf_str(&out), out.len);
    buf_close(&out);
}

static double gauge_connections(void *arg)
{
    serve_ctx_t *ctx = arg;
    return ctx->server ? (double)http_server_connections(ctx->server) : 0;
}

static double gauge_inflight(void *arg)
{
    serve_ctx_t *ctx = arg;
    return ctx->server ? (double)http_server_inflight(ctx->server) : 0;
}

static double gauge_db_ready(void *arg)
{
    return (double)serve_db_ready(arg);
}

/* ---- configuration ---- */

static int parse_listen(const char *s, serve_config_t *cfg)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long port;
    size_t hl;

    if (!colon)
        return -1;
    hl = (size_t)(colon - s);
    if (hl > 0 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(cfg->listen_host))
        return -1;
    memcpy(cfg->listen_host, s, hl);
    cfg->listen_host[hl] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return -1;
    cfg->listen_port = (int)port;
    return 0;
}

/* An unsigned setting from the environment: dflt when unset, else lo..hi or an error. */
static int env_range(const char *name, unsigned dflt, unsigned lo, unsigned hi, unsigned *out)
{
    const char *v = getenv(name);
    char *end;
    unsigned long n;

    *out = dflt;
    if (!v || !*v)
        return 0;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || *end || v[0] == '-' || n < lo || n > hi) {
        fprintf(stderr, "herald: %s: expected %u..%u\n", name, lo, hi);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

static int load_config(serve_config_t *cfg, const char *listen_opt)
{
    const char *v;
    unsigned u;
    char err[512];

    memset(cfg, 0, sizeof(*cfg));
    v = listen_opt ? listen_opt : getenv("HERALD_LISTEN");
    if (parse_listen(v && *v ? v : "127.0.0.1:8080", cfg) != 0) {
        fprintf(stderr, "herald: HERALD_LISTEN: expected HOST:PORT, got '%s'\n", v);
        return -1;
    }
    v = getenv("HERALD_PUBLIC_URL");
    if (v && *v) {
        size_t n = strlen(v);
        while (n > 0 && v[n - 1] == '/')
            n--;
        if (n >= sizeof(cfg->public_url) || (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)) {
            fprintf(stderr, "herald: HERALD_PUBLIC_URL: expected an http(s) URL\n");
            return -1;
        }
        memcpy(cfg->public_url, v, n);
        cfg->public_url[n] = '\0';
    }
    if (env_range("HERALD_DB_POOL", 4, 1, SERVE_POOL_MAX, &u) != 0)
        return -1;
    cfg->pool_size = u;
    v = getenv("HERALD_MAX_UPLOAD_BYTES");
    cfg->max_upload_bytes = 1ull << 30;
    if (v && *v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || end == v || n == 0 || v[0] == '-') {
            fprintf(stderr, "herald: HERALD_MAX_UPLOAD_BYTES: expected a positive number of bytes\n");
            return -1;
        }
        cfg->max_upload_bytes = n;
    }
    if (env_range("HERALD_MAX_UPLOADS", 2, 1, 64, &u) != 0)
        return -1;
    cfg->max_uploads = u;
    if (env_range("HERALD_JOB_LEASE_S", 300, 1, 86400, &cfg->job_lease_s) != 0 ||
        env_range("HERALD_JOB_SWEEP_MS", 30000, 100, 3600000, &cfg->job_sweep_ms) != 0 ||
        env_range("HERALD_WEBHOOK_BATCH_GAP_US", 2000, 0, 1000000, &cfg->batch_gap_us) != 0)
        return -1;
    v = getenv("HERALD_WEBHOOK_INSECURE");
    cfg->webhook_insecure = v && strcmp(v, "1") == 0;
    v = getenv("TWILIO_AUTH_TOKEN");
    if (v && strlen(v) < sizeof(cfg->env_auth_token))
        snprintf(cfg->env_auth_token, sizeof(cfg->env_auth_token), "%s", v);
    v = getenv("HERALD_MASTER_KEY");
    if (v && *v) {
        if (crypto_key_parse(v, cfg->master_key) != 0) {
            fprintf(stderr, "herald: HERALD_MASTER_KEY: expected 32 bytes as 64 hex digits or base64\n");
            return -1;
        }
        cfg->have_master_key = 1;
    }
    v = getenv("HERALD_AUTOMATION_SECRET");
    if (v && strlen(v) < sizeof(cfg->automation_secret))
        snprintf(cfg->automation_secret, sizeof(cfg->automation_secret), "%s", v);
    if (storage_conninfo(cfg->conninfo, sizeof(cfg->conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: database: %s\n", err);
        return -1;
    }
    return 0;
}

/* ---- startup and shutdown ---- */

static void on_migrated(db_t *db, const storage_migrate_report_t *rep, const char *err, void *arg)
{
    serve_main_t *m = arg;
    (void)db;
    (void)rep;
    if (err)
        snprintf(m->migrate_err, sizeof(m->migrate_err), "%s", err);
    m->migrated = 1;
}

static void on_migrate_connect(db_t *db, const char *err, void *arg)
{
    serve_main_t *m = arg;
    if (err) {
        snprintf(m->migrate_err, sizeof(m->migrate_err), "%s", err);
        m->migrated = 1;
        return;
    }
    if (storage_migrate(db, on_migrated, m) != 0) {
        snprintf(m->migrate_err, sizeof(m->migrate_err), "could not queue the migrations");
        m->migrated = 1;
    }
}

/* Applies pending migrations on a connection of its own before the pool starts. */
static int migrate(serve_main_t *m)
{
    db_t *db;

    if (db_connect(m->ctx.loop, m->ctx.cfg.conninfo, on_migrate_connect, m, &db) != 0) {
        fprintf(stderr, "herald: database: bad connection settings\n");
        return -1;
    }
    while (!m->migrated)
        uv_run(m->ctx.loop, UV_RUN_ONCE);
    db_close(db, NULL, NULL);
    if (m->migrate_err[0]) {
        fprintf(stderr, "herald: database: %s\n", m->migrate_err);
        return -1;
    }
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_client_closed(void *arg)
{
    (void)arg;
}

static void on_webhook_detached(void *arg)
{
    serve_main_t *m = arg;
    serve_ctx_t *ctx = &m->ctx;

    if (ctx->client) {
        http_client_close(ctx->client, on_client_closed, NULL);
        ctx->client = NULL;
    }
    for (size_t i = 0; i < ctx->cfg.pool_size; i++)
        if (ctx->pool[i].db) {
            db_close(ctx->pool[i].db, NULL, NULL);
            ctx->pool[i].db = NULL;
            ctx->pool[i].ready = 0;
        }
    uv_close((uv_handle_t *)&ctx->pool_timer, on_handle_closed);
    uv_close((uv_handle_t *)&m->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&m->sigint, on_handle_closed);
}

static void finish(serve_main_t *m)
{
    set_state(m, SERVE_CLOSING);
    serve_webhook_detach(&m->ctx, on_webhook_detached, m);
}

static void on_server_done(void *arg)
{
    serve_main_t *m = arg;
    m->ctx.server = NULL;
    log_info("http server stopped");
    finish(m);
}

static void on_scheduler_detached(void *arg)
{
    serve_main_t *m = arg;
    http_server_shutdown(m->ctx.server, on_server_done, m);
}

static void on_signal(uv_signal_t *s, int signum)
{
    serve_main_t *m = s->data;

    if (m->state != SERVE_RUNNING) {
        log_warn("signal %d during shutdown: exiting now", signum);
        exit(1);
    }
    log_info("signal %d: shutting down (in-flight requests finish)", signum);
    set_state(m, SERVE_DRAINING);
    m->ctx.stopping = 1;
    serve_scheduler_detach(&m->ctx, on_scheduler_detached, m);
}

static int write_port_file(const char *path, int port)
{
    char tmp[600];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -1;
    return 0;
}

static const char auth_key_sql[] =
    "SELECT org_id FROM api_keys WHERE key_hash = $1::bytea AND revoked_at IS NULL";

static void usage(void)
{
    fprintf(stderr, "usage: herald serve [--listen HOST:PORT] [--port-file FILE]\n");
}

int cmd_serve(int argc, char **argv)
{
    static serve_main_t main_state; /* large (auth cache); one per process */
    serve_main_t *m = &main_state;
    serve_ctx_t *ctx = &m->ctx;
    const char *listen_opt = NULL, *port_file = NULL;
    http_server_config_t scfg = {0};
    uv_loop_t *loop;
    int rc, port;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_opt = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else {
            usage();
            return EXIT_USAGE;
        }
    }
    if (load_config(&ctx->cfg, listen_opt) != 0)
        return 1;
    if (port_file)
        snprintf(ctx->cfg.port_file, sizeof(ctx->cfg.port_file), "%s", port_file);
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    ctx->loop = loop;
    if (migrate(m) != 0)
        return 1;

    ctx->metrics = metrics_new();
    ctx->router = http_router_new();
    m->auth_fail = metrics_counter(ctx->metrics, "herald_api_auth_failures_total",
                                   "Requests refused for a missing or unknown API key.", "");
    if (metrics_gauge_fn(ctx->metrics, "herald_http_connections", "Open HTTP connections.", "", gauge_connections,
                         ctx) != 0 ||
        metrics_gauge_fn(ctx->metrics, "herald_http_inflight", "HTTP requests being handled.", "", gauge_inflight,
                         ctx) != 0 ||
        metrics_gauge_fn(ctx->metrics, "herald_db_connections_ready", "Pooled database connections up.", "",
                         gauge_db_ready, ctx) != 0)
        abort();
    if (http_client_new(loop, NULL, &ctx->client) != 0) {
        fprintf(stderr, "herald: could not initialise the HTTP client\n");
        return 1;
    }
    serve_db_statement(ctx, "auth_key", auth_key_sql);
    if (http_router_add(ctx->router, "GET", "/healthz", on_healthz, ctx) != 0 ||
        http_router_add(ctx->router, "GET", "/metrics", on_metrics, ctx) != 0) {
        fprintf(stderr, "herald: bad route\n");
        return 1;
    }
    if (serve_webhook_attach(ctx) != 0 || api_crm_attach(ctx) != 0 || api_broadcast_attach(ctx) != 0) {
        fprintf(stderr, "herald: could not set up the HTTP routes\n");
        return 1;
    }
    if (serve_scheduler_attach(ctx) != 0) {
        fprintf(stderr, "herald: could not start the scheduler\n");
        return 1;
    }

    for (size_t i = 0; i < ctx->cfg.pool_size; i++) {
        ctx->pool[i].ctx = ctx;
        pool_conn_start(&ctx->pool[i]);
    }
    uv_timer_init(loop, &ctx->pool_timer);
    ctx->pool_timer.data = ctx;
    uv_timer_start(&ctx->pool_timer, on_pool_tick, POOL_TICK_MS, POOL_TICK_MS);

    scfg.server_name = "herald";
    scfg.max_body = 1u << 20;
    /* Routes added with http_router_add_stream() (CSV uploads) get their bodies streamed. */
    scfg.stream_select = http_router_streams;
    http_server_new(loop, &scfg, http_router_dispatch, ctx->router, &ctx->server);
    rc = http_server_listen(ctx->server, ctx->cfg.listen_host, ctx->cfg.listen_port);
    if (rc != 0) {
        fprintf(stderr, "herald: listen on %s:%d: %s\n", ctx->cfg.listen_host, ctx->cfg.listen_port,
                uv_strerror(rc));
        return 1;
    }
    port = http_server_port(ctx->server);
    if (ctx->cfg.port_file[0] && write_port_file(ctx->cfg.port_file, port) != 0) {
        fprintf(stderr, "herald: cannot write %s\n", ctx->cfg.port_file);
        return 1;
    }
    printf("listening on %s:%d\n", ctx->cfg.listen_host, port);
    fflush(stdout);
    log_info("listening on %s:%d (%zu database connections)", ctx->cfg.listen_host, port, ctx->cfg.pool_size);
    if (ctx->cfg.webhook_insecure)
        log_warn("HERALD_WEBHOOK_INSECURE=1: webhook signatures are NOT checked (local development only)");
    else if (!ctx->cfg.public_url[0])
        log_warn("HERALD_PUBLIC_URL is unset: webhook signatures are checked against http://<Host header>");

    uv_signal_init(loop, &m->sigterm);
    uv_signal_init(loop, &m->sigint);
    m->sigterm.data = m->sigint.data = m;
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    set_state(m, SERVE_RUNNING);

    uv_run(loop, UV_RUN_DEFAULT);
    set_state(m, SERVE_DONE);
    serve_webhook_free(ctx);
    http_router_free(ctx->router);
    metrics_free(ctx->metrics);
    for (size_t i = 0; i < ctx->n_stmts; i++) {
        free(ctx->stmts[i].name);
        free(ctx->stmts[i].sql);
    }
    free(ctx->stmts);
    if (uv_loop_close(loop) != 0)
        log_warn("event loop closed with handles still open");
    log_info("stopped");
    return m->exit_status;
}
