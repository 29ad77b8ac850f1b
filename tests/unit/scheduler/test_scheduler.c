/*
 * Unit tests of the scheduler's pure parts: token buckets under a fake clock (rates,
 * bursts, debt, nesting, the concurrency gate), cron parsing and next runs across
 * DST (tests/data/cron_cases.tsv), retry backoff, the message and campaign state
 * machines, and the decision on each provider outcome.
 */
#include "scheduler/scheduler.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SEC 1000000LL

/* ---- buckets ---- */

/* Simulates a sender sending as fast as its bucket allows; returns messages sent in [0, dur). */
static long drive(bucket_t *b, double cost, int64_t dur_us, int64_t step_us, long per_window[], int nwin)
{
    long sent = 0;

    for (int64_t t = 0; t < dur_us; t += step_us)
        while (bucket_take_all(&b, 1, NULL, cost, t) == 0) {
            sent++;
            if (per_window && t / SEC < nwin)
                per_window[t / SEC]++;
        }
    return sent;
}

static void test_bucket_rates(void **state)
{
    static const struct {
        double rate, burst, cost;
        int secs;
    } cases[] = {
        {50, 5, 1, 30}, {500, 50, 1, 30}, {5000, 500, 1, 30}, {50, 5, 3, 30}, {10, 1, 7, 30}, {1, 1, 1, 30},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bucket_t b;
        long win[64] = {0};
        long sent;
        double achieved, want;
        bucket_init(&b, cases[i].rate, cases[i].burst, 0);
        sent = drive(&b, cases[i].cost, cases[i].secs * SEC, 1000, win, 64);
        achieved = sent * cases[i].cost / cases[i].secs;
        want = cases[i].rate;
        /* Over the whole run: the rate plus at most one burst (the bucket starts full). */
        assert_true(achieved <= want + (cases[i].burst + cases[i].cost) / cases[i].secs + 1e-9);
        assert_true(achieved >= want * 0.99 - cases[i].cost / cases[i].secs);
        /* No one-second window above rate + burst (+ one message of debt). */
        for (int w = 0; w < cases[i].secs; w++)
            assert_true(win[w] * cases[i].cost <= cases[i].rate + cases[i].burst + cases[i].cost);
    }
}

static void test_bucket_debt_and_wait(void **state)
{
    bucket_t b;
    (void)state;
    bucket_init(&b, 10, 2, 0);
    /* A 5-token message passes on a full bucket (a burst of 2, capped at 1.9: 10 ms of
     * the rate is kept back) and leaves debt... */
    assert_int_equal(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 5, 0), 0);
    assert_true(b.tokens < 0);
    /* ...which must be paid back before the next one: -3.1 tokens to reach 1.9 at 10/s is 0.5 s. */
    assert_int_equal(bucket_wait_us(&b, 5, 0), 500000);
    assert_true(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 100000) > 0);
    assert_true(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 400000) > 0);
    assert_int_equal(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 410000), 0);
    /* Unlimited bucket. */
    bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 3, 0), 0);
}

static void test_bucket_nested_and_gate(void **state)
{
    bucket_t sender, campaign;
    bucket_t *levels[2] = {&sender, &campaign};
    bucket_gate_t gate = {2, 0};
    long sent = 0;
    (void)state;

    /* The slower level decides; a blocked take takes nothing from the other level. */
    bucket_init(&sender, 100, 10, 0);
    bucket_init(&campaign, 20, 2, 0);
    for (int64_t t = 0; t < 10 * SEC; t += 1000)
        while (bucket_take_all(levels, 2, NULL, 1, t) == 0)
            sent++;
    assert_true(sent >= 198 && sent <= 203);
    assert_true(sender.tokens > 5);
    /* Gate: two in flight, the third waits (-1) until a release. */
    bucket_init(&sender, 0, 0, 0);
    assert_int_equal(bucket_take_all(levels, 1, &gate, 1, 0), 0);
    assert_int_equal(bucket_take_all(levels, 1, &gate, 1, 0), 0);
    assert_int_equal(bucket_take_all(levels, 1, &gate, 1, 0), -1);
    bucket_gate_release(&gate);
    assert_int_equal(bucket_take_all(levels, 1, &gate, 1, 0), 0);
    /* NULL levels are skipped. */
    {
        bucket_t *none[2] = {NULL, NULL};
        assert_int_equal(bucket_take_all(none, 2, NULL, 1, 0), 0);
    }
}

