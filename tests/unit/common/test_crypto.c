/*
 * common/crypto and common/metrics: AES-256-GCM seal/open round trip, tamper and
 * wrong-key detection, master-key parsing (hex and base64), random tokens, SHA-256 /
 * HMAC-SHA256 against known vectors, and the Prometheus text of a small registry.
 */
#include "common/crypto.h"
#include "common/metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

static const char hexkey[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void test_key_parse(void **state)
{
    unsigned char k[32], k2[32];
    (void)state;
    assert_int_equal(crypto_key_parse(hexkey, k), 0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k[i], i);
    assert_int_equal(crypto_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", k2), 0);
    assert_memory_equal(k, k2, 32);
    assert_int_equal(crypto_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", k2), 0);
    assert_int_equal(crypto_key_parse("short", k2), CRYPTO_EINVAL);
    assert_int_equal(crypto_key_parse("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", k2),
                     CRYPTO_EINVAL);
    assert_int_equal(crypto_key_parse(NULL, k2), CRYPTO_EINVAL);
    /* The hex decoder under it. */
    assert_int_equal(crypto_unhex("0aFf10", 6, k2), 0);
    assert_int_equal(k2[0], 0x0a);
    assert_int_equal(k2[1], 0xff);
    assert_int_equal(k2[2], 0x10);
    assert_int_equal(crypto_unhex("0aF", 3, k2), CRYPTO_EINVAL);
    assert_int_equal(crypto_unhex("0g", 2, k2), CRYPTO_EINVAL);
    assert_int_equal(crypto_unhex("", 0, k2), 0);
}

static void test_seal_round_trip_and_tamper(void **state)
{
    unsigned char k[32], other[32], sealed[64 + CRYPTO_SEAL_OVERHEAD], sealed2[64 + CRYPTO_SEAL_OVERHEAD];
    const char *secret = "twilio-auth-token-0123456789";
    size_t len = strlen(secret), slen = len + CRYPTO_SEAL_OVERHEAD, outlen = 0;
    char out[128];
    (void)state;

    assert_int_equal(crypto_key_parse(hexkey, k), 0);
    assert_int_equal(crypto_seal(k, secret, len, sealed), 0);
    assert_int_equal(crypto_open(k, sealed, slen, out, &outlen), 0);
    assert_int_equal(outlen, len);
    assert_string_equal(out, secret);
    /* A fresh nonce each time: the same secret never seals to the same bytes. */
    assert_int_equal(crypto_seal(k, secret, len, sealed2), 0);
    assert_memory_not_equal(sealed, sealed2, slen);
    for (size_t i = 0; i + len <= slen; i++)
        assert_int_not_equal(memcmp(sealed + i, secret, len), 0);
    /* Every single bit flip is detected. */
    for (size_t i = 0; i < slen; i++)
        for (int bit = 0; bit < 8; bit++) {
            sealed[i] ^= (unsigned char)(1 << bit);
            assert_int_not_equal(crypto_open(k, sealed, slen, out, &outlen), 0);
            sealed[i] ^= (unsigned char)(1 << bit);
        }
    assert_int_equal(crypto_open(k, sealed, slen - 1, out, &outlen), CRYPTO_EAUTH);
    assert_int_equal(crypto_open(k, sealed, 5, out, &outlen), CRYPTO_EAUTH);
    memcpy(other, k, 32);
    other[31] ^= 1;
    assert_int_equal(crypto_open(other, sealed, slen, out, &outlen), CRYPTO_EAUTH);
    assert_int_equal(crypto_seal(k, "", 0, sealed), 0);
    assert_int_equal(crypto_open(k, sealed, CRYPTO_SEAL_OVERHEAD, out, &outlen), 0);
    assert_int_equal(outlen, 0);
    /* The same as hex text (stored secrets are written so). */
    {
        char *hex = crypto_seal_hex(k, secret, len);
        assert_non_null(hex);
        assert_int_equal(strlen(hex), 2 * slen);
        assert_int_equal(crypto_open_hex(k, hex, out, sizeof(out)), 0);
        assert_string_equal(out, secret);
        assert_int_equal(crypto_open_hex(other, hex, out, sizeof(out)), CRYPTO_EAUTH);
        assert_string_equal(out, "");
        free(hex);
    }
}

static void test_hashes_and_tokens(void **state)
{
    unsigned char d[32];
    char hex[65], tok[33], tok2[33];
    (void)state;
    crypto_sha256("abc", 3, d);
    crypto_hex(d, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* RFC 4231 test case 2. */
    crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    crypto_hex(d, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_int_equal(crypto_random_base62(tok, 32), 0);
    assert_int_equal(crypto_random_base62(tok2, 32), 0);
    assert_int_equal(strlen(tok), 32);
    assert_int_equal(strspn(tok, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), 32);
    assert_string_not_equal(tok, tok2);
    assert_true(crypto_equal("abc", "abc", 3));
    assert_false(crypto_equal("abc", "abd", 3));
}

static double seven(void *arg)
{
    (void)arg;
    return 7;
}

static void test_metrics(void **state)
{
    metrics_registry_t *r = metrics_new();
    buf_t out;
    const double b[] = {0.1, 1};
    metrics_counter_t *c1 = metrics_counter(r, "req_total", "Requests.", "code=\"200\"");
    metrics_counter_t *c2 = metrics_counter(r, "req_total", "Requests.", "code=\"500\"");
    metrics_histogram_t *h = metrics_histogram(r, "lat_seconds", "Latency.", "", b, 2);
    (void)state;

    assert_non_null(c1);
    assert_ptr_equal(c1, metrics_counter(r, "req_total", "Requests.", "code=\"200\""));
    assert_null(metrics_gauge(r, "req_total", "clash", ""));
    assert_null(metrics_counter(r, "bad name", "x", ""));
    assert_null(metrics_histogram(r, "lat_seconds", "Latency.", "", b, 1));
    metrics_counter_add(c1, 3);
    metrics_counter_add(c2, 1);
    metrics_gauge_set(metrics_gauge(r, "temp", "T.", ""), 1.5);
    assert_int_equal(metrics_gauge_fn(r, "seven", "S.", "", seven, NULL), 0);
    metrics_histogram_observe(h, 0.05);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 5);
    buf_init(&out, 1 << 16);
    assert_int_equal(metrics_render(r, &out), 0);
    assert_string_equal(buf_str(&out), "# HELP req_total Requests.\n# TYPE req_total counter\n"
                                       "req_total{code=\"200\"} 3\nreq_total{code=\"500\"} 1\n"
                                       "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
                                       "lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\n"
                                       "lat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 5.5499999999999998\n"
                                       "lat_seconds_count 3\n"
                                       "# HELP temp T.\n# TYPE temp gauge\ntemp 1.5\n"
                                       "# HELP seven S.\n# TYPE seven gauge\nseven 7\n");
    buf_close(&out);
    metrics_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_seal_round_trip_and_tamper),
        cmocka_unit_test(test_hashes_and_tokens),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
