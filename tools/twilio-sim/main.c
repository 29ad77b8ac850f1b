/*
 * twilio-sim: command line, process lifetime and the "inject" client command.
 * Parses flags (falling back to TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN), starts the
 * HTTP API on one libuv loop, prints "listening on HOST:PORT" as the first line of
 * stdout, flushes the ledger every 200 ms, and on SIGTERM/SIGINT stops accepting,
 * finishes in-flight requests, closes everything and flushes the ledger.
 */
#include "sim.h"

#include "common/log.h"
#include "common/xalloc.h"
#include "http/form.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: twilio-sim --listen HOST:PORT --account-sid AC... --auth-token TOKEN [options]\n"
          "       twilio-sim inject --sim URL --from E164 --to E164 --body TEXT\n"
          "options:\n"
          "  --port-file F          write the bound port to F\n"
          "  --api-key SID:SECRET   accept this API key of the main account for Basic auth (repeatable)\n"
          "  --account SID:TOKEN    serve another account too (repeatable): its messages, lists and\n"
          "                         status callbacks (signed with TOKEN) are its own\n"
          "  --ledger FILE.jsonl    append every accepted message as a JSON line\n"
          "  --inbound-url URL      where inbound SMS webhooks are POSTed\n"
          "  --mps N                segments/s for every sender (else by kind:)\n"
          "  --mps-long N (1)  --mps-tollfree N (3)  --mps-short N (100)\n"
          "  --queue-max-s N        sender queue length in seconds before 30001 (14400)\n"
          "  --concurrency N        account concurrent requests before 429/20429 (0: none)\n"
          "  --fail-500 F  --fail-429 F  --drop-connection F  --lose-response F   fault fractions\n"
          "  --latency-ms N  --latency-jitter-ms N\n"
          "  --undelivered F  --failed F   final status ratios (else delivered)\n"
          "  --sending-ms N (20)  --delivery-ms N (200)   status timeline\n"
          "  --handset E164[,stop=F][,delay=MS][,reply=TEXT]   a number that replies (repeatable)\n"
          "  --callback-queue-max N (500000)  --callback-attempts N (12)   webhook queue bound and\n"
          "                         deliveries per webhook (retried with backoff on no answer, 5xx, 429)\n"
          "  --callback-backoff-ms N (250)   first retry delay; doubles per attempt, capped at 30 s\n"
          "  --test-credentials     any From but +15005550006 fails with 21606\n"
          "  --seed N               fault RNG seed  --max-messages N (200000)  --max-body BYTES\n"
          "  --log-level error|warn|info|debug\n",
          f);
}

enum {
    OPT_LISTEN = 256,
    OPT_PORT_FILE,
    OPT_ACCOUNT,
    OPT_TOKEN,
    OPT_API_KEY,
    OPT_ACCOUNT_EXTRA,
    OPT_LEDGER,
    OPT_INBOUND,
    OPT_MPS,
    OPT_MPS_LONG,
    OPT_MPS_TF,
    OPT_MPS_SHORT,
    OPT_QUEUE_MAX,
    OPT_CONCURRENCY,
    OPT_FAIL500,
    OPT_FAIL429,
    OPT_DROP,
    OPT_LOSE,
    OPT_LATENCY,
    OPT_JITTER,
    OPT_UNDELIVERED,
    OPT_FAILED,
    OPT_SENDING,
    OPT_DELIVERY,
    OPT_HANDSET,
    OPT_TEST_CREDS,
    OPT_SEED,
    OPT_MAX_MESSAGES,
    OPT_MAX_BODY,
    OPT_LOG_LEVEL,
    OPT_CB_QUEUE,
    OPT_CB_ATTEMPTS,
    OPT_CB_BACKOFF,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"account-sid", required_argument, NULL, OPT_ACCOUNT},
    {"auth-token", required_argument, NULL, OPT_TOKEN},
    {"api-key", required_argument, NULL, OPT_API_KEY},
    {"account", required_argument, NULL, OPT_ACCOUNT_EXTRA},
    {"ledger", required_argument, NULL, OPT_LEDGER},
    {"inbound-url", required_argument, NULL, OPT_INBOUND},
    {"mps", required_argument, NULL, OPT_MPS},
    {"mps-long", required_argument, NULL, OPT_MPS_LONG},
    {"mps-tollfree", required_argument, NULL, OPT_MPS_TF},
    {"mps-short", required_argument, NULL, OPT_MPS_SHORT},
    {"queue-max-s", required_argument, NULL, OPT_QUEUE_MAX},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"fail-500", required_argument, NULL, OPT_FAIL500},
    {"fail-429", required_argument, NULL, OPT_FAIL429},
    {"drop-connection", required_argument, NULL, OPT_DROP},
    {"lose-response", required_argument, NULL, OPT_LOSE},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},
    {"latency-jitter-ms", required_argument, NULL, OPT_JITTER},
    {"undelivered", required_argument, NULL, OPT_UNDELIVERED},
    {"failed", required_argument, NULL, OPT_FAILED},
    {"sending-ms", required_argument, NULL, OPT_SENDING},
    {"delivery-ms", required_argument, NULL, OPT_DELIVERY},
    {"handset", required_argument, NULL, OPT_HANDSET},
    {"test-credentials", no_argument, NULL, OPT_TEST_CREDS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"max-messages", required_argument, NULL, OPT_MAX_MESSAGES},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"callback-queue-max", required_argument, NULL, OPT_CB_QUEUE},
    {"callback-attempts", required_argument, NULL, OPT_CB_ATTEMPTS},
    {"callback-backoff-ms", required_argument, NULL, OPT_CB_BACKOFF},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_fraction(const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || d < 0 || d > 1)
        return -1;
    *out = d;
    return 0;
}

