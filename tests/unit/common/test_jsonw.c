/* jsonw_string() against jansson: the same text for every string jansson takes, and a refusal for the others. */
#include "common/jsonw.h"
#include "common/utf8.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Checks s[0..n) against json_dumps of json_stringn (NULL when jansson refuses it). */
static void same_as_jansson(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    buf_t b;
    int rc;

    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, "x", 1), 0);
    rc = jsonw_string(&b, s, n);
    if (!j) {
        assert_int_equal(rc, JSONW_EUTF8);
        assert_int_equal(b.len, 1); /* nothing appended */
        assert_false(utf8_valid(s, n));
    } else {
        char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_int_equal(rc, 0);
        assert_true(utf8_valid(s, n));
        assert_string_equal(buf_str(&b) + 1, want);
        free(want);
        json_decref(j);
    }
    buf_close(&b);
}

static void test_fixed(void **state)
{
    static const char *const cases[] = {
        "", "plain", "say \"hi\"", "back\\slash", "a/b", "tab\there", "nl\nand\rcr", "\b\f",
        "\x01\x1f\x7f", "caf\xc3\xa9", "\xe2\x82\xac 5", "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
        "\xed\xa0\x80", /* surrogate */ "\xc0\xaf", /* overlong */ "\xf4\x90\x80\x80", "\x80", "abc\xc3",
        "\xef\xbf\xbf", "<Response><Message>x &amp; y</Message></Response>",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        same_as_jansson(cases[i], strlen(cases[i]));
    same_as_jansson("nul\0inside", 10);
}

static void test_every_byte_and_random(void **state)
{
    char s[64];
    unsigned seed = 12345;
    (void)state;
    for (int c = 0; c < 256; c++) {
        s[0] = 'a';
        s[1] = (char)c;
        s[2] = 'z';
        same_as_jansson(s, 3);
    }
    /* Random strings biased towards escapes and multibyte sequences. */
    for (int k = 0; k < 20000; k++) {
        size_t n = (size_t)(k % 40);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) & 0xff;
            static const unsigned char pick[] = {'a', '"', '\\', '\n', 0x01, 0xc3, 0xa9, 0xe2, 0x82, 0xac,
                                                 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0x7f, ' '};
            s[i] = (char)(r < 128 ? pick[r % sizeof(pick)] : r);
        }
        same_as_jansson(s, n);
    }
}

static void test_int(void **state)
{
    static const long long v[] = {0, 1, -1, 9, 10, -10, 123456789, 2147483647LL, -2147483648LL,
                                  9223372036854775807LL, -9223372036854775807LL - 1};
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        json_t *j = json_integer(v[i]);
        char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_t b;
        buf_init(&b, 64);
        assert_int_equal(jsonw_int(&b, v[i]), 0);
        assert_string_equal(buf_str(&b), want);
        buf_close(&b);
        free(want);
        json_decref(j);
    }
}

static void test_cap(void **state)
{
    buf_t b;
    (void)state;
    buf_init(&b, 8);
    assert_int_equal(jsonw_string(&b, "0123456789", 10), BUF_ETOOBIG);
    buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_every_byte_and_random),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
