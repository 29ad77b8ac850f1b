/*
 * herald campaign start|pause|resume|cancel|run|status: the scheduler's verbs.
 *
 * Control verbs read the campaign's status, let the scheduler's state machine
 * (sched_control_plan) decide the new one, and apply it with a compare-and-set, so
 * two operators racing cannot skip a state; running schedulers pick the change up
 * within half a second. `run` drains one campaign in the foreground with the
 * scheduler on this process's loop and draws progress (a bar on a terminal, plain
 * lines otherwise); `status` shows counts by state, the send rate and an ETA.
 * They are plugged into app/cmd_campaign.c by name (cmd_campaign_<verb>).
 */
#include "app/cli.h"
#include "app/commands.h"
#include "app/org_creds.h"
#include "common/log.h"
#include "scheduler/scheduler.h"

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cmd_campaign_start(int argc, char **argv);
int cmd_campaign_pause(int argc, char **argv);
int cmd_campaign_resume(int argc, char **argv);
int cmd_campaign_cancel(int argc, char **argv);
int cmd_campaign_run(int argc, char **argv);
int campaign_control_status(int argc, char **argv);
int campaign_control_command(int argc, char **argv);

/* Parses "VERB ID [--org ORG] [--json] [--quiet]"; returns 0 or EXIT_USAGE after a message. */
static int parse_args(int argc, char **argv, const char **id, const char **org, int *json, int *quiet)
{
    *id = NULL;
    *org = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--org") == 0 && i + 1 < argc) {
            *org = argv[++i];
        } else if (strncmp(argv[i], "--org=", 6) == 0) {
            *org = argv[i] + 6;
        } else if (json && strcmp(argv[i], "--json") == 0) {
            *json = 1;
        } else if (quiet && strcmp(argv[i], "--quiet") == 0) {
            *quiet = 1;
        } else if (!*id && argv[i][0] != '-') {
            *id = argv[i];
        } else {
            fprintf(stderr, "herald: campaign %s: unexpected argument '%s'\n", argv[0], argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!*id || strspn(*id, "0123456789") != strlen(*id) || strlen(*id) > 18 || atoll(*id) <= 0) {
        fprintf(stderr, "usage: herald campaign %s ID [--org ORG]\n", argv[0]);
        return EXIT_USAGE;
    }
    return 0;
}

/*
 * Applies verb to campaign id (a decimal string) in s's org. Prints nothing on
 * success; returns 0, or 1 after a one-line reason. *new_status gets the status.
 * With join_running, a START that finds the campaign already running (another
 * `campaign run` or herald process started it first) succeeds: there is nothing to do.
 */
static int apply_verb(cli_session_t *s, const char *id, sched_verb_t verb, int join_running, char *new_status,
                      size_t len)
{
    char org[24], next_s[24], why[160];
    const char *err;
    PGresult *r = NULL, *w = NULL;
    int rc = 1;

    snprintf(org, sizeof(org), "%" PRId64, s->org_id);
    /* Compare-and-set: a concurrent change makes the set fail, and then we read again. */
    for (int tries = 0; tries < 3; tries++) {
        const char *p[2] = {org, id};
        sched_campaign_status_t to;
        int64_t next_run;
        if (cli_exec(s, sched_sql_campaign_get, 2, p, &r, &err) != 0) {
            fprintf(stderr, "herald: campaign %s: %s\n", id, err);
            goto out;
        }
        if (PQntuples(r) != 1) {
            fprintf(stderr, "herald: campaign %s: no such campaign in org %s\n", id, org);
            goto out;
        }
        if (join_running && verb == SCHED_START && strcmp(PQgetvalue(r, 0, 0), "running") == 0) {
            snprintf(new_status, len, "running");
            rc = 0;
            goto out;
        }
        if (sched_control_plan(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                               PQgetvalue(r, 0, 3)[0] == 't', verb, (int64_t)time(NULL), &to, &next_run, why,
                               sizeof(why)) != 0) {
            fprintf(stderr, "herald: campaign %s: %s\n", id, why);
            goto out;
        }
        snprintf(next_s, sizeof(next_s), "%" PRId64, next_run);
        {
            const char *q[5] = {org, id, PQgetvalue(r, 0, 0), sched_campaign_status_name(to),
                                next_run ? next_s : ""};
            if (cli_exec(s, sched_sql_campaign_set, 5, q, &w, &err) != 0) {
                fprintf(stderr, "herald: campaign %s: %s\n", id, err);
                goto out;
            }
        }
        if (PQgetvalue(w, 0, 0)[0] == 't') {
            char ctx[40];
            snprintf(ctx, sizeof(ctx), "campaign %s", id);
            log_cinfo(ctx, "%s -> %s", PQgetvalue(r, 0, 0), sched_campaign_status_name(to));
            snprintf(new_status, len, "%s", sched_campaign_status_name(to));
            rc = 0;
            goto out;
        }
        PQclear(r);
        PQclear(w);
        r = w = NULL;
    }
    fprintf(stderr, "herald: campaign %s: status keeps changing; try again\n", id);
out:
    if (r)
        PQclear(r);
    if (w)
        PQclear(w);
    return rc;
}

