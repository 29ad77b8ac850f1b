/*
 * pgjson against Postgres 15's own output: every expected string below is what
 * to_json(t)::text (session TimeZone UTC) or array_to_json(a)::text printed for the
 * value, and the array literals are what the same server printed for a::text.
 */
#include "common/jsonw.h"
#include "storage/pgjson.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void test_timestamptz(void **state)
{
    static const struct {
        int64_t us;
        const char *want;
    } cases[] = {
        {INT64_C(1790291041175023), "\"2026-09-24T23:04:01.175023+00:00\""},
        {INT64_C(1790291041175020), "\"2026-09-24T23:04:01.17502+00:00\""}, /* trailing zero dropped */
        {INT64_C(1790291041100000), "\"2026-09-24T23:04:01.1+00:00\""},
        {INT64_C(1790291041000001), "\"2026-09-24T23:04:01.000001+00:00\""},
        {INT64_C(1790291041000000), "\"2026-09-24T23:04:01+00:00\""}, /* zero fraction: none */
        {0, "\"1970-01-01T00:00:00+00:00\""},
        {500000, "\"1970-01-01T00:00:00.5+00:00\""},
        {INT64_C(1709210096789000), "\"2024-02-29T12:34:56.789+00:00\""}, /* leap day */
        {INT64_C(951782400000100), "\"2000-02-29T00:00:00.0001+00:00\""}, /* 2000 is a leap year */
        {INT64_C(951868800000000), "\"2000-03-01T00:00:00+00:00\""},
        {INT64_C(4107542399999999), "\"2100-02-28T23:59:59.999999+00:00\""}, /* 2100 is not */
        {INT64_C(4107542400000000), "\"2100-03-01T00:00:00+00:00\""},
        {INT64_C(946684799999990), "\"1999-12-31T23:59:59.99999+00:00\""},
        {INT64_C(2147483648000000), "\"2038-01-19T03:14:08+00:00\""},
        {INT64_C(253402300799999999), "\"9999-12-31T23:59:59.999999+00:00\""},
        {INT64_C(327416976550111200), "\"12345-06-07T08:09:10.1112+00:00\""},
        /* Before 1970 and before 1 AD (not needed by conversations, but Postgres's form too). */
        {-1, "\"1969-12-31T23:59:59.999999+00:00\""},
        {INT64_C(-2203973877000000), "\"1900-02-28T01:02:03+00:00\""},
        {INT64_C(-12220243200000000), "\"1582-10-04T00:00:00+00:00\""},
        {INT64_C(-62135596800000000), "\"0001-01-01T00:00:00+00:00\""},
        {INT64_C(-62135596801000000), "\"0001-12-31T23:59:59+00:00 BC\""},
        {INT64_C(-63517780799750000), "\"0044-03-15T12:00:00.25+00:00 BC\""},
        {INT64_C(-210835180800000000), "\"4713-11-24T00:00:00+00:00 BC\""},
    };
    buf_t b;
    (void)state;
    buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(pgjson_timestamptz(&b, cases[i].us), 0);
        assert_string_equal(buf_str(&b), cases[i].want);
    }
    buf_close(&b);
}

/* Every day from 1900 to 2200 against a plain count of the calendar. */
static void test_every_day(void **state)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t us = INT64_C(-2208988800000000) + 3723000000; /* 1900-01-01 01:02:03 */
    char want[64];
    buf_t b;
    (void)state;
    buf_init(&b, 4096);
    for (int y = 1900; y < 2200; y++)
        for (int m = 1; m <= 12; m++) {
            int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            for (int d = 1; d <= mdays[m - 1] + (m == 2 && leap); d++) {
                snprintf(want, sizeof(want), "\"%04d-%02d-%02dT01:02:03+00:00\"", y, m, d);
                buf_reset(&b);
                assert_int_equal(pgjson_timestamptz(&b, us), 0);
                assert_string_equal(buf_str(&b), want);
                us += INT64_C(86400000000);
            }
        }
    buf_close(&b);
}

static void array_is(const char *lit, const char *want)
{
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_int_equal(pgjson_text_array(&b, lit, strlen(lit)), 0);
    assert_string_equal(buf_str(&b) + 1, want);
    buf_close(&b);
}

static void array_refused(const char *lit, size_t n, int want)
{
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(pgjson_text_array(&b, lit, n), want);
    buf_close(&b);
}

static void test_text_array(void **state)
{
    (void)state;
    array_is("{}", "[]");
    array_is("{vip}", "[\"vip\"]");
    /* Quoting, escapes, NULL and the strings that only look like it, the delimiter,
       braces, whitespace, non-ASCII and control characters. jsonw writes \u00XX in
       capitals where Postgres writes \u00xx: the same JSON value. */
    array_is(
        "{a,\"b c\",\"q\\\"uote\",\"back\\\\slash\",\"com,ma\",\"{brace}\",\"NULL\",\"null\",NULL,\"\","
        "\"  lead\",\"tab\tx\",caf\xc3\xa9,\xf0\x9f\x98\x80x,\"nl\nx\",ctl\x01}",
        "[\"a\",\"b c\",\"q\\\"uote\",\"back\\\\slash\",\"com,ma\",\"{brace}\",\"NULL\",\"null\",null,\"\","
        "\"  lead\",\"tab\\tx\",\"caf\xc3\xa9\",\"\xf0\x9f\x98\x80x\",\"nl\\nx\",\"ctl\\u0001\"]");
    array_is("{\"NuLl\",N,NULLx}", "[\"NuLl\",\"N\",\"NULLx\"]");
    array_is("[0:1]={x,y}", "[\"x\",\"y\"]");
    array_is("{{a,b},{c,NULL}}", "[[\"a\",\"b\"],[\"c\",null]]");
    array_is("[2:3][1:2]={{\"\\\\\",\"\\\"\"},{e,f}}", "[[\"\\\\\",\"\\\"\"],[\"e\",\"f\"]]");
}

static void test_text_array_refused(void **state)
{
    static const char *const bad[] = {
        "",     "vip",  "{",    "{a",     "{a,}",   "{,a}",     "{a,,b}", "{\"a}", "{\"a\\\"}",
        "{a}x", "{a}}", "{{a}", "{a{b}}", "{a\"b}", "[0:1]{a}", "{a\\b}", "}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        array_refused(bad[i], strlen(bad[i]), PGJSON_EINVAL);
    array_refused("{caf\xc3}", 6, JSONW_EUTF8);
    array_refused("{\"\xff\\\\\"}", 6, JSONW_EUTF8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamptz),
        cmocka_unit_test(test_every_day),
        cmocka_unit_test(test_text_array),
        cmocka_unit_test(test_text_array_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