static int parse_uint(const char *v, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long u = strtoul(v, &end, 10);
    if (*end || end == v || v[0] == '-' || u > max)
        return -1;
    *out = u;
    return 0;
}

static int parse_handset(const char *spec, sim_handset_t *h)
{
    memset(h, 0, sizeof(*h));
    const char *comma = strchr(spec, ',');
    h->number = xstrndup(spec, comma ? (size_t)(comma - spec) : strlen(spec));
    while (comma) {
        const char *item = comma + 1;
        if (strncmp(item, "reply=", 6) == 0) {
            h->reply = xstrdup(item + 6); /* the rest of the spec, commas included */
            return 0;
        }
        comma = strchr(item, ',');
        char kv[64];
        size_t n = comma ? (size_t)(comma - item) : strlen(item);
        if (n >= sizeof(kv))
            return -1;
        memcpy(kv, item, n);
        kv[n] = '\0';
        unsigned long u;
        if (strncmp(kv, "stop=", 5) == 0) {
            if (parse_fraction(kv + 5, &h->stop_ratio) != 0)
                return -1;
        } else if (strncmp(kv, "delay=", 6) == 0) {
            if (parse_uint(kv + 6, 3600000, &u) != 0)
                return -1;
            h->delay_ms = (unsigned)u;
        } else {
            return -1;
        }
    }
    return 0;
}

static int parse_listen(const char *v, sim_config_t *cfg)
{
    const char *colon = strrchr(v, ':');
    unsigned long port;
    if (!colon || parse_uint(colon + 1, 65535, &port) != 0)
        return -1;
    const char *host = v;
    size_t hlen = (size_t)(colon - v);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    free(cfg->listen_host);
    cfg->listen_host = xstrndup(host, hlen);
    cfg->listen_port = (int)port;
    return 0;
}

static void config_free(sim_config_t *c)
{
    free(c->listen_host);
    free(c->port_file);
    free(c->account_sid);
    free(c->auth_token);
    free(c->ledger_path);
    free(c->inbound_url);
    for (size_t i = 0; i < c->napi_keys; i++) {
        free(c->api_keys[i].sid);
        free(c->api_keys[i].secret);
    }
    /* accounts[0] borrows account_sid and auth_token. */
    for (size_t i = 1; i < c->naccounts; i++) {
        free(c->accounts[i].sid);
        free(c->accounts[i].secret);
    }
    for (size_t i = 0; i < c->nhandsets; i++) {
        free(c->handsets[i].number);
        free(c->handsets[i].reply);
    }
}

