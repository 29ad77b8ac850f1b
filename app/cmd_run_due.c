/*
 * herald run-due: one scheduler pass for a system crontab. Starts the campaigns
 * whose start time has come, fires due cron runs (each run once, by its key, even
 * when two crontabs race), then drains everything that is due — campaigns, replies,
 * forwards — and exits: 0 when nothing due is left (rows deferred to quiet hours or
 * waiting for a later retry are left for the next pass and counted), 1 with the
 * reason when the database or Twilio cannot be used.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "app/org_creds.h"
#include "scheduler/scheduler.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SETTLE_MS 1200
#define SOON "interval '2 minutes'"

/*
 * What is left that this pass should still wait for: due now or retrying within
 * minutes, and recipients of running campaigns not yet moved into the outbox.
 */
static const char pending_sql[] =
    "SELECT count(*) FILTER (WHERE o.next_attempt_at <= now() + " SOON ") + "
    "(SELECT COALESCE(sum(herald_unfilled(id)), 0) FROM campaigns WHERE status = 'running' AND cron IS "
    "NULL), "
    "count(*) FILTER (WHERE o.next_attempt_at > now() + " SOON ") FROM outbox o "
    "LEFT JOIN campaigns c ON c.id = o.campaign_id WHERE o.state IN ('queued', 'sending') "
    "AND (o.campaign_id IS NULL OR (c.status = 'running' AND (c.cron IS NULL OR o.run_key <> '')))";

typedef struct rd {
    int stopped, interrupted;
} rd_t;

static void on_stopped(void *arg)
{
    ((rd_t *)arg)->stopped = 1;
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    ((rd_t *)h->data)->interrupted = 1;
}

int cmd_run_due(int argc, char **argv)
{
    cli_session_t s;
    sched_config_t cfg;
    sched_t *sched = NULL;
    sched_stats_t st;
    rd_t rd = {0};
    uv_signal_t sigint, sigterm;
    uint64_t idle_since = 0;
    long long left_later = 0;
    const char *err;
    int rc = 1, quiet = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else {
            fprintf(stderr, "usage: herald run-due [--quiet]\n");
            return EXIT_USAGE;
        }
    }
    sched_config_init(&cfg);
    {
        unsigned char mkey[CRYPTO_KEY_LEN];
        int mk = org_creds_master_key(mkey);
        if (mk < 0) {
            fprintf(stderr,
                    "herald: run-due: HERALD_MASTER_KEY: expected 32 bytes as 64 hex digits or base64\n");
            return 1;
        }
        org_creds_sched_config(&cfg, mk > 0 ? mkey : NULL);
        memset(mkey, 0, sizeof(mkey));
    }
    if (!cfg.twilio.account_sid || !*cfg.twilio.account_sid) {
        fprintf(stderr, "herald: run-due: Twilio is not configured (TWILIO_ACCOUNT_SID and credentials)\n");
        return 1;
    }
    if (cli_session_open(&s) != 0)
        return 1;
    cfg.conninfo = s.conninfo;
    if (sched_start(&s.loop, &cfg, &sched) != 0) {
        fprintf(stderr, "herald: run-due: cannot start the scheduler (Twilio configuration?)\n");
        cli_session_close(&s);
        return 1;
    }
    uv_signal_init(&s.loop, &sigint);
    uv_signal_init(&s.loop, &sigterm);
    sigint.data = sigterm.data = &rd;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    for (;;) {
        uint64_t now;
        uv_run(&s.loop, UV_RUN_ONCE);
        now = uv_hrtime() / 1000000;
        sched_get_stats(sched, &st);
        if (rd.interrupted) {
            fprintf(stderr, "herald: run-due: interrupted\n");
            break;
        }
        if (st.paused_reason) {
            fprintf(stderr, "herald: run-due: %s\n", st.last_error);
            break;
        }
        if (!st.idle) {
            idle_since = 0;
            continue;
        }
        if (!idle_since)
            idle_since = now;
        if (now - idle_since < SETTLE_MS)
            continue;
        {
            PGresult *r;
            long long soon;
            if (cli_exec(&s, pending_sql, 0, NULL, &r, &err) != 0) {
                fprintf(stderr, "herald: run-due: %s\n", err);
                break;
            }
            soon = atoll(PQgetvalue(r, 0, 0));
            left_later = atoll(PQgetvalue(r, 0, 1));
            PQclear(r);
            if (soon == 0) {
                rc = 0;
                break;
            }
            idle_since = 0;
            sched_poke(sched);
        }
    }
    sched_get_stats(sched, &st);
    sched_stop(sched, on_stopped, &rd);
    while (!rd.stopped)
        uv_run(&s.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    if (!quiet)
        printf("run-due: sent %" PRIu64 ", failed %" PRIu64 ", suppressed %" PRIu64 ", retries %" PRIu64
               ", reconciled %" PRIu64 ", deferred %" PRIu64 ", left for later %lld\n",
               st.sent, st.failed, st.suppressed, st.retries, st.reconciled_found, st.deferred, left_later);
    cli_session_close(&s);
    return rc;
}