static int control(int argc, char **argv, sched_verb_t verb)
{
    const char *id, *org;
    cli_session_t s;
    char st[32];
    int rc;

    if ((rc = parse_args(argc, argv, &id, &org, NULL, NULL)) != 0)
        return rc;
    if (cli_session_open(&s) != 0)
        return 1;
    rc = cli_session_org(&s, org) != 0 ? 1 : apply_verb(&s, id, verb, 0, st, sizeof(st));
    if (rc == 0)
        printf("campaign %s: %s\n", id, st);
    cli_session_close(&s);
    return rc;
}

int cmd_campaign_start(int argc, char **argv)
{
    return control(argc, argv, SCHED_START);
}

int cmd_campaign_pause(int argc, char **argv)
{
    return control(argc, argv, SCHED_PAUSE);
}

int cmd_campaign_resume(int argc, char **argv)
{
    return control(argc, argv, SCHED_RESUME);
}

int cmd_campaign_cancel(int argc, char **argv)
{
    return control(argc, argv, SCHED_CANCEL);
}

/* ---- counts ---- */

typedef struct counts {
    long long total, queued, sending, sent, delivered, undelivered, failed, canceled, suppressed;
    char status[24];
} counts_t;

static int read_counts(cli_session_t *s, const char *id, counts_t *c, const char **err)
{
    const char *p[1] = {id};
    PGresult *r;

    memset(c, 0, sizeof(*c));
    if (cli_exec(s, "SELECT status FROM campaigns WHERE id = $1::bigint", 1, p, &r, err) != 0)
        return -1;
    if (PQntuples(r) == 1)
        snprintf(c->status, sizeof(c->status), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (cli_exec(s, sched_sql_campaign_counts, 1, p, &r, err) != 0)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *st = PQgetvalue(r, i, 0);
        long long n = atoll(PQgetvalue(r, i, 1));
        c->total += n;
        if (!strcmp(st, "queued"))
            c->queued = n;
        else if (!strcmp(st, "sending"))
            c->sending = n;
        else if (!strcmp(st, "sent"))
            c->sent = n;
        else if (!strcmp(st, "delivered"))
            c->delivered = n;
        else if (!strcmp(st, "undelivered"))
            c->undelivered = n;
        else if (!strcmp(st, "failed"))
            c->failed = n;
        else if (!strcmp(st, "canceled"))
            c->canceled = n;
        else if (!strcmp(st, "suppressed"))
            c->suppressed = n;
    }
    PQclear(r);
    return 0;
}

