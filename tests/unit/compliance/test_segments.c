/*
 * Unit tests for compliance/segments: the table tests/data/segments_cases.tsv
 * (expected values from Twilio's calculator) plus the API's edges: Smart
 * Encoding output, error strings, buffer caps, long inputs.
 */
#include "common/buf.h"
#include "compliance/segments.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void put_cp(buf_t *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    assert_int_equal(buf_append(b, u, n), 0);
}

/* Decodes the table's text notation (see the header of segments_cases.tsv). */
static void decode_text(const char *t, buf_t *out)
{
    size_t last = 0, groups[8], ngroups = 0;

    while (*t) {
        if (t[0] == '\\') {
            char c = t[1];
            if (c == '{') {
                char *end;
                long n = strtol(t + 2, &end, 10);
                size_t glen = out->len - last;
                char *g = malloc(glen + 1);
                assert_true(*end == '}' && n >= 1);
                memcpy(g, out->data + last, glen);
                for (long k = 1; k < n; k++)
                    assert_int_equal(buf_append(out, g, glen), 0);
                free(g);
                t = end + 1;
                continue;
            }
            if (c == '(') {
                assert_true(ngroups < 8);
                groups[ngroups++] = out->len;
                t += 2;
                continue;
            }
            if (c == ')') {
                assert_true(ngroups > 0);
                last = groups[--ngroups];
                t += 2;
                continue;
            }
            last = out->len;
            if (c == 'x' || c == 'u') {
                int w = c == 'x' ? 2 : 4;
                char hex[5] = {0};
                memcpy(hex, t + 2, (size_t)w);
                unsigned long v = strtoul(hex, NULL, 16);
                if (c == 'x') {
                    unsigned char byte = (unsigned char)v;
                    assert_int_equal(buf_append(out, &byte, 1), 0);
                } else {
                    put_cp(out, (uint32_t)v);
                }
                t += 2 + w;
                continue;
            }
            {
                char ch = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == 'f' ? '\f'
                        : c == '0' ? '\0' : c;
                assert_true(strchr("nrtf0\\", c) != NULL);
                assert_int_equal(buf_append(out, &ch, 1), 0);
            }
            t += 2;
            continue;
        }
        last = out->len;
        {
            size_t n = 1;
            unsigned char b = (unsigned char)*t;
            if (b >= 0xF0)
                n = 4;
            else if (b >= 0xE0)
                n = 3;
            else if (b >= 0xC0)
                n = 2;
            assert_int_equal(buf_append(out, t, n), 0);
            t += n;
        }
    }
}

static void test_table(void **state)
{
    char line[4096];
    int lineno = 0, cases = 0, failures = 0;
    FILE *f = fopen(HERALD_TEST_DATA_DIR "/segments_cases.tsv", "r");
    buf_t text;

    (void)state;
    assert_non_null(f);
    buf_init(&text, 1 << 20);
    while (fgets(line, sizeof(line), f)) {
        char *field[6] = {0}, *p = line;
        unsigned segs;
        size_t chars, units;
        sms_info_t info;
        int r, nf = 0;

        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (nf < 6) {
            field[nf++] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        assert_int_equal(nf, 6);
        buf_reset(&text);
        decode_text(field[5], &text);
        r = sms_analyze(buf_str(&text), text.len, strcmp(field[0], "smart") == 0 ? SMS_SMART_ENCODING : 0,
                        &info);
        cases++;
        if (strcmp(field[1], "error") == 0) {
            if (r != SMS_EUTF8) {
                print_error("line %d: expected SMS_EUTF8, got %d\n", lineno, r);
                failures++;
            }
            continue;
        }
        segs = (unsigned)strtoul(field[2], NULL, 10);
        chars = strtoul(field[3], NULL, 10);
        units = strtoul(field[4], NULL, 10);
        if (r != 0 || strcmp(sms_encoding_name(info.encoding), field[1]) != 0 || info.segments != segs ||
            info.characters != chars || info.units != units || info.over_limit != (units > SMS_MAX_UNITS)) {
            print_error("line %d (%s): expected %s %u %zu %zu, got r=%d %s %u %zu %zu\n", lineno, field[5],
                        field[1], segs, chars, units, r, sms_encoding_name(info.encoding), info.segments,
                        info.characters, info.units);
            failures++;
        }
    }
    fclose(f);
    buf_close(&text);
    print_message("%d table cases\n", cases);
    assert_true(cases > 50);
    assert_int_equal(failures, 0);
}

static void test_smart_encode(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Hi \xE2\x80\x9Cthere\xE2\x80\x9D \xE2\x80\x94 ok\xE2\x80\xA6", "Hi \"there\" - ok..."},
        {"tab\there", "tab       here"},
        {"\xC2\xBD off", "1/2 off"},
        {"a\xE2\x80\x8B" "b", "ab"},
        {"plain \xD0\xB6 text", "plain \xD0\xB6 text"},
        {"", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t b;
        buf_init(&b, 1024);
        assert_int_equal(sms_smart_encode(cases[i].in, strlen(cases[i].in), &b), 0);
        assert_string_equal(buf_str(&b), cases[i].out);
        buf_close(&b);
    }
}