/* Returns 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, sim_config_t *c, size_t *max_body)
{
    c->listen_host = xstrdup("127.0.0.1");
    c->listen_port = 4010;
    c->mps_long = 1;
    c->mps_tollfree = 3;
    c->mps_short = 100;
    c->queue_max_s = 14400;
    c->sending_ms = 20;
    c->delivery_ms = 200;
    c->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    c->naccounts = 1; /* [0], the main account, is filled in after the flags */
    int opt;
    unsigned long u;
    double d;
    const char *bad = NULL;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        const char *v = optarg;
        switch (opt) {
        case OPT_LISTEN:
            if (parse_listen(v, c) != 0)
                bad = "--listen";
            break;
        case OPT_PORT_FILE:
            free(c->port_file);
            c->port_file = xstrdup(v);
            break;
        case OPT_ACCOUNT:
            free(c->account_sid);
            c->account_sid = xstrdup(v);
            break;
        case OPT_TOKEN:
            free(c->auth_token);
            c->auth_token = xstrdup(v);
            break;
        case OPT_API_KEY: {
            const char *colon = strchr(v, ':');
            if (!colon || c->napi_keys == SIM_MAX_API_KEYS || strlen(v) > 300) {
                bad = "--api-key";
                break;
            }
            c->api_keys[c->napi_keys].sid = xstrndup(v, (size_t)(colon - v));
            c->api_keys[c->napi_keys].secret = xstrdup(colon + 1);
            c->napi_keys++;
            break;
        }
        case OPT_ACCOUNT_EXTRA: {
            const char *colon = strchr(v, ':');
            if (!colon || colon == v || !colon[1] || c->naccounts == SIM_MAX_ACCOUNTS || strlen(v) > 257 ||
                (size_t)(colon - v) > 128) {
                bad = "--account";
                break;
            }
            c->accounts[c->naccounts].sid = xstrndup(v, (size_t)(colon - v));
            c->accounts[c->naccounts].secret = xstrdup(colon + 1);
            c->naccounts++;
            break;
        }
        case OPT_LEDGER:
            free(c->ledger_path);
            c->ledger_path = xstrdup(v);
            break;
        case OPT_INBOUND:
            free(c->inbound_url);
            c->inbound_url = xstrdup(v);
            break;
        case OPT_MPS:
        case OPT_MPS_LONG:
        case OPT_MPS_TF:
        case OPT_MPS_SHORT: {
            char *end;
            d = strtod(v, &end);
            if (*end || d <= 0) {
                bad = "--mps";
                break;
            }
            if (opt == OPT_MPS)
                c->mps_override = d;
            else if (opt == OPT_MPS_LONG)
                c->mps_long = d;
            else if (opt == OPT_MPS_TF)
                c->mps_tollfree = d;
            else
                c->mps_short = d;
            break;
        }
        case OPT_QUEUE_MAX:
            if (parse_uint(v, 100000000, &u) != 0)
                bad = "--queue-max-s";
            else
                c->queue_max_s = (unsigned)u;
            break;
        case OPT_CONCURRENCY:
            if (parse_uint(v, 1000000, &u) != 0)
                bad = "--concurrency";
            else
                c->concurrency = u;
            break;
        case OPT_FAIL500:
            if (parse_fraction(v, &c->fail_500) != 0)
                bad = "--fail-500";
            break;
        case OPT_FAIL429:
            if (parse_fraction(v, &c->fail_429) != 0)
                bad = "--fail-429";
            break;
        case OPT_DROP:
            if (parse_fraction(v, &c->drop_connection) != 0)
                bad = "--drop-connection";
            break;
        case OPT_LOSE:
            if (parse_fraction(v, &c->lose_response) != 0)
                bad = "--lose-response";
            break;
        case OPT_LATENCY:
            if (parse_uint(v, 600000, &u) != 0)
                bad = "--latency-ms";
            else
                c->latency_ms = (unsigned)u;
            break;
        case OPT_JITTER:
            if (parse_uint(v, 600000, &u) != 0)
                bad = "--latency-jitter-ms";
            else
                c->latency_jitter_ms = (unsigned)u;
            break;
        case OPT_UNDELIVERED:
            if (parse_fraction(v, &c->ratio_undelivered) != 0)
                bad = "--undelivered";
            break;
        case OPT_FAILED:
            if (parse_fraction(v, &c->ratio_failed) != 0)
                bad = "--failed";
            break;
        case OPT_SENDING:
            if (parse_uint(v, 3600000, &u) != 0)
                bad = "--sending-ms";
            else
                c->sending_ms = (unsigned)u;
            break;
        case OPT_DELIVERY:
            if (parse_uint(v, 3600000, &u) != 0)
                bad = "--delivery-ms";
            else
                c->delivery_ms = (unsigned)u;
            break;
        case OPT_HANDSET:
            if (c->nhandsets == SIM_MAX_HANDSETS || parse_handset(v, &c->handsets[c->nhandsets]) != 0) {
                if (c->nhandsets < SIM_MAX_HANDSETS) {
                    free(c->handsets[c->nhandsets].number);
                    free(c->handsets[c->nhandsets].reply);
                }
                bad = "--handset";
            } else {
                c->nhandsets++;
            }
            break;
        case OPT_TEST_CREDS:
            c->test_credentials = 1;
            break;
        case OPT_SEED:
            if (parse_uint(v, (unsigned long)-1, &u) != 0)
                bad = "--seed";
            else
                c->seed = u;
            break;
        case OPT_MAX_MESSAGES:
            if (parse_uint(v, 100000000, &u) != 0 || u == 0)
                bad = "--max-messages";
            else
                c->max_messages = u;
            break;
        case OPT_MAX_BODY:
            if (parse_uint(v, 64ul << 20, &u) != 0 || u == 0)
                bad = "--max-body";
            else
                *max_body = u;
            break;
        case OPT_LOG_LEVEL:
            if (log_set_level_name(v) != 0)
                bad = "--log-level";
            break;
        case OPT_CB_QUEUE:
            if (parse_uint(v, 100000000, &u) != 0 || u == 0)
                bad = "--callback-queue-max";
            else
                c->callback_queue_max = u;
            break;
        case OPT_CB_ATTEMPTS:
            if (parse_uint(v, 1000, &u) != 0 || u == 0)
                bad = "--callback-attempts";
            else
                c->callback_attempts = (unsigned)u;
            break;
        case OPT_CB_BACKOFF:
            if (parse_uint(v, 60000, &u) != 0 || u == 0)
                bad = "--callback-backoff-ms";
            else
                c->callback_backoff_ms = (unsigned)u;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "twilio-sim: bad value for %s: %s\n", bad, v);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twilio-sim: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    if (!c->account_sid && getenv("TWILIO_ACCOUNT_SID"))
        c->account_sid = xstrdup(getenv("TWILIO_ACCOUNT_SID"));
    if (!c->auth_token && getenv("TWILIO_AUTH_TOKEN"))
        c->auth_token = xstrdup(getenv("TWILIO_AUTH_TOKEN"));
    if (!c->account_sid || !c->auth_token || !*c->account_sid || !*c->auth_token) {
        fputs("twilio-sim: --account-sid and --auth-token (or TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN) are "
              "required\n",
              stderr);
        return 2;
    }
    if (strlen(c->account_sid) > 128 || strlen(c->auth_token) > 128) {
        fputs("twilio-sim: account sid and auth token must be at most 128 characters\n", stderr);
        return 2;
    }
    c->accounts[0].sid = c->account_sid;
    c->accounts[0].secret = c->auth_token;
    for (size_t i = 1; i < c->naccounts; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->accounts[i].sid, c->accounts[j].sid) == 0) {
                fprintf(stderr, "twilio-sim: account %s given twice\n", c->accounts[i].sid);
                return 2;
            }
    return 0;
}

