/*
 * Unit tests for provider/signature and provider/form: every reference vector of
 * tests/data/twilio-signature-vectors.tsv (compute and validate), the port variants,
 * JSON bodies, tampering, and the form encoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "provider/form.h"
#include "provider/signature.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "12345"
#define JSON_BODY "{\"property\": \"value\", \"boolean\": true}"
#define MAX_PARAMS 16

static const twilio_param_t P[] = {
    {"CallSid", "CA1234567890ABCDE"}, {"Caller", "+14158675309"}, {"Digits", "1234"},
    {"From", "+14158675309"},         {"To", "+18005551212"},
};

typedef struct vector {
    int line;
    char url[512];
    char sig[64];
    char pbuf[512]; /* storage for parsed name=value pairs */
    twilio_param_t params[MAX_PARAMS];
    size_t nparams;
} vector_t;

/* Parses the params column: "P", "(none)", or space-separated name=value pairs. */
static void parse_params(vector_t *v, const char *col)
{
    char *save = NULL, *tok;

    if (strcmp(col, "P") == 0) {
        memcpy(v->params, P, sizeof(P));
        v->nparams = sizeof(P) / sizeof(P[0]);
        return;
    }
    v->nparams = 0;
    if (strcmp(col, "(none)") == 0)
        return;
    snprintf(v->pbuf, sizeof(v->pbuf), "%s", col);
    for (tok = strtok_r(v->pbuf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        assert_true(v->nparams < MAX_PARAMS);
        *eq = '\0';
        v->params[v->nparams].name = tok;
        v->params[v->nparams].value = eq + 1;
        v->nparams++;
    }
}

#define MAX_VECTORS 64
static vector_t vectors[MAX_VECTORS];

static vector_t *load_vectors(size_t *count)
{
    char line[2048];
    FILE *f = fopen(HERALD_TEST_DATA_DIR "/twilio-signature-vectors.tsv", "r");
    vector_t *vs = vectors;
    size_t n = 0;
    int lineno = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char *url, *params, *sig, *save = NULL;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0' || strncmp(line, "url\t", 4) == 0)
            continue;
        url = strtok_r(line, "\t", &save);
        params = strtok_r(NULL, "\t", &save);
        sig = strtok_r(NULL, "\t", &save);
        assert_non_null(sig);
        assert_true(n < MAX_VECTORS);
        vs[n].line = lineno;
        snprintf(vs[n].url, sizeof(vs[n].url), "%s", url);
        snprintf(vs[n].sig, sizeof(vs[n].sig), "%s", sig);
        parse_params(&vs[n], params);
        n++;
    }
    fclose(f);
    *count = n;
    return vs;
}

static void test_vectors(void **state)
{
    size_t n = 0;
    vector_t *vs = load_vectors(&n);
    int json = 0;
    (void)state;

    assert_true(n >= 11);
    for (size_t i = 0; i < n; i++) {
        char out[29];
        vector_t *v = &vs[i];
        int rc = twilio_signature_compute(TOKEN, v->url, v->params, v->nparams, out);
        if (rc != 0 || strcmp(out, v->sig) != 0)
            fail_msg("line %d: computed %s, expected %s (rc %d)", v->line, out, v->sig, rc);
        if (strstr(v->url, "bodySHA256=") != NULL) {
            json++;
            assert_int_equal(twilio_signature_validate_json(TOKEN, v->url, JSON_BODY, strlen(JSON_BODY), v->sig), 0);
            assert_int_equal(twilio_signature_validate_json(TOKEN, v->url, JSON_BODY " ", strlen(JSON_BODY) + 1,
                                                            v->sig),
                             TWILIO_SIG_EBODYHASH);
        } else {
            assert_int_equal(twilio_signature_validate_form(TOKEN, v->url, v->params, v->nparams, v->sig), 0);
        }
        assert_int_equal(twilio_signature_validate_form("54321", v->url, v->params, v->nparams, v->sig),
                         TWILIO_SIG_EMISMATCH);
    }
    assert_int_equal(json, 2);
}