static void test_smart_encode_errors(void **state)
{
    buf_t b;

    (void)state;
    buf_init(&b, 4);
    assert_int_equal(sms_smart_encode("abc\xFF", 4, &b), SMS_EUTF8);
    buf_reset(&b);
    assert_int_equal(sms_smart_encode("abcdef", 6, &b), SMS_ETOOBIG);
    buf_reset(&b);
    assert_int_equal(sms_smart_encode("\xE2\x80\xA6\xE2\x80\xA6", 6, &b), SMS_ETOOBIG);
    buf_close(&b);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sms_encoding_name(SMS_ENC_GSM7), "GSM-7");
    assert_string_equal(sms_encoding_name(SMS_ENC_UCS2), "UCS-2");
    assert_string_equal(sms_strerror(0), "ok");
    assert_string_equal(sms_strerror(SMS_EUTF8), "text is not valid UTF-8");
    assert_non_null(sms_strerror(-99));
}

static void test_null_empty(void **state)
{
    sms_info_t info;

    (void)state;
    assert_int_equal(sms_analyze(NULL, 0, 0, &info), 0);
    assert_int_equal(info.encoding, SMS_ENC_GSM7);
    assert_int_equal(info.segments, 1);
    assert_int_equal(info.characters, 0);
}

/* A cluster of any length is handled in linear time and counted whole. */
static void test_long_cluster(void **state)
{
    size_t n = 200000;
    char *s = malloc(1 + 2 * n);
    sms_info_t info;

    (void)state;
    s[0] = 'e';
    for (size_t i = 0; i < n; i++)
        memcpy(s + 1 + 2 * i, "\xCC\x81", 2);
    assert_int_equal(sms_analyze(s, 1 + 2 * n, 0, &info), 0);
    assert_int_equal(info.encoding, SMS_ENC_UCS2);
    assert_int_equal(info.characters, 1);
    assert_int_equal(info.units, n + 1);
    assert_int_equal(info.segments, 2);
    assert_true(info.over_limit);
    free(s);
}

static void test_code_points(void **state)
{
    sms_info_t info;
    const char *s = "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok"; /* thumbs up + skin tone */

    (void)state;
    assert_int_equal(sms_analyze(s, strlen(s), 0, &info), 0);
    assert_int_equal(info.code_points, 5);
    assert_int_equal(info.units, 7);
    assert_int_equal(info.characters, 4);
}

/* ---- differential check against the implementation before the UCS-2 fast paths ---- */

#include "segments_ref.inc"

