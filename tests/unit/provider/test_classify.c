/*
 * Unit tests for twilio_classify(): every row of tests/data/twilio-classify.tsv, plus
 * the properties every verdict must have (a reason; suppress only when terminal).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "provider/twilio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *outcome_name(twilio_outcome_t o)
{
    switch (o) {
    case TWILIO_OUTCOME_OK:
        return "ok";
    case TWILIO_OUTCOME_RETRYABLE:
        return "retryable";
    case TWILIO_OUTCOME_TERMINAL:
        return "terminal";
    }
    return "?";
}

static void test_table(void **state)
{
    char line[512];
    FILE *f = fopen(HERALD_TEST_DATA_DIR "/twilio-classify.tsv", "r");
    int lineno = 0, cases = 0, failures = 0;
    (void)state;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        long http;
        int code, curl;
        char outcome[32], flags[32];
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_int_equal(sscanf(line, "%ld\t%d\t%d\t%31s\t%31s", &http, &code, &curl, outcome, flags), 5);
        twilio_verdict_t v = twilio_classify(http, code, curl);
        int want_suppress = strcmp(flags, "suppress") == 0, want_pause = strcmp(flags, "pause") == 0;
        if (strcmp(outcome_name(v.outcome), outcome) != 0 || (int)v.suppress != want_suppress ||
            (int)v.pause != want_pause) {
            print_error("line %d: (%ld, %d, %d) gave %s%s%s, want %s %s\n", lineno, http, code, curl,
                        outcome_name(v.outcome), v.suppress ? " suppress" : "", v.pause ? " pause" : "", outcome,
                        flags);
            failures++;
        }
        assert_non_null(v.reason);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 60);
    assert_int_equal(failures, 0);
}

/* Sweep: every combination is classified, and suppress never comes with a retry. */
static void test_invariants(void **state)
{
    static const long statuses[] = {0, 100, 200, 201, 204, 301, 400, 401, 403, 404, 408, 409, 413, 429, 500, 503};
    static const int codes[] = {0, 20003, 20429, 21211, 21610, 21614, 30001, 30007, 12345};
    (void)state;

    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        for (size_t j = 0; j < sizeof(codes) / sizeof(codes[0]); j++)
            for (int curl = 0; curl < 100; curl++) {
                twilio_verdict_t v = twilio_classify(statuses[i], codes[j], curl);
                assert_non_null(v.reason);
                if (v.suppress)
                    assert_int_equal(v.outcome, TWILIO_OUTCOME_TERMINAL);
                if (curl != 0)
                    assert_int_equal(v.outcome, TWILIO_OUTCOME_RETRYABLE);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
