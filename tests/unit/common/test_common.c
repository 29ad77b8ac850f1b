/* Unit tests for common/: capped buffers, phone masking, the .env loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/env.h"
#include "common/log.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_buf_cap(void **state)
{
    buf_t b;
    (void)state;
    buf_init(&b, 8);
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_puts(&b, "abcd"), 0);
    assert_int_equal(buf_printf(&b, "%d", 123), 0);
    assert_string_equal(buf_str(&b), "abcd123");
    assert_int_equal(buf_puts(&b, "xy"), BUF_ETOOBIG); /* 9 > 8: refused, contents intact */
    assert_string_equal(buf_str(&b), "abcd123");
    assert_int_equal(buf_puts(&b, "z"), 0);
    assert_int_equal(b.len, 8);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    buf_close(&b);
}

static void test_buf_take(void **state)
{
    buf_t b;
    size_t n;
    char *p;
    (void)state;
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_printf(&b, "%04d", i), 0);
    p = buf_take(&b, &n);
    assert_int_equal(n, 4000);
    assert_memory_equal(p + 3996, "0999", 4);
    assert_null(b.data);
    free(p);
    buf_close(&b);
}

static void test_mask_phone(void **state)
{
    char out[32];
    (void)state;
    assert_string_equal(log_mask_phone("+14155550199", out, sizeof(out)), "+1415***0199");
    assert_string_equal(log_mask_phone("+447911123456", out, sizeof(out)), "+4479***3456");
    assert_string_equal(log_mask_phone("12345", out, sizeof(out)), "***");
    assert_string_equal(log_mask_phone(NULL, out, sizeof(out)), "***");
    /* Never more than 9 of the number's characters survive. */
    assert_null(strstr(log_mask_phone("+14155550199", out, sizeof(out)), "5550"));
}

static void test_dotenv(void **state)
{
    char path[] = "/tmp/herald-dotenv-XXXXXX";
    int fd = mkstemp(path), bad = 0;
    FILE *f = fdopen(fd, "w");
    (void)state;
    fputs("# comment\n\nHERALD_T_A=1\nexport HERALD_T_B=\"two words\"\nHERALD_T_C='x=y'\n", f);
    fclose(f);
    setenv("HERALD_T_A", "env-wins", 1);
    unsetenv("HERALD_T_B");
    unsetenv("HERALD_T_C");
    assert_int_equal(env_load_dotenv(path, &bad), 2);
    assert_string_equal(getenv("HERALD_T_A"), "env-wins");
    assert_string_equal(getenv("HERALD_T_B"), "two words");
    assert_string_equal(getenv("HERALD_T_C"), "x=y");

    f = fopen(path, "w");
    fputs("OK=1\nnot a line\n", f);
    fclose(f);
    assert_int_equal(env_load_dotenv(path, &bad), -1);
    assert_int_equal(bad, 2);
    unlink(path);
    assert_int_equal(env_load_dotenv("/nonexistent/.env", &bad), 0);
}

static void test_utf8_seq(void **state)
{
    static const struct {
        const char *bytes;
        size_t avail;
        size_t want;
    } cases[] = {
        {"a", 1, 1},           {"\0", 1, 1},
        {"\xc3\xa9", 2, 2},    {"\xc3", 1, 0},           /* truncated */
        {"\xc0\xaf", 2, 0},    {"\xc1\xbf", 2, 0},       /* overlong two-byte */
        {"\xe2\x82\xac", 3, 3}, {"\xe0\x9f\xbf", 3, 0},  /* overlong three-byte */
        {"\xed\x9f\xbf", 3, 3}, {"\xed\xa0\x80", 3, 0},  /* U+D7FF ok, surrogate not */
        {"\xef\xbf\xbf", 3, 3}, {"\xf0\x9f\x98\x80", 4, 4},
        {"\xf0\x8f\xbf\xbf", 4, 0}, {"\xf4\x8f\xbf\xbf", 4, 4}, /* overlong; U+10FFFF */
        {"\xf4\x90\x80\x80", 4, 0}, {"\xf5\x80\x80\x80", 4, 0}, /* past U+10FFFF */
        {"\x80", 1, 0},         {"\xe2\x28\xa1", 3, 0},     /* lone continuation; bad third */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(utf8_seq((const unsigned char *)cases[i].bytes, cases[i].avail), cases[i].want);
}

static void test_utf8_valid_prefix(void **state)
{
    (void)state;
    assert_int_equal(utf8_valid_prefix("", 0), 0);
    assert_int_equal(utf8_valid_prefix("caf\xc3\xa9 ok", 8), 8);
    assert_int_equal(utf8_valid_prefix("caf\xc3\xa9\x80 ok", 9), 5);  /* stops at the lone continuation */
    assert_int_equal(utf8_valid_prefix("ab\xe2\x82", 4), 2);           /* a truncated sequence at the end */
    assert_int_equal(utf8_valid_prefix("a\0b", 3), 3);                  /* NUL counts as ASCII */
    assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(utf8_valid("\xed\xa0\x80", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_buf_take),
        cmocka_unit_test(test_mask_phone),
        cmocka_unit_test(test_dotenv),
        cmocka_unit_test(test_utf8_seq),
        cmocka_unit_test(test_utf8_valid_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
