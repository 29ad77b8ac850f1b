/*
 * Unit tests for compliance/footer: the table tests/data/footer_cases.tsv
 * (policy, recognition of existing opt-out language, segment and encoding
 * effects) plus argument checks, buffer caps and the policy names.
 */
#include "common/buf.h"
#include "compliance/footer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Decodes the body notation of footer_cases.tsv: \n, \\ and \{N}. */
static void decode_body(const char *t, buf_t *out)
{
    size_t last = 0;

    while (*t) {
        if (t[0] == '\\' && t[1] == '{') {
            char *end;
            long n = strtol(t + 2, &end, 10);
            size_t glen = out->len - last;
            char g[8];
            assert_true(*end == '}' && n >= 1 && glen <= sizeof(g));
            memcpy(g, out->data + last, glen);
            for (long k = 1; k < n; k++)
                assert_int_equal(buf_append(out, g, glen), 0);
            t = end + 1;
            continue;
        }
        last = out->len;
        if (t[0] == '\\' && (t[1] == 'n' || t[1] == '\\')) {
            assert_int_equal(buf_puts(out, t[1] == 'n' ? "\n" : "\\"), 0);
            t += 2;
            continue;
        }
        {
            unsigned char b = (unsigned char)*t;
            size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            assert_int_equal(buf_append(out, t, n), 0);
            t += n;
        }
    }
}

