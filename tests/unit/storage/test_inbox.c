/*
 * A conversation's JSON from its columns (inbox_conversation_json()): the keys in the
 * order of the json_build_object() it replaces, numbers as numbers, SQL NULL as null,
 * tags as an array, form_state as its own JSON, timestamps in Postgres's form, and
 * text escaped whatever it holds. tests/integration/test_inbox.sh compares the same
 * writer with json_build_object() itself, value for value, on rows like these.
 */
#include "common/jsonw.h"
#include "storage/inbox.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static int json_of(const char *const cols[INBOX_CONV_NCOLS], buf_t *b)
{
    buf_reset(b);
    return inbox_conversation_json(cols, b);
}

static void test_plain(void **state)
{
    const char *cols[INBOX_CONV_NCOLS] = {
        [INBOX_CONV_ID] = "42",
        [INBOX_CONV_LAST_MESSAGE_AT] = "1790291041175020",
        [INBOX_CONV_OUR_NUMBER] = "+15005550001",
        [INBOX_CONV_CONTACT] = "+14155550001",
        [INBOX_CONV_STATUS] = "open",
        [INBOX_CONV_UNREAD] = "3",
        [INBOX_CONV_PREVIEW] = "hello",
        [INBOX_CONV_LAST_CAMPAIGN_ID] = "7",
        [INBOX_CONV_TAGS] = "{vip,lead}",
        [INBOX_CONV_FORM_STATE] = "{\"step\": 2, \"answers\": {\"name\": \"Ann\"}}",
        [INBOX_CONV_CREATED_AT] = "1709210096000000",
    };
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(json_of(cols, &b), 0);
    assert_string_equal(
        buf_str(&b),
        "{\"id\":42,\"our_number\":\"+15005550001\",\"contact\":\"+14155550001\",\"status\":\"open\","
        "\"unread\":3,\"last_message_at\":\"2026-09-24T23:04:01.17502+00:00\","
        "\"last_message_preview\":\"hello\",\"last_campaign_id\":7,\"tags\":[\"vip\",\"lead\"],"
        "\"form_state\":{\"step\": 2, \"answers\": {\"name\": \"Ann\"}},"
        "\"created_at\":\"2024-02-29T12:34:56+00:00\"}");
    buf_close(&b);
}

static void test_nulls_and_exotic_text(void **state)
{
    const char *cols[INBOX_CONV_NCOLS] = {
        [INBOX_CONV_ID] = "9007199254740993",
        [INBOX_CONV_LAST_MESSAGE_AT] = NULL,
        [INBOX_CONV_OUR_NUMBER] = "+15005550001",
        [INBOX_CONV_CONTACT] = "+14155550001",
        [INBOX_CONV_STATUS] = "closed",
        [INBOX_CONV_UNREAD] = "0",
        [INBOX_CONV_PREVIEW] = "say \"hi\" \\ caf\xc3\xa9 \xf0\x9f\x98\x80\n\t\x01\x1f end",
        [INBOX_CONV_LAST_CAMPAIGN_ID] = NULL,
        [INBOX_CONV_TAGS] =
            "{\"q\\\"uote\",\"back\\\\slash\",\"com,ma\",\"\xc3\xa9t\xc3\xa9\",NULL,\"NULL\"}",
        [INBOX_CONV_FORM_STATE] = NULL,
        [INBOX_CONV_CREATED_AT] = "1790291041000000",
    };
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(json_of(cols, &b), 0);
    assert_string_equal(
        buf_str(&b),
        "{\"id\":9007199254740993,\"our_number\":\"+15005550001\",\"contact\":\"+14155550001\","
        "\"status\":\"closed\",\"unread\":0,\"last_message_at\":null,"
        "\"last_message_preview\":\"say \\\"hi\\\" \\\\ caf\xc3\xa9 \xf0\x9f\x98\x80\\n\\t\\u0001\\u001F "
        "end\","
        "\"last_campaign_id\":null,"
        "\"tags\":[\"q\\\"uote\",\"back\\\\slash\",\"com,ma\",\"\xc3\xa9t\xc3\xa9\",null,\"NULL\"],"
        "\"form_state\":null,\"created_at\":\"2026-09-24T23:04:01+00:00\"}");
    cols[INBOX_CONV_TAGS] = "{}";
    cols[INBOX_CONV_PREVIEW] = "";
    cols[INBOX_CONV_FORM_STATE] = "[1, \"x\", null]";
    assert_int_equal(json_of(cols, &b), 0);
    assert_non_null(strstr(buf_str(&b), "\"last_message_preview\":\"\","));
    assert_non_null(strstr(buf_str(&b), "\"tags\":[],\"form_state\":[1, \"x\", null],"));
    buf_close(&b);
}

static void test_refused(void **state)
{
    const char *good[INBOX_CONV_NCOLS] = {"1", "0", "+1", "+2", "open", "0", NULL, NULL, "{}", NULL, "0"};
    const char *cols[INBOX_CONV_NCOLS];
    static const struct {
        enum inbox_conv_col col;
        const char *v;
        int want;
    } cases[] = {
        {INBOX_CONV_ID, "", INBOX_EROW},
        {INBOX_CONV_ID, "1e3", INBOX_EROW},
        {INBOX_CONV_UNREAD, "-", INBOX_EROW},
        {INBOX_CONV_LAST_CAMPAIGN_ID, "7 ", INBOX_EROW},
        {INBOX_CONV_LAST_MESSAGE_AT, "2026-01-01", INBOX_EROW},
        {INBOX_CONV_CREATED_AT, "99999999999999999999", INBOX_EROW},
        {INBOX_CONV_TAGS, "{a", INBOX_EROW},
        {INBOX_CONV_FORM_STATE, "", INBOX_EROW},
        {INBOX_CONV_PREVIEW, "caf\xc3", JSONW_EUTF8},
        {INBOX_CONV_TAGS, "{\xff}", JSONW_EUTF8},
    };
    buf_t b;
    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(json_of(good, &b), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(cols, good, sizeof(cols));
        cols[cases[i].col] = cases[i].v;
        assert_int_equal(json_of(cols, &b), cases[i].want);
    }
    buf_close(&b);
    /* Past the buffer's cap: refused, never truncated. */
    buf_init(&b, 40);
    assert_int_equal(inbox_conversation_json(good, &b), BUF_ETOOBIG);
    buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_nulls_and_exotic_text),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
