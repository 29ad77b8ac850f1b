/*
 * Unit tests for the fast Twilio JSON reader (provider/msgjson.c). Its promise is
 * "when I accept, jansson accepts with the same values", so besides a few fixed
 * documents every test compares with json_loadb() on the same bytes: generated
 * documents (escapes, UTF-8, duplicates, nesting, numbers, literals) and random
 * mutations of them (bytes flipped, inserted, deleted, truncated).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "provider/provider_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const key_names[MJ_NKEYS] = {
    "sid",       "account_sid", "messaging_service_sid", "to",
    "from",      "status",      "error_message",         "date_created",
    "date_sent", "direction",   "num_segments",          "error_code",
    "code",      "message",
};

static const char sim_create[] =
    "{\"account_sid\":\"AC0123456789abcdef0123456789abcdef\",\"api_version\":\"2010-04-01\",\"body\":\"hi "
    "\\u00e9\","
    "\"date_created\":\"Mon, 23 Nov 2026 00:36:20 +0000\",\"date_sent\":null,\"date_updated\":\"Mon, 23 Nov "
    "2026 "
    "00:36:20 "
    "+0000\",\"direction\":\"outbound-api\",\"error_code\":null,\"error_message\":null,\"from\":\"+"
    "15005550006\","
    "\"messaging_service_sid\":null,\"num_media\":\"0\",\"num_segments\":\"1\",\"price\":null,\"price_unit\":"
    "\"USD\","
    "\"sid\":\"SMd54a2134fd970b3b5442a1d9fd41f436\",\"status\":\"queued\",\"subresource_uris\":{\"media\":\"/"
    "x/Media.json\","
    "\"feedback\":\"/x/Feedback.json\"},\"to\":\"+14155550100\",\"uri\":\"/x.json\"}";

/*
 * Compares the fast reader with jansson on s[0..len). Returns 1 when the fast
 * reader accepted (and agreed), 0 when it declined; fails the test on disagreement.
 */
static int check_same(const char *s, size_t len)
{
    msgjson_t mj;
    json_error_t err;
    json_t *root;
    int fast = msgjson_scan(s, len, &mj);

    if (!fast)
        return 0;
    root = json_loadb(s, len, 0, &err);
    if (root == NULL || !json_is_object(root)) {
        fprintf(stderr, "fast reader accepted what jansson refuses (%s): %.*s\n",
                root ? "not an object" : err.text, (int)len, s);
        fail();
    }
    for (int k = 0; k < MJ_NKEYS; k++) {
        json_t *v = json_object_get(root, key_names[k]);
        const msgjson_field_t *f = &mj.f[k];
        msgjson_type_t want = v == NULL            ? MSGJSON_ABSENT
                              : json_is_string(v)  ? MSGJSON_STRING
                              : json_is_integer(v) ? MSGJSON_INTEGER
                                                   : MSGJSON_OTHER;
        if (f->type != want) {
            fprintf(stderr, "key %s: type %d, jansson %d in: %.*s\n", key_names[k], f->type, want, (int)len,
                    s);
            fail();
        }
        if (want == MSGJSON_INTEGER)
            assert_true(f->integer == json_integer_value(v));
        if (want == MSGJSON_STRING) {
            size_t jl = json_string_length(v);
            size_t cut = jl < MSGJSON_MAX_STR ? jl : MSGJSON_MAX_STR - 1;
            assert_int_equal(f->len, jl);
            assert_int_equal(strlen(f->str), cut);
            assert_memory_equal(f->str, json_string_value(v), cut);
        }
    }
    json_decref(root);
    return 1;
}

static void test_fixed(void **state)
{
    msgjson_t mj;
    (void)state;

    assert_int_equal(check_same(sim_create, strlen(sim_create)), 0); /* \u escape: left to jansson */
    {
        char doc[sizeof(sim_create)];
        strcpy(doc, sim_create);
        memcpy(strstr(doc, "\\u00e9"), "\\n\\t\\/", 6); /* same length */
        assert_int_equal(check_same(doc, strlen(doc)), 1);
        assert_int_equal(msgjson_scan(doc, strlen(doc), &mj), 1);
        assert_string_equal(mj.f[MJ_SID].str, "SMd54a2134fd970b3b5442a1d9fd41f436");
        assert_string_equal(mj.f[MJ_NUM_SEGMENTS].str, "1");
        assert_int_equal(mj.f[MJ_ERROR_CODE].type, MSGJSON_OTHER);
        assert_int_equal(mj.f[MJ_CODE].type, MSGJSON_ABSENT);
    }
    static const char *const accepted[] = {
        "{}",
        " \t\r\n{ } \n",
        "{\"code\":21211,\"message\":\"The 'To' number is not valid.\",\"more_info\":\"x\",\"status\":400}",
        "{\"code\":-0,\"message\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}",
        "{\"sid\":\"SM1\",\"sid\":\"SM2\",\"to\":1,\"to\":\"+1\"}",
        "{\"x\":[1,[2,[true,false,null]],{\"a\":{}}],\"code\":999999999999999999}",
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
        assert_int_equal(check_same(accepted[i], strlen(accepted[i])), 1);
    assert_int_equal(msgjson_scan(accepted[4], strlen(accepted[4]), &mj), 1);
    assert_string_equal(mj.f[MJ_SID].str, "SM2");
    assert_int_equal(mj.f[MJ_TO].type, MSGJSON_STRING);

    static const char *const declined[] = {
        "",
        "[]",
        "\"x\"",
        "{\"a\":1.5}",
        "{\"a\":1e3}",
        "{\"a\":01}",
        "{\"a\":1234567890123456789}",
        "{\"a\":\"\\u0041\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":1} x",
        "{\"a\":1}\0",
        "{\"a\":[1 2]}",
        "{\"s\\u0069d\":\"SM\"}",
        "{\"a\":\"unterminated}",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        size_t len = strlen(declined[i]) + (i == 17 ? 1 : 0);
        assert_int_equal(msgjson_scan(declined[i], len, &mj), 0);
    }
}

