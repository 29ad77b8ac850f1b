/*
 * Unit tests for compliance/phone: the case table in tests/data/phone_cases.tsv
 * (both paths against every row), hostile inputs, the identity of the fast and
 * full paths over a generated corpus, the same from two threads, and the
 * geocoder lookup that quiet hours relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compliance/phone.h"
#include "compliance/phone_corpus.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORPUS_N 20000
#define LINE_CAP 64

/* Decodes \t \n \r \\ \xHH in place; returns the decoded length. */
static size_t unescape(char *s)
{
    size_t r = 0, w = 0;
    while (s[r]) {
        if (s[r] == '\\' && s[r + 1]) {
            char c = s[r + 1];
            if (c == 't' || c == 'n' || c == 'r' || c == '\\') {
                s[w++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : '\\';
                r += 2;
                continue;
            }
            if (c == 'x' && s[r + 2] && s[r + 3]) {
                char hex[3] = {s[r + 2], s[r + 3], 0};
                s[w++] = (char)strtoul(hex, NULL, 16);
                r += 4;
                continue;
            }
        }
        s[w++] = s[r++];
    }
    s[w] = '\0';
    return w;
}

static int failures;

/* Checks both paths against one expectation; a failure is printed and counted. */
static void check_both(const char *in, size_t len, const char *region, int want_rc, const char *want_e164,
                       const char *want_region, int lineno)
{
    phone_result_t a, b;
    int ra = phone_normalize(in, len, region, &a);
    int rb = phone_normalize_full(in, len, region, &b);

    if (ra != want_rc || rb != want_rc || strcmp(a.e164, want_e164) || strcmp(b.e164, want_e164) ||
        strcmp(a.region, want_region) || strcmp(b.region, want_region)) {
        print_error("line %d: want %s '%s' '%s'; fast %s '%s' '%s'; full %s '%s' '%s'\n", lineno,
                    phone_reason(want_rc), want_e164, want_region, phone_reason(ra), a.e164, a.region,
                    phone_reason(rb), b.e164, b.region);
        failures++;
    }
    if (a.country_code != b.country_code) {
        print_error("line %d: country code %d != %d\n", lineno, a.country_code, b.country_code);
        failures++;
    }
}

static int reason_code(const char *name)
{
    for (int e = 0; e >= -9; e--)
        if (strcmp(phone_reason(e), name) == 0)
            return e;
    fail_msg("unknown status '%s'", name);
    return 1;
}

static void test_case_table(void **state)
{
    char path[1024], line[2048];
    FILE *f;
    int lineno = 0, cases = 0;
    (void)state;

    failures = 0;
    snprintf(path, sizeof(path), "%s/phone_cases.tsv", HERALD_TEST_DATA_DIR);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char *field[5] = {0};
        char *p = line;
        int nf = 0;
        size_t len;
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (nf < 5) {
            field[nf++] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        if (nf != 5) {
            print_error("line %d: %d fields, want 5\n", lineno, nf);
            fail();
        }
        len = unescape(field[0]);
        check_both(field[0], len, field[1][0] ? field[1] : NULL, reason_code(field[3]), field[2], field[4],
                   lineno);
        cases++;
    }
    fclose(f);
    assert_int_equal(failures, 0);
    assert_true(cases >= 60);
}

static void test_hostile_inputs(void **state)
{
    char big[1024];
    phone_result_t r;
    (void)state;

    failures = 0;
    memset(big, '9', sizeof(big));
    /* 200 digits: under the byte cap, over libphonenumber's NSN limit. */
    check_both(big, 200, "US", PHONE_ETOOLONG, "", "", __LINE__);
    check_both(big, PHONE_INPUT_MAX + 1, "US", PHONE_ETOOLONG, "", "", __LINE__);
    check_both(big, sizeof(big), "US", PHONE_ETOOLONG, "", "", __LINE__);
    memset(big, ' ', sizeof(big));
    check_both(big, PHONE_INPUT_MAX, "US", PHONE_EEMPTY, "", "", __LINE__);
    check_both("", 0, "US", PHONE_EEMPTY, "", "", __LINE__);
    check_both(NULL, 0, "US", PHONE_EEMPTY, "", "", __LINE__);
    check_both("\0\0\0", 3, "US", PHONE_ENOTANUMBER, "", "", __LINE__);
    check_both("4155550199\0", 11, "US", PHONE_ENOTANUMBER, "", "", __LINE__);
    /* The length is what counts, not a NUL terminator. */
    check_both("4155550199junk", 10, "US", PHONE_OK, "+14155550199", "US", __LINE__);
    /* Truncated UTF-8 at the end of the buffer. */
    check_both("415 555 0199 \xe2\x98", 15, "US", PHONE_ENOTANUMBER, "", "", __LINE__);
    assert_int_equal(failures, 0);

    /* Region arguments. */
    assert_int_equal(phone_normalize("4155550199", 10, "XX", &r), PHONE_EREGION);
    assert_int_equal(phone_normalize_full("4155550199", 10, "USA", &r), PHONE_EREGION);
    assert_int_equal(phone_normalize("4155550199", 10, "ZZ", &r), PHONE_EREGION);
    assert_int_equal(phone_normalize("4155550199", 10, "1", &r), PHONE_EREGION);
    assert_int_equal(phone_region_known("US"), 1);
    assert_int_equal(phone_region_known("gb"), 1);
    assert_int_equal(phone_region_known("XX"), 0);
    assert_int_equal(phone_region_known("001"), 0);
    assert_int_equal(phone_region_known(""), 0);
    assert_int_equal(phone_region_known(NULL), 0);
}

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(phone_strerror(PHONE_ETOOSHORT), "too short");
    assert_string_equal(phone_reason(PHONE_ETOOSHORT), "too_short");
    assert_string_equal(phone_reason(PHONE_ENOTANUMBER), "not_a_number");
    assert_string_equal(phone_reason(PHONE_EINVALID), "invalid_for_region");
    assert_string_equal(phone_reason(PHONE_ECOUNTRY), "unknown_country_code");
    assert_string_equal(phone_reason(PHONE_ETOOLONG), "too_long");
    assert_string_equal(phone_reason(PHONE_EEMPTY), "empty");
    assert_string_equal(phone_reason(42), "unknown");
    assert_string_equal(phone_strerror(-100), "unknown error");
}