static void test_table(void **state)
{
    char line[4096];
    int lineno = 0, cases = 0, failures = 0;
    FILE *f = fopen(HERALD_TEST_DATA_DIR "/footer_cases.tsv", "r");
    buf_t body, out;

    (void)state;
    assert_non_null(f);
    buf_init(&body, 1 << 16);
    buf_init(&out, 1 << 16);
    while (fgets(line, sizeof(line), f)) {
        char *field[9] = {0}, *p = line;
        footer_policy_t policy;
        footer_result_t res;
        const char *footer;
        int nf = 0, r;

        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (nf < 9) {
            field[nf++] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        assert_int_equal(nf, 9);
        assert_int_equal(footer_policy_parse(field[0], &policy), 0);
        footer = strcmp(field[2], "-") == 0 ? NULL : field[2];
        buf_reset(&body);
        buf_reset(&out);
        decode_body(field[8], &body);
        r = footer_apply(buf_str(&body), footer, policy, atoi(field[1]), 0, &out, &res);
        cases++;
        if (r != 0 || res.already_present != atoi(field[3]) || res.appended != atoi(field[4]) ||
            res.segments_before != (unsigned)atoi(field[5]) || res.segments_after != (unsigned)atoi(field[6]) ||
            res.added_segments != res.segments_after - res.segments_before ||
            res.encoding_changed != atoi(field[7])) {
            print_error("line %d (%s): expected present=%s appended=%s segs %s->%s changed=%s; got r=%d "
                        "present=%d appended=%d segs %u->%u changed=%d\n",
                        lineno, field[8], field[3], field[4], field[5], field[6], field[7], r,
                        res.already_present, res.appended, res.segments_before, res.segments_after,
                        res.encoding_changed);
            failures++;
            continue;
        }
        if (res.appended) {
            const char *f = footer ? footer : FOOTER_DEFAULT_TEXT;
            size_t fl = strlen(f), bl = body.len;
            size_t sep = (bl > 0 && body.data[bl - 1] != '\n') ? 1 : 0;
            assert_int_equal(out.len, bl + sep + fl);
            assert_memory_equal(out.data, buf_str(&body), bl);
            if (sep)
                assert_int_equal(out.data[bl], '\n');
            assert_memory_equal(out.data + bl + sep, f, fl);
        } else {
            assert_string_equal(buf_str(&out), buf_str(&body));
        }
    }
    fclose(f);
    buf_close(&body);
    buf_close(&out);
    print_message("%d table cases\n", cases);
    assert_true(cases > 30);
    assert_int_equal(failures, 0);
}

static void test_errors(void **state)
{
    footer_result_t res;
    char longtext[FOOTER_MAX_TEXT + 2];
    buf_t out;

    (void)state;
    buf_init(&out, 64);
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    assert_int_equal(footer_apply("hi", "", FOOTER_POLICY_ALWAYS, 1, 0, &out, &res), FOOTER_EINVAL);
    assert_int_equal(footer_apply("hi", longtext, FOOTER_POLICY_ALWAYS, 1, 0, &out, &res), FOOTER_EINVAL);
    assert_int_equal(footer_apply("hi \xFF", NULL, FOOTER_POLICY_ALWAYS, 1, 0, &out, &res), FOOTER_EUTF8);
    assert_int_equal(footer_apply("hi", "stop \xC0\x80", FOOTER_POLICY_ALWAYS, 1, 0, &out, &res), FOOTER_EUTF8);
    assert_int_equal(footer_apply("hi", NULL, (footer_policy_t)42, 1, 0, &out, &res), FOOTER_EINVAL);
    buf_close(&out);

    buf_init(&out, 10);
    assert_int_equal(footer_apply("hello", NULL, FOOTER_POLICY_ALWAYS, 1, 0, &out, &res), FOOTER_ETOOBIG);
    buf_close(&out);
    assert_string_equal(footer_strerror(0), "ok");
    assert_non_null(footer_strerror(FOOTER_ETOOBIG));
    assert_non_null(footer_strerror(-99));
}

static void test_over_limit_and_smart(void **state)
{
    footer_result_t res;
    buf_t out;
    char *body = malloc(1700);

    (void)state;
    memset(body, 'a', 1683); /* exactly 11 full concatenated segments */
    body[1683] = '\0';
    buf_init(&out, 4096);
    assert_int_equal(footer_apply(body, NULL, FOOTER_POLICY_ALWAYS, 0, 0, &out, &res), 0);
    assert_true(res.appended);
    assert_true(res.over_limit);
    assert_int_equal(res.segments_before, 11);
    assert_int_equal(res.segments_after, 12);
    assert_int_equal(res.added_segments, 1);
    buf_close(&out);
    free(body);

    /* A curly quote in the footer is UCS-2 unless Smart Encoding replaces it. */
    buf_init(&out, 4096);
    assert_int_equal(footer_apply("Hi", "Reply \xE2\x80\x9CSTOP\xE2\x80\x9D to opt out", FOOTER_POLICY_ALWAYS, 1, 0,
                                  &out, &res), 0);
    assert_true(res.encoding_changed);
    buf_reset(&out);
    assert_int_equal(footer_apply("Hi", "Reply \xE2\x80\x9CSTOP\xE2\x80\x9D to opt out", FOOTER_POLICY_ALWAYS, 1,
                                  SMS_SMART_ENCODING, &out, &res), 0);
    assert_false(res.encoding_changed);
    assert_int_equal(res.encoding_after, SMS_ENC_GSM7);
    buf_close(&out);
}

static void test_has_optout_direct(void **state)
{
    (void)state;
    assert_true(footer_has_optout("REPLY   STOP  TO  OPT OUT", 25, NULL));
    assert_false(footer_has_optout("reply", 5, NULL));
    assert_false(footer_has_optout("", 0, NULL));
    assert_false(footer_has_optout("stop", 4, NULL));
    assert_true(footer_has_optout("x: Quit with Q", 14, "quit with q"));
}

static void test_policy_names(void **state)
{
    footer_policy_t p;

    (void)state;
    assert_int_equal(footer_policy_parse("always", &p), 0);
    assert_int_equal(p, FOOTER_POLICY_ALWAYS);
    assert_string_equal(footer_policy_name(p), "always");
    assert_string_equal(footer_policy_name(FOOTER_POLICY_FIRST), "first");
    assert_string_equal(footer_policy_name(FOOTER_POLICY_NEVER), "never");
    assert_int_equal(footer_policy_parse("sometimes", &p), FOOTER_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_over_limit_and_smart),
        cmocka_unit_test(test_has_optout_direct),
        cmocka_unit_test(test_policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