/* ---- serving ---- */

static void on_flush_timer(uv_timer_t *t)
{
    sim_t *s = t->data;
    if (s->ledger)
        fflush(s->ledger);
}

static void on_client_closed(void *arg)
{
    (void)arg;
}

static void on_server_done(void *arg)
{
    sim_t *s = arg;
    s->server = NULL;
    size_t left = sim_events_stop(s);
    if (left > 0)
        log_warn("twilio-sim: %zu webhooks not delivered at shutdown", left);
    if (s->client) {
        http_client_close(s->client, on_client_closed, s);
        s->client = NULL;
    }
    uv_close((uv_handle_t *)&s->event_timer, NULL);
    uv_close((uv_handle_t *)&s->retry_timer, NULL);
    uv_close((uv_handle_t *)&s->flush_timer, NULL);
    if (s->ledger)
        fflush(s->ledger);
    log_info("twilio-sim: stopped after %llu messages", (unsigned long long)s->stat_created);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    sim_t *s = sig->data;
    log_info("twilio-sim: signal %d, shutting down", signum);
    s->stopping = 1;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    if (s->server)
        http_server_shutdown(s->server, on_server_done, s);
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static int serve(int argc, char **argv)
{
    static sim_t sim;
    sim_t *s = &sim;
    size_t max_body = 256 * 1024;
    int rc = parse_args(argc, argv, &s->cfg, &max_body);
    if (rc != 0) {
        config_free(&s->cfg);
        return rc;
    }
    uv_loop_t *loop = uv_default_loop();
    s->loop = loop;
    s->rng = s->cfg.seed;
    s->salt = sim_rand(s);
    if (s->cfg.ledger_path) {
        s->ledger = fopen(s->cfg.ledger_path, "a");
        if (!s->ledger) {
            fprintf(stderr, "twilio-sim: cannot open ledger %s\n", s->cfg.ledger_path);
            config_free(&s->cfg);
            return 1;
        }
        setvbuf(s->ledger, NULL, _IOFBF, 1 << 20);
    }
    sim_store_init(s);
    sim_api_init(s);
    sim_events_init(s);

    http_server_config_t hcfg = {.max_body = max_body,
                                 .max_header_bytes = 16 * 1024,
                                 .max_headers = 64,
                                 .max_url = 4096,
                                 .server_name = "twilio-sim",
                                 .shutdown_timeout_ms = 5000};
    http_server_new(loop, &hcfg, http_router_dispatch, s->router, &s->server);
    rc = http_server_listen(s->server, s->cfg.listen_host, s->cfg.listen_port);
    if (rc != 0) {
        fprintf(stderr, "twilio-sim: cannot listen on %s:%d: %s\n", s->cfg.listen_host, s->cfg.listen_port,
                rc == HTTP_EINVAL ? "invalid address" : uv_strerror(rc));
        s->stopping = 1;
        http_server_shutdown(s->server, on_server_done, s);
        uv_run(loop, UV_RUN_DEFAULT);
        rc = 1;
        goto out;
    }
    int port = http_server_port(s->server);
    const char *fmt = strchr(s->cfg.listen_host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n";
    printf(fmt, s->cfg.listen_host, port);
    fflush(stdout);
    if (s->cfg.port_file && write_port_file(s->cfg.port_file, port) != 0)
        log_warn("twilio-sim: cannot write port file %s", s->cfg.port_file);

    uv_timer_init(loop, &s->flush_timer);
    s->flush_timer.data = s;
    uv_timer_start(&s->flush_timer, on_flush_timer, 200, 200);
    uv_signal_init(loop, &s->sigterm);
    uv_signal_init(loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    sim_events_close(s);
    sim_api_close(s);
    sim_store_close(s);
    if (s->ledger && fclose(s->ledger) != 0)
        rc = 1;
    s->ledger = NULL;
    if (uv_loop_close(loop) != 0)
        log_warn("twilio-sim: loop still had handles at exit");
    config_free(&s->cfg);
    return rc;
}

/* ---- inject ---- */

typedef struct inject {
    int status;
    http_client_t *client;
} inject_t;

static void on_inject_done(const http_response_t *resp, void *arg)
{
    inject_t *in = arg;
    if (resp->status == 0)
        fprintf(stderr, "twilio-sim inject: %s\n", resp->error ? resp->error : "request failed");
    else
        printf("%ld %s\n", resp->status, resp->body);
    in->status = resp->status >= 200 && resp->status < 300 ? 0 : 1;
    http_client_close(in->client, NULL, NULL);
}

static int inject(int argc, char **argv)
{
    const char *sim_url = NULL, *from = NULL, *to = NULL, *body = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = strcmp(argv[i], "--sim") == 0    ? &sim_url
                           : strcmp(argv[i], "--from") == 0 ? &from
                           : strcmp(argv[i], "--to") == 0   ? &to
                           : strcmp(argv[i], "--body") == 0 ? &body
                                                            : NULL;
        if (!dst || i + 1 == argc) {
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!sim_url || !from || !to || !body) {
        usage(stderr);
        return 2;
    }
    buf_t url, form;
    buf_init(&url, 8192);
    buf_init(&form, 64 * 1024);
    size_t ulen = strlen(sim_url);
    while (ulen > 0 && sim_url[ulen - 1] == '/')
        ulen--;
    int rc = buf_append(&url, sim_url, ulen);
    if (!strstr(sim_url, "/sim/inbound"))
        rc |= buf_puts(&url, "/sim/inbound");
    char enc[3 * 4096 + 1];
    const char *names[] = {"From", "To", "Body"};
    const char *values[] = {from, to, body};
    for (int i = 0; i < 3; i++) {
        if (http_form_encode(values[i], enc, sizeof(enc)) < 0) {
            fputs("twilio-sim inject: argument too long\n", stderr);
            buf_close(&url);
            buf_close(&form);
            return 2;
        }
        rc |= buf_printf(&form, "%s%s=%s", i ? "&" : "", names[i], enc);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    inject_t in = {.status = 1};
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    if (rc != 0 || http_client_new(&loop, NULL, &in.client) != 0 ||
        http_client_request(in.client, "POST", buf_str(&url), headers, form.data, form.len, NULL,
                            on_inject_done, &in) != 0) {
        fputs("twilio-sim inject: cannot start the request\n", stderr);
        if (in.client)
            http_client_close(in.client, NULL, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    buf_close(&url);
    buf_close(&form);
    return in.status;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "inject") == 0)
        return inject(argc - 1, argv + 1);
    return serve(argc, argv);
}