typedef struct corpus_run {
    const char *region;
    uint64_t seed;
    int mismatches;
    int valid;
} corpus_run_t;

static void *run_corpus(void *arg)
{
    corpus_run_t *cr = arg;
    phone_corpus_t pc;
    char line[LINE_CAP];

    phone_corpus_init(&pc, cr->seed);
    for (int i = 0; i < CORPUS_N; i++) {
        size_t n = phone_corpus_next(&pc, line, sizeof(line));
        phone_result_t a, b;
        int ra = phone_normalize(line, n, cr->region, &a);
        int rb = phone_normalize_full(line, n, cr->region, &b);
        if (ra == PHONE_OK)
            cr->valid++;
        if (ra != rb || strcmp(a.e164, b.e164) || strcmp(a.region, b.region) || a.country_code != b.country_code) {
            if (cr->mismatches++ < 5)
                print_error("mismatch '%s' (%s): fast %s %s %s, full %s %s %s\n", line,
                            cr->region ? cr->region : "-", phone_reason(ra), a.e164, a.region,
                            phone_reason(rb), b.e164, b.region);
        }
    }
    return NULL;
}

static void test_fast_path_identity(void **state)
{
    const char *regions[] = {"US", "GB", NULL};
    (void)state;

    for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
        corpus_run_t cr = {regions[i], 7 + i, 0, 0};
        run_corpus(&cr);
        assert_int_equal(cr.mismatches, 0);
        if (regions[i] && strcmp(regions[i], "US") == 0)
            assert_true(cr.valid > CORPUS_N * 8 / 10);
    }
}

static void test_two_threads(void **state)
{
    pthread_t t[2];
    corpus_run_t cr[2] = {{"US", 99, 0, 0}, {"US", 100, 0, 0}};
    (void)state;

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, run_corpus, &cr[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(cr[0].mismatches + cr[1].mismatches, 0);
}

static void test_geocode(void **state)
{
    char out[128], tiny[3];
    (void)state;

    assert_int_equal(phone_geocode("+14155550199", out, sizeof(out)), 0);
    assert_string_equal(out, "San Francisco, CA");
    assert_int_equal(phone_geocode("+19043581234", out, sizeof(out)), 0);
    assert_string_equal(out, "Jacksonville, FL");
    assert_int_equal(phone_geocode("+19044441234", out, sizeof(out)), 0);
    assert_string_equal(out, "Florida");
    assert_int_equal(phone_geocode("+80012345678", out, sizeof(out)), PHONE_ENOTFOUND);
    assert_int_equal(phone_geocode("+493012345678", out, sizeof(out)), 0);
    assert_string_equal(out, "Berlin");
    assert_int_equal(phone_geocode("+33612345678", out, sizeof(out)), 0);
    assert_string_equal(out, "France");
    assert_int_equal(phone_geocode("+15555555555", out, sizeof(out)), PHONE_EINVALID);
    assert_string_equal(out, "");
    assert_int_equal(phone_geocode("4155550199", out, sizeof(out)), PHONE_EINVALID);
    assert_int_equal(phone_geocode("+1 415 555 0199", out, sizeof(out)), PHONE_EINVALID);
    assert_int_equal(phone_geocode("", out, sizeof(out)), PHONE_EINVALID);
    assert_int_equal(phone_geocode(NULL, out, sizeof(out)), PHONE_EINVALID);
    assert_int_equal(phone_geocode("+493012345678", tiny, sizeof(tiny)), PHONE_ENOSPACE);
    assert_string_equal(tiny, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_table),
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_fast_path_identity),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_geocode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