static void test_bucket_rate_change(void **state)
{
    bucket_t b;
    (void)state;
    bucket_init(&b, 100, 50, 0);
    bucket_set_rate(&b, 10, 1, 0);
    assert_true(b.tokens <= 1.0);
    bucket_init(&b, 1000, 0, 0);
    assert_true(b.burst == 100);
    /* The cap keeps 10 ms of the rate back for delivery jitter: a burst of 500 at
     * 5,000/s passes 450 at once; a bucket of one token keeps it. */
    bucket_init(&b, 5000, 500, 0);
    for (int i = 0; i < 450; i++)
        assert_int_equal(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 0), 0);
    assert_true(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 0) > 0);
    bucket_init(&b, 50, 1, 0);
    assert_int_equal(bucket_take_all((bucket_t *[]){&b}, 1, NULL, 1, 0), 0);
}

/* ---- cron ---- */

static int64_t parse_utc(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    assert_int_equal(sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                            &tm.tm_sec),
                     6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void test_cron_cases(void **state)
{
    char path[1024], line[512];
    FILE *f;
    int n = 0;
    (void)state;

    snprintf(path, sizeof(path), "%s/cron_cases.tsv", HERALD_TEST_DATA_DIR);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char *fields[5], *save = NULL, local[17], err[128];
        cron_expr_t e;
        int64_t next;
        int k = 0;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        for (char *t = strtok_r(line, "\t", &save); t && k < 5; t = strtok_r(NULL, "\t", &save))
            fields[k++] = t;
        assert_int_equal(k, 5);
        if (cron_parse(fields[0], &e, err, sizeof(err)) != 0)
            fail_msg("parse '%s': %s", fields[0], err);
        assert_int_equal(cron_next(&e, fields[1], parse_utc(fields[2]), &next, local), 0);
        if (next != parse_utc(fields[3]) || strcmp(local, fields[4]) != 0)
            fail_msg("'%s' in %s after %s: got %lld (%s), want %s (%s)", fields[0], fields[1], fields[2],
                     (long long)next, local, fields[3], fields[4]);
        n++;
    }
    fclose(f);
    assert_true(n >= 15);
}

static void test_cron_invalid(void **state)
{
    static const char *const bad[] = {"60 * * * *", "* * *",       "*/0 * * * *", "5-1 * * * *", "* * * 13 *",
                                      "a * * * *",  "* * 0 * *",   "* * * * 8",   "",            "* * * * * *",
                                      "1,,2 * * * *", "-1 * * * *"};
    cron_expr_t e;
    char err[128];
    int64_t next;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (cron_parse(bad[i], &e, err, sizeof(err)) != CRON_EINVAL)
            fail_msg("'%s' parsed", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(cron_parse("0 0 * * 7", &e, NULL, 0), 0); /* 7 is Sunday */
    assert_int_equal(e.dow, 1);
    assert_int_equal(cron_parse("0 0 31 2 *", &e, NULL, 0), 0);
    assert_int_equal(cron_next(&e, "UTC", 0, &next, NULL), CRON_ENONE);
    assert_int_equal(cron_parse("* * * * *", &e, NULL, 0), 0);
    assert_int_equal(cron_next(&e, "Not/AZone", 0, &next, NULL), CRON_EZONE);
}

/* ---- policy ---- */

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(sched_backoff_ms(1, 1000, 300000, 0.0), 500);
    assert_int_equal(sched_backoff_ms(1, 1000, 300000, 0.999999), 999);
    assert_int_equal(sched_backoff_ms(2, 1000, 300000, 0.0), 1000);
    assert_int_equal(sched_backoff_ms(4, 1000, 300000, 0.0), 4000);
    assert_int_equal(sched_backoff_ms(30, 1000, 300000, 0.0), 150000);
    assert_true(sched_backoff_ms(30, 1000, 300000, 0.5) <= 300000);
    for (int a = 1; a < 40; a++)
        for (double r = 0; r < 1; r += 0.1) {
            int64_t d = sched_backoff_ms(a, 100, 5000, r);
            assert_true(d >= 50 && d <= 5000);
        }
}

