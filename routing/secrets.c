/*
 * Sealing and opening the trigger-automation secrets of stored rule sets (secrets.h).
 */
#include "routing/secrets.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

typedef int (*action_fn)(json_t *action, const char *where, void *arg, char *err, size_t errlen);

/*
 * Calls fn for each trigger-automation action of the document's rules; *changed counts
 * the calls that returned 1. Returns 0 or the first error fn returned.
 */
static int each_automation(json_t *root, action_fn fn, void *arg, int *changed, char *err, size_t errlen)
{
    json_t *rules = json_object_get(root, "rules");
    size_t i, k;
    json_t *rule, *action;

    if (!json_is_object(root))
        return fail(err, errlen, RULES_SECRETS_EDOC, "the rule set is not a JSON object");
    json_array_foreach(rules, i, rule) {
        json_array_foreach(json_object_get(rule, "actions"), k, action) {
            const char *type = json_string_value(json_object_get(action, "type"));
            char where[64];
            int rc;
            if (!type || strcmp(type, "trigger-automation") != 0)
                continue;
            snprintf(where, sizeof(where), "rules[%zu].actions[%zu]", i, k);
            rc = fn(action, where, arg, err, errlen);
            if (rc < 0)
                return rc;
            *changed += rc;
        }
    }
    return 0;
}

static int seal_one(json_t *action, const char *where, void *arg, char *err, size_t errlen)
{
    const unsigned char *key = arg;
    json_t *secret = json_object_get(action, "secret");
    char *hex;

    if (!json_is_string(secret))
        return 0;
    if (!key)
        return fail(err, errlen, RULES_SECRETS_ENOKEY,
                    "%s: HERALD_MASTER_KEY is not set: refusing to store a trigger-automation secret in clear "
                    "(set it to 32 random bytes as 64 hex digits or base64)",
                    where);
    hex = json_string_length(secret) > RULES_SECRET_MAX
              ? NULL
              : crypto_seal_hex(key, json_string_value(secret), json_string_length(secret));
    if (!hex)
        return fail(err, errlen, RULES_SECRETS_EDOC, "%s: the secret could not be sealed", where);
    if (json_object_set_new(action, "secret_sealed", json_string(hex)) != 0 || json_object_del(action, "secret") != 0) {
        free(hex);
        return fail(err, errlen, RULES_SECRETS_EDOC, "%s: out of memory", where);
    }
    free(hex);
    return 1;
}

typedef struct open_arg {
    const unsigned char *key;
    int stub;
} open_arg_t;

static int open_one(json_t *action, const char *where, void *arg, char *err, size_t errlen)
{
    const open_arg_t *o = arg;
    json_t *sealed = json_object_get(action, "secret_sealed");
    char plain[RULES_SECRET_MAX + 1];
    int rc;

    if (!sealed)
        return 0;
    if (!json_is_string(sealed))
        return fail(err, errlen, RULES_SECRETS_EDOC, "%s: \"secret_sealed\" is not a string", where);
    if (!o->key && !o->stub)
        return fail(err, errlen, RULES_SECRETS_ENOKEY,
                    "%s: the trigger-automation secret is sealed and HERALD_MASTER_KEY is not set", where);
    if (o->key && crypto_open_hex(o->key, json_string_value(sealed), plain, sizeof(plain)) != 0)
        return fail(err, errlen, RULES_SECRETS_EOPEN,
                    "%s: the trigger-automation secret does not open under HERALD_MASTER_KEY "
                    "(sealed under another key, or altered)",
                    where);
    rc = json_object_set_new(action, "secret", json_string(o->key ? plain : RULES_SECRETS_STUB));
    memset(plain, 0, sizeof(plain));
    if (rc != 0 || json_object_del(action, "secret_sealed") != 0)
        return fail(err, errlen, RULES_SECRETS_EDOC, "%s: out of memory", where);
    return 1;
}

/* Parses doc, runs fn over its automations and writes it again when one changed. */
static int rewrite(const char *doc, action_fn fn, void *arg, char **out, int *changed, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    *out = NULL;
    *changed = 0;
    root = json_loads(doc, 0, &jerr);
    if (!root)
        return fail(err, errlen, RULES_SECRETS_EDOC, "the rule set is not JSON: %s", jerr.text);
    rc = each_automation(root, fn, arg, changed, err, errlen);
    if (rc == 0 && *changed) {
        *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*out)
            rc = fail(err, errlen, RULES_SECRETS_EDOC, "out of memory");
    }
    json_decref(root);
    return rc;
}

int rules_secrets_seal(const char *doc, const unsigned char *key, char **out, int *sealed, char *err, size_t errlen)
{
    return rewrite(doc, seal_one, (void *)key, out, sealed, err, errlen);
}

int rules_secrets_open(const char *doc, const unsigned char *key, int stub, char **out, char *err, size_t errlen)
{
    open_arg_t o = {key, stub};
    int changed;

    return rewrite(doc, open_one, &o, out, &changed, err, errlen);
}