/* Parameter order in the request must not matter; repeated identical pairs count once. */
static void test_order_and_duplicates(void **state)
{
    const char *url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    twilio_param_t a[] = {{"Digits", "1234"}, {"SidAccount", "AC123"}, {"Digits", "5678"}, {"Sid", "CA123"}};
    twilio_param_t b[] = {{"Digits", "5678"}, {"Digits", "1234"}, {"Sid", "CA123"}, {"SidAccount", "AC123"},
                          {"Digits", "1234"}};
    char x[29], y[29];
    (void)state;

    assert_int_equal(twilio_signature_compute(TOKEN, url, a, 4, x), 0);
    assert_int_equal(twilio_signature_compute(TOKEN, url, b, 5, y), 0);
    assert_string_equal(x, y);
    assert_string_equal(x, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
}

typedef struct port_case {
    const char *signed_url;   /* what Twilio signed */
    const char *received_url; /* what herald reconstructs */
    int expect;
} port_case_t;

static void test_port_variants(void **state)
{
    static const port_case_t cases[] = {
        {"https://mycompany.com/myapp.php?foo=1&bar=2", "https://mycompany.com:443/myapp.php?foo=1&bar=2", 0},
        {"https://mycompany.com:443/myapp.php?foo=1&bar=2", "https://mycompany.com/myapp.php?foo=1&bar=2", 0},
        {"http://mycompany.com/myapp.php?foo=1&bar=2", "http://mycompany.com:80/myapp.php?foo=1&bar=2", 0},
        {"http://mycompany.com:80/myapp.php?foo=1&bar=2", "http://mycompany.com/myapp.php?foo=1&bar=2", 0},
        {"https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
         "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2", 0},
        {"https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
         "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", 0},
        {"https://mycompany.com/a", "https://mycompany.com:443/a", 0},
        {"https://mycompany.com", "https://mycompany.com:443", 0},
        {"http://[::1]/hook", "http://[::1]:80/hook", 0},
        {"http://mycompany.com:1234/myapp.php?foo=1&bar=2", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", 0},
        /* :443 is not http's default port; the port-less form does not get :443. */
        {"http://mycompany.com:443/x", "http://mycompany.com/x", TWILIO_SIG_EMISMATCH},
        {"https://mycompany.com/myapp.php", "https://mycompany.com/myapp.php?x=1", TWILIO_SIG_EMISMATCH},
        {"https://mycompany.com/myapp.php", "https://evil.com/myapp.php", TWILIO_SIG_EMISMATCH},
        {"https://mycompany.com:443/a", "https://mycompany.com:8443/a", TWILIO_SIG_EMISMATCH},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sig[29];
        assert_int_equal(twilio_signature_compute(TOKEN, cases[i].signed_url, P, 5, sig), 0);
        int rc = twilio_signature_validate_form(TOKEN, cases[i].received_url, P, 5, sig);
        if (rc != cases[i].expect)
            fail_msg("case %zu (%s): got %d", i, cases[i].received_url, rc);
    }
}

static void test_bad_input(void **state)
{
    const char *url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const char *good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const char *jurl = "https://mycompany.com/myapp.php?bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    char out[29];
    twilio_param_t bad = {"x", NULL};
    (void)state;

    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, good), 0);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, NULL), TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, ""), TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, "RSOYDt4T1cUTdK1PDd93/VVr8B8"),
                     TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, "RSOYDt4T1cUTdK1PDd93/VVr8B8=="),
                     TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 5, "rSOYDt4T1cUTdK1PDd93/VVr8B8="),
                     TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, url, P, 4, good), TWILIO_SIG_EMISMATCH);
    assert_int_equal(twilio_signature_validate_form(TOKEN, "mycompany.com/x", P, 5, good), TWILIO_SIG_EINVAL);
    assert_int_equal(twilio_signature_validate_form(TOKEN, "https:///x", P, 5, good), TWILIO_SIG_EINVAL);
    assert_int_equal(twilio_signature_validate_form(NULL, url, P, 5, good), TWILIO_SIG_EINVAL);
    assert_int_equal(twilio_signature_compute(TOKEN, url, &bad, 1, out), TWILIO_SIG_EINVAL);
    assert_int_equal(twilio_signature_compute(TOKEN, url, NULL, 1, out), TWILIO_SIG_EINVAL);
    assert_int_equal(twilio_signature_compute(TOKEN, url, NULL, 0, out), 0);

    /* JSON: uppercase hex is accepted; a missing or short hash is not. */
    assert_int_equal(twilio_signature_compute(TOKEN, jurl, NULL, 0, out), 0);
    assert_int_equal(twilio_signature_validate_json(TOKEN, jurl, JSON_BODY, strlen(JSON_BODY), out), 0);
    assert_int_equal(twilio_signature_compute(TOKEN, "https://h/p?a=1", NULL, 0, out), 0);
    assert_int_equal(twilio_signature_validate_json(TOKEN, "https://h/p?a=1", JSON_BODY, strlen(JSON_BODY), out),
                     TWILIO_SIG_EBODYHASH);
    assert_int_equal(twilio_signature_compute(TOKEN, "https://h/p?bodySHA256=0a1f", NULL, 0, out), 0);
    assert_int_equal(
        twilio_signature_validate_json(TOKEN, "https://h/p?bodySHA256=0a1f", JSON_BODY, strlen(JSON_BODY), out),
        TWILIO_SIG_EBODYHASH);
    const char *upper = "https://h/p?x=1&bodySHA256=0A1FF7634D9AB3B95DB5C9A2DFE9416E41502B283A80C7CF19632632F96E6620#f";
    assert_int_equal(twilio_signature_compute(TOKEN, upper, NULL, 0, out), 0);
    assert_int_equal(twilio_signature_validate_json(TOKEN, upper, JSON_BODY, strlen(JSON_BODY), out), 0);
    assert_string_equal(twilio_signature_strerror(TWILIO_SIG_EMISMATCH), "signature mismatch");
}