static void test_msg_transitions(void **state)
{
    static const struct {
        sched_msg_state_t from, to;
        int ok;
    } cases[] = {
        {SCHED_MSG_LEASED, SCHED_MSG_RECONCILING, 1}, {SCHED_MSG_LEASED, SCHED_MSG_READY, 1},
        {SCHED_MSG_LEASED, SCHED_MSG_DONE, 1},        {SCHED_MSG_LEASED, SCHED_MSG_IN_FLIGHT, 0},
        {SCHED_MSG_RECONCILING, SCHED_MSG_READY, 1},  {SCHED_MSG_RECONCILING, SCHED_MSG_DONE, 1},
        {SCHED_MSG_RECONCILING, SCHED_MSG_IN_FLIGHT, 0}, {SCHED_MSG_READY, SCHED_MSG_IN_FLIGHT, 1},
        {SCHED_MSG_READY, SCHED_MSG_DONE, 1},         {SCHED_MSG_READY, SCHED_MSG_LEASED, 0},
        {SCHED_MSG_IN_FLIGHT, SCHED_MSG_DONE, 1},     {SCHED_MSG_IN_FLIGHT, SCHED_MSG_READY, 0},
        {SCHED_MSG_DONE, SCHED_MSG_READY, 0},         {SCHED_MSG_DONE, SCHED_MSG_DONE, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (sched_msg_transition_ok(cases[i].from, cases[i].to) != cases[i].ok)
            fail_msg("%s -> %s", sched_msg_state_name(cases[i].from), sched_msg_state_name(cases[i].to));
}

static void test_campaign_transitions(void **state)
{
    static const struct {
        const char *from, *verb;
        int deferred;
        const char *to; /* NULL: refused */
    } cases[] = {
        {"draft", "start", 0, "running"},       {"draft", "start", 1, "scheduled"},
        {"scheduled", "start", 0, "running"},   {"scheduled", "start", 1, NULL},
        {"running", "start", 0, NULL},          {"paused", "start", 0, NULL},
        {"running", "pause", 0, "paused"},      {"scheduled", "pause", 1, "paused"},
        {"draft", "pause", 0, NULL},            {"paused", "pause", 0, NULL},
        {"paused", "resume", 0, "running"},     {"running", "resume", 0, NULL},
        {"draft", "cancel", 0, "canceled"},     {"running", "cancel", 0, "canceled"},
        {"paused", "cancel", 0, "canceled"},    {"scheduled", "cancel", 1, "canceled"},
        {"completed", "cancel", 0, NULL},       {"canceled", "cancel", 0, NULL},
        {"completed", "start", 0, NULL},        {"canceled", "resume", 0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sched_campaign_status_t to;
        int rc = sched_campaign_transition(sched_campaign_status_parse(cases[i].from), sched_verb_parse(cases[i].verb),
                                           cases[i].deferred, &to);
        if (cases[i].to == NULL) {
            if (rc != SCHED_ESTATE)
                fail_msg("%s %s allowed", cases[i].verb, cases[i].from);
        } else if (rc != 0 || strcmp(sched_campaign_status_name(to), cases[i].to) != 0) {
            fail_msg("%s %s: got %s", cases[i].verb, cases[i].from, rc ? "refused" : sched_campaign_status_name(to));
        }
    }
    assert_int_equal(sched_campaign_status_parse("bogus"), SCHED_C_INVALID);
    assert_int_equal(sched_verb_parse("explode"), SCHED_VERB_INVALID);
}

static void test_control_plan(void **state)
{
    sched_campaign_status_t to;
    int64_t next;
    char err[160];
    (void)state;
    /* A cron campaign is scheduled on start, with its next run computed. */
    assert_int_equal(sched_control_plan("draft", "0 9 * * *", "UTC", 0, SCHED_START, parse_utc("2026-11-23T10:00:00Z"),
                                        &to, &next, err, sizeof(err)),
                     0);
    assert_int_equal(to, SCHED_C_SCHEDULED);
    assert_int_equal(next, parse_utc("2026-11-24T09:00:00Z"));
    assert_int_equal(sched_control_plan("draft", "", "", 0, SCHED_START, 0, &to, &next, err, sizeof(err)), 0);
    assert_int_equal(to, SCHED_C_RUNNING);
    assert_int_equal(next, 0);
    assert_int_equal(sched_control_plan("draft", "", "", 1, SCHED_START, 0, &to, &next, err, sizeof(err)), 0);
    assert_int_equal(to, SCHED_C_SCHEDULED);
    assert_int_equal(sched_control_plan("completed", "", "", 0, SCHED_PAUSE, 0, &to, &next, err, sizeof(err)),
                     SCHED_ESTATE);
    assert_non_null(strstr(err, "completed"));
    assert_int_equal(sched_control_plan("draft", "bad cron", "UTC", 0, SCHED_START, 0, &to, &next, err, sizeof(err)),
                     SCHED_EINVAL);
}

static void test_decide(void **state)
{
    static const struct {
        long http;
        int code, curl, attempts;
        sched_action_t want;
    } cases[] = {
        {201, 0, 0, 1, SCHED_ACT_SENT},
        {429, 20429, 0, 1, SCHED_ACT_RETRY},          /* refused: nothing was created */
        {429, 20429, 0, 8, SCHED_ACT_FAIL},           /* out of attempts */
        {500, 20500, 0, 1, SCHED_ACT_RETRY_UNKNOWN},  /* 5xx: may have been created */
        {503, 0, 0, 1, SCHED_ACT_RETRY_UNKNOWN},
        {0, 0, 52, 1, SCHED_ACT_RETRY_UNKNOWN},       /* empty reply: the lost response */
        {0, 0, 56, 1, SCHED_ACT_RETRY_UNKNOWN},       /* reset */
        {0, 0, 28, 1, SCHED_ACT_RETRY_UNKNOWN},       /* timeout */
        {0, 0, 28, 8, SCHED_ACT_RETRY_UNKNOWN},       /* unknown even at the limit: reconcile first */
        {0, 0, 7, 1, SCHED_ACT_RETRY},                /* connection refused: never reached Twilio */
        {400, 21610, 0, 1, SCHED_ACT_SUPPRESS},
        {400, 21211, 0, 1, SCHED_ACT_FAIL},
        {400, 21614, 0, 1, SCHED_ACT_FAIL},
        {401, 20003, 0, 1, SCHED_ACT_PAUSE},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        twilio_verdict_t v = twilio_classify(cases[i].http, cases[i].code, cases[i].curl);
        sched_action_t got = sched_decide(&v, cases[i].http, cases[i].curl, cases[i].attempts, 8);
        if (got != cases[i].want)
            fail_msg("case %zu (http %ld code %d curl %d): got %d want %d", i, cases[i].http, cases[i].code,
                     cases[i].curl, got, cases[i].want);
    }
}

static void test_status_map(void **state)
{
    (void)state;
    assert_string_equal(sched_status_to_state("queued"), "sent");
    assert_string_equal(sched_status_to_state("delivered"), "delivered");
    assert_string_equal(sched_status_to_state("undelivered"), "undelivered");
    assert_string_equal(sched_status_to_state("failed"), "failed");
    assert_null(sched_status_to_state("bogus"));
    assert_null(sched_status_to_state(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_rates),         cmocka_unit_test(test_bucket_debt_and_wait),
        cmocka_unit_test(test_bucket_nested_and_gate), cmocka_unit_test(test_bucket_rate_change),
        cmocka_unit_test(test_cron_cases),           cmocka_unit_test(test_cron_invalid),
        cmocka_unit_test(test_backoff),              cmocka_unit_test(test_msg_transitions),
        cmocka_unit_test(test_campaign_transitions), cmocka_unit_test(test_control_plan),
        cmocka_unit_test(test_decide),               cmocka_unit_test(test_status_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
