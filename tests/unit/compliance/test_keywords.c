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

/* ---- differential check against the implementation before the fast reject ---- */

#include "keywords_ref.inc"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* Words of every rule table plus ordinary ones, so random texts hit the phrases often. */
static const char *const vocabulary[] = {
    "stop", "STOP", "Stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout", "start", "yes",
    "help", "info", "unstop", "please", "pls", "now", "thanks", "you", "u", "it", "all", "just", "asap", "sir",
    "i", "said", "to", "this", "that", "so", "seriously", "them", "these", "texts", "messages", "text", "texting",
    "txt", "message", "messaging", "msg", "sms", "sending", "contacting", "calling", "spam", "emailing", "alerts",
    "promos", "ads", "marketing", "contact", "call", "email", "bother", "send", "the", "your", "ur", "with", "me",
    "us", "my", "our", "number", "of", "a", "any", "more", "stupid", "damn", "annoying", "dont", "don't", "don’t",
    "never", "won't", "didnt", "not", "isnt", "remove", "delete", "drop", "erase", "phone", "cell", "mobile",
    "info", "information", "name", "from", "list", "lists", "database", "take", "get", "put", "off", "mailing",
    "distribution", "opt", "out", "optedout", "unsub", "unsubscribed", "leave", "alone", "no", "nvr", "ever",
    "again", "anymore", "do", "revoking", "withdraw", "rescind", "consent", "permission", "subscription",
    "authorization", "terminate", "subscriptions", "notifications", "why", "can't", "smiling", "when", "does",
    "sale", "deal", "order", "ship", "tomorrow", "love", "great", "ok", "yall", "ya", "café", "стоп", "👍",
    "wasnt", "cease", "shouldnt", "k", "thx", "immediately", "told", "yes!", "x123", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};
static const char *const separators[] = {
    " ", " ", " ", "  ", ", ", ". ", "! ", "? ", "; ", " - ", "\n", "\t", " \"", "\" ", "\xe2\x80\x9c",
    "\xc2\xa0", "\xe2\x80\x8b", "...", ":)", "'", "’", "\xff", "\xc3", "\0", "/",
};

static size_t gen_text(char *buf, size_t cap)
{
    size_t n = 0;
    unsigned words = rnd(8) == 0 ? 40 + rnd(60) : 1 + rnd(14);

    if (rnd(8) == 0)
        buf[n++] = ' ';
    for (unsigned i = 0; i < words; i++) {
        const char *w = vocabulary[rnd(sizeof(vocabulary) / sizeof(vocabulary[0]))];
        size_t l = strlen(w);
        if (n + l + 8 >= cap)
            break;
        for (size_t k = 0; k < l; k++) {
            char c = w[k];
            if (rnd(10) == 0 && c >= 'a' && c <= 'z')
                c = (char)(c - 32);
            buf[n++] = c;
        }
        if (i + 1 < words || rnd(3) == 0) {
            const char *sep = separators[rnd(sizeof(separators) / sizeof(separators[0]))];
            size_t sl = sep[0] == '\0' ? 1 : strlen(sep);
            memcpy(buf + n, sep, sl);
            n += sl;
        }
    }
    if (rnd(50) == 0) {
        /* Long bodies: past KEYWORDS_MAX_SCAN and MAX_WORDS. */
        while (n + 6 < cap && n < KEYWORDS_MAX_SCAN + 100) {
            memcpy(buf + n, "blah ", 5);
            n += 5;
        }
    }
    return n;
}

static void test_differential_vs_reference(void **state)
{
    static char buf[KEYWORDS_MAX_SCAN * 2];
    int revocations = 0, keywords = 0;
    (void)state;

    for (int i = 0; i < 300000; i++) {
        size_t n = gen_text(buf, sizeof(buf));
        kw_result_t a, b;
        keywords_classify(buf, n, &a);
        ref_keywords_classify(buf, n, &b);
        if (a.cls != b.cls || a.revocation != b.revocation || strcmp(a.keyword, b.keyword) != 0 ||
            strcmp(a.rule, b.rule) != 0) {
            fprintf(stderr, "differs on [%.*s]: %s/%d/%s/%s, reference %s/%d/%s/%s\n", (int)n, buf,
                    keywords_class_name(a.cls), a.revocation, a.keyword, a.rule, keywords_class_name(b.cls),
                    b.revocation, b.keyword, b.rule);
            fail();
        }
        revocations += a.revocation;
        keywords += a.cls != KW_NONE;
    }
    printf("differential: 300000 random texts, %d revocations, %d carrier keywords, all identical\n",
           revocations, keywords);
    /* The corpus must exercise both answers. */
    assert_true(revocations > 10000 && revocations < 290000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keywords_table),
        cmocka_unit_test(test_embedded_nul_and_null),
        cmocka_unit_test(test_long_bodies),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_differential_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