/* ---- generated documents ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct out {
    char b[8192];
    size_t n;
} out_t;

static void put(out_t *o, const char *s)
{
    size_t l = strlen(s);
    if (o->n + l < sizeof(o->b)) {
        memcpy(o->b + o->n, s, l);
        o->n += l;
    }
}

static void gen_string(out_t *o)
{
    static const char *const pieces[] = {
        "a",
        "SM0123456789abcdef",
        " ",
        "+14155550100",
        "\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\t",
        "\\b",
        "\\f",
        "\\r",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "12",
        "-7",
        "0",
        " 5",
        "\\u00e9",
        "\\u0000",
        "x y z",
    };
    int n = (int)rnd(6);
    put(o, "\"");
    if (rnd(20) == 0)
        for (int i = 0; i < 300; i++)
            put(o, "long-");
    for (int i = 0; i < n; i++)
        put(o, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    put(o, "\"");
}

static void gen_value(out_t *o, int depth)
{
    static const char *const scalars[] = {"0",   "1",   "-1",   "21211", "-0",   "999999999999999999",
                                          "1.5", "2e3", "true", "false", "null", "12345678901234567890"};
    unsigned k = rnd(depth > 3 ? 3 : 5);
    if (k == 0) {
        gen_string(o);
    } else if (k == 1 || k == 2) {
        put(o, scalars[rnd(sizeof(scalars) / sizeof(scalars[0]))]);
    } else if (k == 3) {
        int n = (int)rnd(4);
        put(o, "[");
        for (int i = 0; i < n; i++) {
            if (i)
                put(o, rnd(2) ? "," : " , ");
            gen_value(o, depth + 1);
        }
        put(o, "]");
    } else {
        int n = (int)rnd(4);
        put(o, "{");
        for (int i = 0; i < n; i++) {
            if (i)
                put(o, ",");
            put(o, "\"k\":");
            gen_value(o, depth + 1);
        }
        put(o, "}");
    }
}

static void gen_doc(out_t *o)
{
    int n = (int)rnd(16);
    o->n = 0;
    put(o, rnd(4) ? "{" : " \n{ ");
    for (int i = 0; i < n; i++) {
        if (i)
            put(o, rnd(3) ? "," : ",\n  ");
        if (rnd(4)) {
            put(o, "\"");
            put(o, key_names[rnd(MJ_NKEYS)]);
            put(o, "\"");
        } else {
            gen_string(o);
        }
        put(o, rnd(3) ? ":" : " : ");
        gen_value(o, 1);
    }
    put(o, rnd(4) ? "}" : "}\r\n");
}

static void test_differential(void **state)
{
    out_t o;
    int accepted = 0, mutated_accepted = 0;
    (void)state;

    for (int i = 0; i < 20000; i++) {
        gen_doc(&o);
        accepted += check_same(o.b, o.n);
        for (int m = 0; m < 4; m++) {
            char doc[8192];
            size_t n = o.n;
            memcpy(doc, o.b, n);
            switch (rnd(4)) {
            case 0:
                if (n)
                    doc[rnd((unsigned)n)] = (char)rnd(256);
                break;
            case 1:
                if (n) {
                    size_t at = rnd((unsigned)n);
                    memmove(doc + at + 1, doc + at, n - at);
                    doc[at] = "{}[]\",:\\ 0e.-tn\x80"[rnd(17)];
                    n++;
                }
                break;
            case 2:
                if (n) {
                    size_t at = rnd((unsigned)n);
                    memmove(doc + at, doc + at + 1, n - at - 1);
                    n--;
                }
                break;
            default:
                n = n ? rnd((unsigned)n) : 0;
            }
            mutated_accepted += check_same(doc, n);
        }
    }
    printf("msgjson: %d of 20000 generated and %d of 80000 mutated documents took the fast path\n", accepted,
           mutated_accepted);
    /* The fast path must stay the common path for plain documents. */
    assert_true(accepted > 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
