/*
 * routing/secrets: trigger-automation secrets sealed for storage and opened for
 * rules_compile(): round trip, documents without secrets left alone, no key, another
 * key, altered values, the dry run's stand-in, and a user's file that carries
 * "secret_sealed" itself.
 */
#include "routing/routing.h"
#include "routing/secrets.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char doc[] =
    "{\"number\": \"+15005550006\", \"rules\": ["
    " {\"name\": \"a\", \"when\": {\"keywords\": [\"GO\"]}, \"continue\": true, \"actions\": ["
    "   {\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:9/a\", \"event\": \"e1\", \"secret\": \"s3cret-one\"},"
    "   {\"type\": \"add-tag\", \"tag\": \"secret\"}]},"
    " {\"name\": \"b\", \"when\": {\"any\": true}, \"actions\": ["
    "   {\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:9/b\", \"event\": \"e2\"},"
    "   {\"type\": \"trigger-automation\", \"url\": \"http://127.0.0.1:9/c\", \"event\": \"e3\", \"secret\": \"two\"}]}]}";

static unsigned char key[CRYPTO_KEY_LEN], other[CRYPTO_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < CRYPTO_KEY_LEN; i++) {
        key[i] = (unsigned char)i;
        other[i] = (unsigned char)(i + 1);
    }
    return 0;
}

/* The action at rules[r].actions[a] of a document's text. */
static json_t *action(json_t *root, size_t r, size_t a)
{
    return json_array_get(json_object_get(json_array_get(json_object_get(root, "rules"), r), "actions"), a);
}

/* Not inlined: GCC 12 at -O3 mistakes the pointer it returns for one to its local (-Wdangling-pointer). */
__attribute__((noinline)) static char *sealed_doc(void)
{
    char err[256], *out = NULL;
    int n = -1;
    assert_int_equal(rules_secrets_seal(doc, key, &out, &n, err, sizeof(err)), 0);
    assert_non_null(out);
    assert_int_equal(n, 2);
    return out;
}

static void test_seal_then_open(void **state)
{
    char err[256], *sealed = sealed_doc(), *opened = NULL;
    routing_ruleset_t *rs = NULL;
    routing_error_t rerr;
    json_t *root;
    (void)state;

    /* Stored: no clear secret anywhere, a sealed one where each secret was. */
    assert_null(strstr(sealed, "s3cret-one"));
    assert_null(strstr(sealed, "\"two\""));
    root = json_loads(sealed, 0, NULL);
    assert_non_null(root);
    assert_null(json_object_get(action(root, 0, 0), "secret"));
    assert_true(json_is_string(json_object_get(action(root, 0, 0), "secret_sealed")));
    assert_null(json_object_get(action(root, 1, 0), "secret_sealed")); /* had none */
    assert_true(json_is_string(json_object_get(action(root, 1, 1), "secret_sealed")));
    assert_string_equal(json_string_value(json_object_get(action(root, 0, 1), "tag")), "secret");
    json_decref(root);

    /* Opened: the secrets as they were, and a document rules_compile() takes. */
    assert_int_equal(rules_secrets_open(sealed, key, 0, &opened, err, sizeof(err)), 0);
    assert_non_null(opened);
    root = json_loads(opened, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(action(root, 0, 0), "secret")), "s3cret-one");
    assert_string_equal(json_string_value(json_object_get(action(root, 1, 1), "secret")), "two");
    assert_null(json_object_get(action(root, 1, 1), "secret_sealed"));
    json_decref(root);
    assert_int_equal(rules_compile(opened, strlen(opened), &rs, &rerr), 0);
    rules_unref(rs);

    /* Sealing twice gives another ciphertext (a fresh nonce); opening a clear one changes nothing. */
    {
        char *again = sealed_doc(), *same = (char *)1;
        assert_string_not_equal(again, sealed);
        assert_int_equal(rules_secrets_open(doc, key, 0, &same, err, sizeof(err)), 0);
        assert_null(same);
        free(again);
    }
    free(opened);
    free(sealed);
}

static void test_nothing_to_seal(void **state)
{
    static const char plain[] = "{\"number\": \"+15005550006\", \"rules\": [{\"name\": \"r\", \"when\": {\"any\": true},"
                                " \"actions\": [{\"type\": \"create-lead\"}]}]}";
    char err[256], *out = (char *)1;
    int n = -1;
    (void)state;

    assert_int_equal(rules_secrets_seal(plain, NULL, &out, &n, err, sizeof(err)), 0);
    assert_null(out);
    assert_int_equal(n, 0);
    /* Already sealed: nothing more to do, even without the key. */
    {
        char *sealed = sealed_doc();
        n = -1;
        assert_int_equal(rules_secrets_seal(sealed, NULL, &out, &n, err, sizeof(err)), 0);
        assert_null(out);
        assert_int_equal(n, 0);
        free(sealed);
    }
    assert_int_equal(rules_secrets_seal("not json", key, &out, &n, err, sizeof(err)), RULES_SECRETS_EDOC);
    assert_int_equal(rules_secrets_seal("[1]", key, &out, &n, err, sizeof(err)), RULES_SECRETS_EDOC);
}

