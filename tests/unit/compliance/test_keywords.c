/*
 * Unit tests for compliance/keywords: the table of cases in tests/data/keywords_cases.tsv
 * (pgbouncer hba_test style), plus the length cap and odd inputs the table cannot hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compliance/keywords.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the table's escapes (\xHH, \n, \r, \t, \\) into out; returns the length or -1. */
static int unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    while (*in) {
        char c = *in++;
        if (c == '\\') {
            char e = *in++;
            if (e == 'x' && hexval(in[0]) >= 0 && hexval(in[1]) >= 0) {
                c = (char)(hexval(in[0]) * 16 + hexval(in[1]));
                in += 2;
            } else if (e == 'n') {
                c = '\n';
            } else if (e == 'r') {
                c = '\r';
            } else if (e == 't') {
                c = '\t';
            } else if (e == '\\') {
                c = '\\';
            } else {
                return -1;
            }
        }
        if (n == cap)
            return -1;
        out[n++] = c;
    }
    return (int)n;
}

static void test_keywords_table(void **state)
{
    char path[1024], line[1024], body[1024];
    FILE *fp;
    int lineno = 0, cases = 0, failed = 0, revocations = 0, ordinary = 0;
    (void)state;

    snprintf(path, sizeof(path), "%s/keywords_cases.tsv", HERALD_TEST_DATA_DIR);
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        char *f[4], *p = line;
        int nf = 0, len;
        kw_result_t r;
        line[strcspn(line, "\n")] = '\0';
        lineno++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        /* The text is the rest of the line after the third tab. */
        while (nf < 3 && p) {
            f[nf++] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (nf != 3 || !p || (len = unescape(p, body, sizeof(body))) < 0) {
            fprintf(stderr, "line %d: malformed\n", lineno);
            failed++;
            continue;
        }
        f[3] = p;
        cases++;
        keywords_classify(body, (size_t)len, &r);
        if (strcmp(keywords_class_name(r.cls), f[0]) != 0 || r.revocation != atoi(f[1]) ||
            strcmp(r.keyword, strcmp(f[2], "-") == 0 ? "" : f[2]) != 0) {
            fprintf(stderr, "line %d [%s]: got %s/%d/%s (rule %s), want %s/%s/%s\n", lineno, f[3],
                    keywords_class_name(r.cls), r.revocation, r.keyword[0] ? r.keyword : "-", r.rule, f[0],
                    f[1], f[2]);
            failed++;
        }
        if (r.cls == KW_NONE && r.revocation)
            revocations++;
        if (r.cls == KW_NONE && !r.revocation)
            ordinary++;
    }
    fclose(fp);
    printf("keywords_cases.tsv: %d cases (%d free-text revocations, %d ordinary), %d failed\n", cases,
           revocations, ordinary, failed);
    assert_true(cases >= 60);
    assert_int_equal(failed, 0);
}

static void test_embedded_nul_and_null(void **state)
{
    kw_result_t r;
    (void)state;
    keywords_classify("ST\0OP", 5, &r);
    assert_int_equal(r.cls, KW_NONE);
    keywords_classify("STOP\0", 4, &r); /* len excludes the NUL */
    assert_int_equal(r.cls, KW_OPT_OUT);
    keywords_classify(NULL, 10, &r);
    assert_int_equal(r.cls, KW_NONE);
    assert_int_equal(r.revocation, 0);
    assert_non_null(r.rule);
    keywords_classify("", 0, &r);
    assert_int_equal(r.cls, KW_NONE);
}

static void test_long_bodies(void **state)
{
    size_t n = KEYWORDS_MAX_SCAN * 4;
    char *big = malloc(n);
    kw_result_t r;
    (void)state;
    assert_non_null(big);
    /* A long padded STOP is no carrier keyword, but its head still reads as a revocation. */
    memset(big, ' ', n);
    memcpy(big, "STOP", 4);
    keywords_classify(big, n, &r);
    assert_int_equal(r.cls, KW_NONE);
    assert_int_equal(r.revocation, 1);
    /* Many words: the phrase must be found among the first ones. */
    for (size_t i = 0; i + 5 <= n; i += 5)
        memcpy(big + i, "blah ", 5);
    memcpy(big + 10, "remove me", 9);
    keywords_classify(big, n, &r);
    assert_int_equal(r.revocation, 1);
    memcpy(big + 10, "blah blah", 9);
    keywords_classify(big, n, &r);
    assert_int_equal(r.revocation, 0);
    free(big);
}

static void test_class_names(void **state)
{
    (void)state;
    assert_string_equal(keywords_class_name(KW_NONE), "none");
    assert_string_equal(keywords_class_name(KW_OPT_OUT), "opt-out");
    assert_string_equal(keywords_class_name(KW_OPT_IN), "opt-in");
    assert_string_equal(keywords_class_name(KW_HELP), "help");
    assert_string_equal(keywords_class_name((kw_class_t)42), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keywords_table),
        cmocka_unit_test(test_embedded_nul_and_null),
        cmocka_unit_test(test_long_bodies),
        cmocka_unit_test(test_class_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