static void test_form_encode(void **state)
{
    buf_t b;
    (void)state;

    buf_init(&b, 1 << 16);
    assert_int_equal(twilio_form_add(&b, "To", "+14155550100"), 0);
    assert_int_equal(twilio_form_add(&b, "Body", "It's 50% off & free ~ now! é"), 0);
    assert_int_equal(twilio_form_add(&b, "MediaUrl", "https://x.test/a?b=c"), 0);
    assert_int_equal(twilio_form_add(&b, "MediaUrl", ""), 0);
    assert_string_equal(buf_str(&b), "To=%2B14155550100&Body=It%27s+50%25+off+%26+free+~+now%21+%C3%A9"
                                     "&MediaUrl=https%3A%2F%2Fx.test%2Fa%3Fb%3Dc&MediaUrl=");
    buf_close(&b);

    /* A field that would pass the cap is refused whole. */
    buf_init(&b, 16);
    assert_int_equal(twilio_form_add(&b, "A", "b"), 0);
    assert_int_equal(twilio_form_add(&b, "Body", "0123456789"), BUF_ETOOBIG);
    assert_string_equal(buf_str(&b), "A=b");
    buf_close(&b);

    /* Long inputs cross the encoder's internal chunking. */
    char big[1000];
    memset(big, '/', sizeof(big));
    buf_init(&b, 1 << 16);
    assert_int_equal(twilio_form_encode(&b, big, sizeof(big)), 0);
    assert_int_equal(b.len, 3000);
    assert_memory_equal(b.data + 2997, "%2F", 3);
    buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),       cmocka_unit_test(test_order_and_duplicates),
        cmocka_unit_test(test_port_variants), cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_form_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