static uint64_t rng_state = 0x853C49E6748FEA9Bull;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static const char *const pieces[] = {
    "a", "Hello", " ", "  ", "sale", "20% off!", "\r\n", "\n", "\r", "\t", "\x01", "`", "[", "{}", "~", "\x7f",
    "\xe2\x82\xac",                                 /* euro: GSM-7 extension */
    "\xc3\xa9", "\xc3\x84",                         /* GSM-7 accented */
    "\xc3\xa2",                                      /* a-circumflex: UCS-2 */
    "\xd0\xbf\xd1\x80\xd0\xb8",                     /* Cyrillic */
    "\xf0\x9f\x98\x80",                             /* emoji */
    "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",             /* emoji + skin tone */
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", /* ZWJ sequence */
    "\xe2\x80\x8d",                                 /* lone ZWJ */
    "\xf0\x9f\x87\xba",                             /* regional indicator */
    "\xcc\x81",                                      /* combining acute */
    "\xe0\xa4\x95\xe0\xa4\xbf",                     /* Devanagari + spacing mark */
    "\xe0\xa5\x8d",                                 /* virama (extend) */
    "\xea\xb0\x80", "\xe1\x84\x80", "\xe1\x85\xa1", /* Hangul LV, L, V */
    "\xd8\x80",                                      /* Arabic prepend */
    "\xe2\x80\x9c", "\xe2\x80\x94", "\xe2\x80\xa6", /* smart-encoded punctuation */
    "\xc2\xa0",                                      /* NBSP */
    "\xe2\x9d\xa4\xef\xb8\x8f",                     /* heart + VS16 */
};

static void test_differential_vs_reference(void **state)
{
    static char buf[4096];
    int ucs2 = 0;
    (void)state;

    for (int i = 0; i < 200000; i++) {
        size_t n = 0;
        unsigned parts = 1 + rnd(rnd(4) == 0 ? 200 : 40);
        for (unsigned k = 0; k < parts; k++) {
            const char *p;
            size_t l;
            if (rnd(6) == 0) {
                /* A long ASCII run, of a length near the segment sizes. */
                static const char letters[] = "The quick brown fox jumps over the lazy dog 0123456789.,!?";
                l = rnd(4) == 0 ? 60 + rnd(120) : 1 + rnd(20);
                if (n + l >= sizeof(buf))
                    break;
                for (size_t j = 0; j < l; j++)
                    buf[n++] = letters[rnd(sizeof(letters) - 1)];
                continue;
            }
            p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
            l = strlen(p);
            if (n + l >= sizeof(buf))
                break;
            memcpy(buf + n, p, l);
            n += l;
        }
        if (rnd(200) == 0 && n > 0)
            buf[rnd((unsigned)n)] = (char)(0x80 + rnd(128)); /* invalid UTF-8 now and then */
        for (unsigned flags = 0; flags <= SMS_SMART_ENCODING; flags += SMS_SMART_ENCODING) {
            sms_info_t a, b;
            int ra, rb;
            memset(&a, 0, sizeof(a));
            memset(&b, 0, sizeof(b));
            ra = sms_analyze(buf, n, flags, &a);
            rb = ref_sms_analyze(buf, n, flags, &b);
            assert_int_equal(ra, rb);
            if (ra != 0)
                continue;
            if (a.encoding != b.encoding || a.segments != b.segments || a.characters != b.characters ||
                a.units != b.units || a.code_points != b.code_points || a.over_limit != b.over_limit) {
                fprintf(stderr, "differs (flags %u) on [%.*s]: %u seg %zu chars %zu units, reference %u seg %zu chars %zu units\n",
                        flags, (int)n, buf, a.segments, a.characters, a.units, b.segments, b.characters, b.units);
                fail();
            }
            ucs2 += a.encoding == SMS_ENC_UCS2;
        }
    }
    printf("differential: 200000 random texts x 2 modes identical to the reference (%d UCS-2)\n", ucs2);
    assert_true(ucs2 > 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_smart_encode),
        cmocka_unit_test(test_smart_encode_errors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_null_empty),
        cmocka_unit_test(test_long_cluster),
        cmocka_unit_test(test_code_points),
        cmocka_unit_test(test_differential_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
