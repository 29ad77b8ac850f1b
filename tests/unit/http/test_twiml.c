/* TwiML writing: XML escaping, invalid UTF-8 and control characters, the empty answer. */
#include "http/twiml.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

static const char *esc(buf_t *b, const char *s, size_t n)
{
    buf_reset(b);
    assert_int_equal(twiml_escape(b, s, n), 0);
    return buf_str(b);
}

static void test_escape(void **state)
{
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 16);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"a & b", "a &amp; b"},
        {"<Message>", "&lt;Message&gt;"},
        {"\"q\" 'a'", "&quot;q&quot; &apos;a&apos;"},
        {"</Response><Redirect>http://evil</Redirect>", "&lt;/Response&gt;&lt;Redirect&gt;http://evil&lt;/Redirect&gt;"},
        {"tab\tnl\ncr\r", "tab\tnl\ncr\r"},
        {"bell\x07" "esc\x1b", "bellesc"},
        {"caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80"},
        {"bad \xff byte", "bad \xef\xbf\xbd byte"},
        {"trunc \xc3", "trunc \xef\xbf\xbd"},
        {"overlong \xc0\xaf", "overlong \xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"&amp;", "&amp;amp;"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(esc(&b, cases[i].in, strlen(cases[i].in)), cases[i].out);
    /* An embedded NUL is a control character: dropped. */
    assert_string_equal(esc(&b, "a\0b", 3), "ab");
    buf_close(&b);
}

static void test_document(void **state)
{
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(twiml_begin(&b), 0);
    assert_int_equal(twiml_message(&b, "Hi <you>", 8), 0);
    assert_int_equal(twiml_message(&b, "2nd", 3), 0);
    assert_int_equal(twiml_end(&b), 0);
    assert_string_equal(buf_str(&b), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Hi &lt;you&gt;"
                                     "</Message><Message>2nd</Message></Response>");
    assert_string_equal(twiml_empty(), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
    buf_close(&b);
}

static void test_cap(void **state)
{
    buf_t b;
    char big[200];
    (void)state;
    memset(big, '&', sizeof(big));
    buf_init(&b, 100);
    assert_int_equal(twiml_escape(&b, big, sizeof(big)), BUF_ETOOBIG);
    buf_close(&b);
}

static void test_utf8_clean(void **state)
{
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 10);
    assert_int_equal(twiml_utf8_clean(&b, "ok \xe2\x82\xac \xfe<x>", 11), 0);
    assert_string_equal(buf_str(&b), "ok \xe2\x82\xac \xef\xbf\xbd<x>");
    buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_utf8_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