static int read_status(cli_session_t *s, const char *id, char *out, size_t len, const char **err)
{
    const char *p[1] = {id};
    PGresult *r;

    if (cli_exec(s, "SELECT status FROM campaigns WHERE id = $1::bigint", 1, p, &r, err) != 0)
        return -1;
    snprintf(out, len, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return 0;
}

int campaign_control_status(int argc, char **argv)
{
    const char *id, *org, *err;
    int json = 0, rc;
    cli_session_t s;
    counts_t c;
    PGresult *r = NULL;
    double rate10 = 0, rate60 = 0, seg10 = 0, eta = -1;
    long long pending;

    if ((rc = parse_args(argc, argv, &id, &org, &json, NULL)) != 0)
        return rc;
    if (cli_session_open(&s) != 0)
        return 1;
    rc = 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    {
        char orgb[24];
        const char *p[2] = {orgb, id};
        snprintf(orgb, sizeof(orgb), "%" PRId64, s.org_id);
        if (cli_exec(&s, sched_sql_campaign_get, 2, p, &r, &err) != 0)
            goto failed;
        if (PQntuples(r) != 1) {
            fprintf(stderr, "herald: campaign %s: no such campaign in org %s\n", id, orgb);
            goto out;
        }
        PQclear(r);
        r = NULL;
    }
    if (read_counts(&s, id, &c, &err) != 0)
        goto failed;
    {
        const char *p[1] = {id};
        if (cli_exec(&s, sched_sql_campaign_rate, 1, p, &r, &err) != 0)
            goto failed;
        rate10 = atof(PQgetvalue(r, 0, 0));
        rate60 = atof(PQgetvalue(r, 0, 1));
        seg10 = atof(PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    r = NULL;
    {
        const char *p[1] = {id};
        if (cli_exec(&s,
                     "SELECT count(*), COALESCE(sum(rows_total), 0), COALESCE(sum(accepted), 0), "
                     "COALESCE(sum(invalid), 0), COALESCE(sum(duplicate), 0), COALESCE(sum(suppressed), 0), "
                     "COALESCE(sum(segments), 0) FROM campaign_uploads WHERE campaign_id = $1::bigint",
                     1, p, &r, &err) != 0)
            goto failed;
    }
    pending = c.queued + c.sending;
    if (pending > 0 && (rate10 > 0 || rate60 > 0))
        eta = (double)pending / (rate10 > 0 ? rate10 : rate60);
    if (json) {
        json_t *j = json_pack("{s:I, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:f, s:f, s:f}", "id",
                              (json_int_t)atoll(id), "status", c.status, "total", (json_int_t)c.total, "counts",
                              "queued", (json_int_t)c.queued, "sending", (json_int_t)c.sending, "sent",
                              (json_int_t)c.sent, "delivered", (json_int_t)c.delivered, "undelivered",
                              (json_int_t)c.undelivered, "failed", (json_int_t)c.failed, "canceled",
                              (json_int_t)c.canceled, "suppressed", (json_int_t)c.suppressed, "rate_mps", rate10,
                              "rate_mps_60s", rate60, "segments_per_s", seg10);
        static const char *const names[] = {"uploads", "rows", "accepted", "invalid", "duplicate", "suppressed",
                                            "segments"};
        json_t *u = json_object();
        char *txt;
        for (int k = 0; k < 7; k++)
            json_object_set_new(u, names[k], json_integer(strtoll(PQgetvalue(r, 0, k), NULL, 10)));
        json_object_set_new(j, "uploads", u);
        if (eta >= 0)
            json_object_set_new(j, "eta_seconds", json_integer((json_int_t)(eta + 0.5)));
        else
            json_object_set_new(j, "eta_seconds", json_null());
        txt = json_dumps(j, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("campaign %s: %s\n", id, c.status);
        printf("total: %lld\nqueued: %lld\nsending: %lld\nsent: %lld\ndelivered: %lld\nundelivered: %lld\n"
               "failed: %lld\ncanceled: %lld\nsuppressed: %lld\n",
               c.total, c.queued, c.sending, c.sent, c.delivered, c.undelivered, c.failed, c.canceled, c.suppressed);
        printf("rate: %.1f msg/s (10 s), %.1f msg/s (60 s), %.1f segments/s\n", rate10, rate60, seg10);
        if (eta >= 0)
            printf("eta: %.0f s\n", eta);
        else
            printf("eta: %s\n", pending ? "unknown (not sending now)" : "done");
        printf("uploads: %s (rows %s, accepted %s, invalid %s, duplicate %s, suppressed %s, segments %s)\n",
               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4),
               PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6));
    }
    rc = 0;
    goto out;
failed:
    fprintf(stderr, "herald: campaign status: %s\n", err);
out:
    if (r)
        PQclear(r);
    cli_session_close(&s);
    return rc;
}

/* ---- run ---- */

typedef struct runner {
    sched_t *sched;
    int stopped;
    int interrupted;
    uv_signal_t sigint, sigterm;
} runner_t;

static void on_stopped(void *arg)
{
    ((runner_t *)arg)->stopped = 1;
}

static void on_signal(uv_signal_t *h, int signum)
{
    runner_t *r = h->data;
    (void)signum;
    r->interrupted = 1;
}

static void draw(int tty, const counts_t *c, double rate, int force)
{
    long long done = c->total - c->queued - c->sending;
    double frac = c->total ? (double)done / (double)c->total : 1.0;
    double eta = rate > 0 ? (double)(c->queued + c->sending) / rate : -1;

    if (tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %3.0f%% %lld/%lld sent %lld failed %lld %7.0f msg/s", bar, frac * 100, done, c->total,
                c->sent + c->delivered + c->undelivered, c->failed, rate);
        if (eta >= 0)
            fprintf(stderr, " ETA %5.0fs", eta);
        else
            fprintf(stderr, "           ");
        if (force)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "herald: campaign: %s %lld/%lld done (%.0f%%), sent %lld, failed %lld, suppressed %lld, "
                        "%.0f msg/s",
                c->status, done, c->total, frac * 100, c->sent + c->delivered + c->undelivered, c->failed,
                c->suppressed, rate);
        if (eta >= 0)
            fprintf(stderr, ", ETA %.0fs", eta);
        fputc('\n', stderr);
    }
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

int cmd_campaign_run(int argc, char **argv)
{
    const char *id, *org, *err;
    int quiet = 0, rc, tty = isatty(STDERR_FILENO);
    cli_session_t s;
    sched_config_t cfg;
    runner_t run = {0};
    counts_t c;
    uint64_t last_draw = 0, last_rate_t = mono_ms();
    uint64_t last_sent = 0, last_line = 0;
    double rate = 0;
    char st[32];

    if ((rc = parse_args(argc, argv, &id, &org, NULL, &quiet)) != 0)
        return rc;
    if (cli_session_open(&s) != 0)
        return 1;
    rc = 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    if (read_counts(&s, id, &c, &err) != 0) {
        fprintf(stderr, "herald: campaign run: %s\n", err);
        goto out;
    }
    if (!c.status[0]) {
        fprintf(stderr, "herald: campaign run: no campaign %s\n", id);
        goto out;
    }
    if (!strcmp(c.status, "draft") && apply_verb(&s, id, SCHED_START, 1, st, sizeof(st)) != 0)
        goto out;
    if (!strcmp(c.status, "completed") || !strcmp(c.status, "canceled")) {
        fprintf(stderr, "herald: campaign run: campaign %s is %s\n", id, c.status);
        goto out;
    }
    sched_config_init(&cfg);
    {
        unsigned char mkey[CRYPTO_KEY_LEN];
        int mk = org_creds_master_key(mkey);
        if (mk < 0) {
            fprintf(stderr, "herald: campaign run: HERALD_MASTER_KEY: expected 32 bytes as 64 hex digits or base64\n");
            goto out;
        }
        org_creds_sched_config(&cfg, mk > 0 ? mkey : NULL);
        memset(mkey, 0, sizeof(mkey));
    }
    cfg.conninfo = s.conninfo;
    cfg.campaign_id = atoll(id);
    cfg.include_direct = 0;
    if (!cfg.twilio.account_sid || !*cfg.twilio.account_sid) {
        fprintf(stderr, "herald: campaign run: Twilio is not configured (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN or "
                        "TWILIO_API_KEY/SECRET)\n");
        goto out;
    }
    if (sched_start(&s.loop, &cfg, &run.sched) != 0) {
        fprintf(stderr, "herald: campaign run: cannot start the scheduler (Twilio configuration?)\n");
        goto out;
    }
    uv_signal_init(&s.loop, &run.sigint);
    uv_signal_init(&s.loop, &run.sigterm);
    run.sigint.data = run.sigterm.data = &run;
    uv_signal_start(&run.sigint, on_signal, SIGINT);
    uv_signal_start(&run.sigterm, on_signal, SIGTERM);
    for (;;) {
        sched_stats_t ss;
        uint64_t now;
        uv_run(&s.loop, UV_RUN_ONCE);
        now = mono_ms();
        sched_get_stats(run.sched, &ss);
        if (run.interrupted) {
            fprintf(stderr, "%sherald: campaign run: interrupted; campaign %s keeps its state (run again to go on)\n",
                    tty ? "\n" : "", id);
            break;
        }
        if (ss.paused_reason) {
            fprintf(stderr, "%sherald: campaign run: %s\n", tty ? "\n" : "", ss.last_error);
            break;
        }
        if (now - last_draw < (tty ? 250u : 500u))
            continue;
        if (now - last_rate_t >= 1000) {
            double inst = (double)(ss.sent - last_sent) * 1000.0 / (double)(now - last_rate_t);
            rate = rate == 0 ? inst : 0.5 * rate + 0.5 * inst;
            last_sent = ss.sent;
            last_rate_t = now;
        }
        last_draw = now;
        /* The status is cheap to poll; counting rows is not, so counts come less often. */
        if (read_status(&s, id, c.status, sizeof(c.status), &err) != 0) {
            fprintf(stderr, "%sherald: campaign run: %s\n", tty ? "\n" : "", err);
            break;
        }
        if (!quiet && now - last_line >= (tty ? 2000u : 5000u)) {
            char status[24];
            snprintf(status, sizeof(status), "%s", c.status);
            if (read_counts(&s, id, &c, &err) != 0) {
                fprintf(stderr, "%sherald: campaign run: %s\n", tty ? "\n" : "", err);
                break;
            }
            snprintf(c.status, sizeof(c.status), "%s", status);
            last_line = now;
        }
        if (!quiet && (tty || now == last_line))
            draw(tty, &c, rate, 0);
        if (!strcmp(c.status, "completed") || !strcmp(c.status, "canceled")) {
            rc = 0;
            break;
        }
    }
    sched_stop(run.sched, on_stopped, &run);
    while (!run.stopped)
        uv_run(&s.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&run.sigint, NULL);
    uv_close((uv_handle_t *)&run.sigterm, NULL);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    if (read_counts(&s, id, &c, &err) == 0 && !quiet)
        draw(tty, &c, rate, 1);
    if (rc == 0)
        printf("campaign %s: %s: %lld recipients, %lld sent, %lld delivered, %lld failed, %lld suppressed, %lld "
               "canceled\n",
               id, c.status, c.total, c.sent + c.delivered + c.undelivered, c.delivered, c.failed, c.suppressed,
               c.canceled);
out:
    cli_session_close(&s);
    return rc;
}

/* For callers that dispatch every scheduler verb through one entry (argv[0] is the verb). */
int campaign_control_command(int argc, char **argv)
{
    if (argc < 1)
        return EXIT_USAGE;
    if (!strcmp(argv[0], "start"))
        return cmd_campaign_start(argc, argv);
    if (!strcmp(argv[0], "pause"))
        return cmd_campaign_pause(argc, argv);
    if (!strcmp(argv[0], "resume"))
        return cmd_campaign_resume(argc, argv);
    if (!strcmp(argv[0], "cancel"))
        return cmd_campaign_cancel(argc, argv);
    if (!strcmp(argv[0], "run"))
        return cmd_campaign_run(argc, argv);
    if (!strcmp(argv[0], "status"))
        return campaign_control_status(argc, argv);
    fprintf(stderr, "herald: campaign: unknown verb '%s'\n", argv[0]);
    return EXIT_USAGE;
}