static void test_no_key(void **state)
{
    char err[256], *out = NULL, *sealed = sealed_doc();
    int n;
    (void)state;

    assert_int_equal(rules_secrets_seal(doc, NULL, &out, &n, err, sizeof(err)), RULES_SECRETS_ENOKEY);
    assert_null(out);
    assert_non_null(strstr(err, "HERALD_MASTER_KEY"));
    assert_non_null(strstr(err, "rules[0].actions[0]"));
    assert_null(strstr(err, "s3cret"));

    assert_int_equal(rules_secrets_open(sealed, NULL, 0, &out, err, sizeof(err)), RULES_SECRETS_ENOKEY);
    assert_null(out);
    /* The dry run: a stand-in, so the action still reads as signed. */
    assert_int_equal(rules_secrets_open(sealed, NULL, 1, &out, err, sizeof(err)), 0);
    assert_non_null(strstr(out, "\"secret\":\"" RULES_SECRETS_STUB "\""));
    assert_null(strstr(out, "secret_sealed"));
    free(out);
    free(sealed);
}

static void test_other_key_and_altered(void **state)
{
    char err[256], *out = NULL, *sealed = sealed_doc(), plain[RULES_SECRET_MAX + 1];
    const char *p;
    size_t at;
    json_t *root;
    const char *hex;
    (void)state;

    assert_int_equal(rules_secrets_open(sealed, other, 0, &out, err, sizeof(err)), RULES_SECRETS_EOPEN);
    assert_null(out);
    assert_non_null(strstr(err, "rules[0].actions[0]"));

    root = json_loads(sealed, 0, NULL);
    hex = json_string_value(json_object_get(action(root, 0, 0), "secret_sealed"));
    assert_int_equal(crypto_open_hex(key, hex, plain, sizeof(plain)), 0);
    assert_string_equal(plain, "s3cret-one");
    assert_int_equal(crypto_open_hex(NULL, hex, plain, sizeof(plain)), CRYPTO_EINVAL);
    assert_string_equal(plain, "");
    {
        char *bad = strdup(hex);
        size_t n = strlen(bad);
        bad[n - 1] = bad[n - 1] == '0' ? '1' : '0'; /* a bit of the tag */
        assert_int_equal(crypto_open_hex(key, bad, plain, sizeof(plain)), CRYPTO_EAUTH);
        assert_string_equal(plain, "");
        bad[n - 1] = '\0'; /* odd length */
        assert_int_equal(crypto_open_hex(key, bad, plain, sizeof(plain)), CRYPTO_EINVAL);
        bad[0] = 'z';
        bad[n - 2] = '\0';
        assert_int_equal(crypto_open_hex(key, bad, plain, sizeof(plain)), CRYPTO_EINVAL);
        assert_int_equal(crypto_open_hex(key, "", plain, sizeof(plain)), CRYPTO_EAUTH);
        /* The plain text and its NUL must fit: "s3cret-one" needs 11 bytes. */
        assert_int_equal(crypto_open_hex(key, hex, plain, 10), CRYPTO_EINVAL);
        assert_int_equal(crypto_open_hex(key, hex, plain, 11), 0);
        free(bad);
    }
    json_decref(root);

    /* An altered value inside the document fails the whole open. */
    p = strstr(sealed, "\"secret_sealed\":\"");
    assert_non_null(p);
    at = (size_t)(p - sealed) + strlen("\"secret_sealed\":\"") + 10;
    sealed[at] = sealed[at] == 'a' ? 'b' : 'a';
    out = (char *)1;
    assert_int_equal(rules_secrets_open(sealed, key, 0, &out, err, sizeof(err)), RULES_SECRETS_EOPEN);
    assert_null(out);
    free(sealed);
}

/* A user's file may not bring its own sealed value: it is not a field of the format. */
static void test_compile_refuses_secret_sealed(void **state)
{
    char *sealed = sealed_doc();
    routing_ruleset_t *rs = NULL;
    routing_error_t rerr;
    (void)state;

    assert_int_equal(rules_compile(sealed, strlen(sealed), &rs, &rerr), ROUTING_EINVALID);
    assert_null(rs);
    assert_non_null(strstr(rerr.text, "secret_sealed"));
    free(sealed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_then_open),
        cmocka_unit_test(test_nothing_to_seal),
        cmocka_unit_test(test_no_key),
        cmocka_unit_test(test_other_key_and_altered),
        cmocka_unit_test(test_compile_refuses_secret_sealed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
