/*
 * Table-driven tests of the form / query-string parser (http/form.h): decoding of
 * "+" and "%XX", repeated keys in order, empty pairs, malformed percent-encoding,
 * NUL bytes and the field-count and field-size caps.
 */
#include "http/form.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

typedef struct form_case {
    const char *input;
    int rc;
    const char *expect; /* "name=value|name=value" after decoding, for rc == 0 */
    size_t err_offset;  /* for rc != 0 */
} form_case_t;

static const form_case_t cases[] = {
    {"", 0, "", 0},
    {"a=1", 0, "a=1", 0},
    {"a=1&b=2", 0, "a=1|b=2", 0},
    {"Body=Hello+World", 0, "Body=Hello World", 0},
    {"Body=Hello%20World", 0, "Body=Hello World", 0},
    {"To=%2B14155550100", 0, "To=+14155550100", 0},
    {"MediaUrl=a&MediaUrl=b&MediaUrl=c", 0, "MediaUrl=a|MediaUrl=b|MediaUrl=c", 0},
    {"a=1&&b=2&", 0, "a=1|b=2", 0},
    {"&&&", 0, "", 0},
    {"flag", 0, "flag=", 0},
    {"a=", 0, "a=", 0},
    {"=v", 0, "=v", 0},
    {"a=b=c", 0, "a=b=c", 0},
    {"k%3D=v%26", 0, "k==v&", 0},
    {"DateSent%3C=2024-01-01", 0, "DateSent<=2024-01-01", 0},
    {"u=%E2%9C%93", 0, "u=\xe2\x9c\x93", 0},
    {"u=%e2%9c%93", 0, "u=\xe2\x9c\x93", 0},
    {"a=%", HTTP_FORM_EPERCENT, NULL, 2},
    {"a=%4", HTTP_FORM_EPERCENT, NULL, 2},
    {"a=%zz", HTTP_FORM_EPERCENT, NULL, 2},
    {"ok=1&a%g1=2", HTTP_FORM_EPERCENT, NULL, 6},
    {"a=%00", HTTP_FORM_ENUL, NULL, 2},
};

static void render(const http_form_t *f, char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < f->count; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s=%s", i ? "|" : "", f->params[i].name, f->params[i].value);
}

static void test_table(void **state)
{
    (void)state;
    http_arena_t arena;
    http_arena_init(&arena, 1024);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const form_case_t *c = &cases[i];
        http_form_t f;
        http_form_error_t err = {0, NULL};
        int rc = http_form_parse(c->input, strlen(c->input), NULL, &arena, &f, &err);
        if (rc != c->rc)
            fail_msg("case %zu \"%s\": rc %d, want %d", i, c->input, rc, c->rc);
        if (rc == 0) {
            char got[512];
            render(&f, got, sizeof(got));
            if (strcmp(got, c->expect) != 0)
                fail_msg("case %zu \"%s\": got \"%s\", want \"%s\"", i, c->input, got, c->expect);
        } else {
            assert_int_equal(f.count, 0);
            assert_non_null(err.reason);
            if (err.offset != c->err_offset)
                fail_msg("case %zu \"%s\": offset %zu, want %zu", i, c->input, err.offset, c->err_offset);
        }
        http_arena_reset(&arena);
    }
    http_arena_close(&arena);
}

static void test_lengths(void **state)
{
    (void)state;
    http_arena_t arena;
    http_arena_init(&arena, 256);
    http_form_t f;
    /* Values may hold any byte but NUL when given with an explicit length. */
    const char raw[] = "a=x\x01y&b=2";
    assert_int_equal(http_form_parse(raw, sizeof(raw) - 1, NULL, &arena, &f, NULL), 0);
    assert_int_equal(f.count, 2);
    assert_int_equal(f.params[0].value_len, 3);
    const char nul[] = "a=x\0y";
    assert_int_equal(http_form_parse(nul, sizeof(nul) - 1, NULL, &arena, &f, NULL), HTTP_FORM_ENUL);
    http_arena_close(&arena);
}

static void test_caps(void **state)
{
    (void)state;
    http_arena_t arena;
    http_arena_init(&arena, 256);
    http_form_t f;
    http_form_error_t err;
    http_form_limits_t lim = {.max_fields = 3, .max_field_len = 8, .max_input = 64};
    assert_int_equal(http_form_parse("a=1&b=2&c=3", 11, &lim, &arena, &f, &err), 0);
    assert_int_equal(f.count, 3);
    assert_int_equal(http_form_parse("a=1&b=2&c=3&d=4", 15, &lim, &arena, &f, &err), HTTP_FORM_ETOOMANY);
    /* Empty pairs are not fields. */
    assert_int_equal(http_form_parse("a=1&&&&&b=2", 11, &lim, &arena, &f, &err), 0);
    assert_int_equal(f.count, 2);
    assert_int_equal(http_form_parse("a=12345678", 10, &lim, &arena, &f, &err), 0);
    assert_int_equal(http_form_parse("a=123456789", 11, &lim, &arena, &f, &err), HTTP_FORM_ETOOLONG);
    /* The cap applies to the decoded length: 8 encoded bytes "%41" x 3 = 3 decoded. */
    assert_int_equal(http_form_parse("a=%41%41%41", 11, &lim, &arena, &f, &err), 0);
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(http_form_parse(big, sizeof(big), &lim, &arena, &f, &err), HTTP_FORM_ETOOLONG);
    http_arena_close(&arena);
}

static void test_get_count_encode(void **state)
{
    (void)state;
    http_arena_t arena;
    http_arena_init(&arena, 256);
    http_form_t f;
    const char *in = "To=%2B1&MediaUrl=a&MediaUrl=b";
    assert_int_equal(http_form_parse(in, strlen(in), NULL, &arena, &f, NULL), 0);
    assert_string_equal(http_form_get(&f, "To"), "+1");
    assert_string_equal(http_form_get(&f, "MediaUrl"), "a");
    assert_null(http_form_get(&f, "Body"));
    assert_int_equal(http_form_count(&f, "MediaUrl"), 2);
    char out[64];
    assert_int_equal(http_form_encode("a b+c/é", out, sizeof(out)), 16);
    assert_string_equal(out, "a+b%2Bc%2F%C3%A9");
    /* Round trip. */
    assert_int_equal(http_form_parse(out, strlen(out), NULL, &arena, &f, NULL), 0);
    assert_string_equal(f.params[0].name, "a b+c/é");
    assert_int_equal(http_form_encode("abc", out, 3), -1);
    http_arena_close(&arena);
}

static void test_arena(void **state)
{
    (void)state;
    http_arena_t a;
    http_arena_init(&a, 256);
    char *p = http_arena_strndup(&a, "hello", 5);
    assert_string_equal(p, "hello");
    void *big = http_arena_alloc(&a, 10000);
    memset(big, 1, 10000);
    char *q = http_arena_strndup(&a, "world", 5);
    assert_string_equal(q, "world");
    assert_int_equal((uintptr_t)http_arena_alloc(&a, 3) % _Alignof(max_align_t), 0);
    http_arena_reset(&a);
    assert_string_equal(http_arena_strndup(&a, "again", 5), "again");
    http_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table), cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_caps),  cmocka_unit_test(test_get_count_encode),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
