/*
 * Opening the provider secrets stored per org (see org_creds.h). Shared by the inbound
 * SMS webhook and the status callback (the org's auth token checks X-Twilio-Signature)
 * and by the scheduler (the org's account sends its messages).
 */
#include "app/org_creds.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

int org_creds_master_key(unsigned char key[CRYPTO_KEY_LEN])
{
    const char *v = getenv("HERALD_MASTER_KEY");

    if (!v || !*v)
        return 0;
    return crypto_key_parse(v, key) == 0 ? 1 : -1;
}

int org_secret_open(const unsigned char *key, const char *bytea_text, char *out, size_t outlen)
{
    unsigned char *raw;
    size_t rawlen, len;
    int rc = -1;

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    if (!key || !bytea_text || !*bytea_text)
        return -1;
    raw = PQunescapeBytea((const unsigned char *)bytea_text, &rawlen);
    if (!raw)
        return -1;
    /* crypto_open writes the plain text and a NUL: rawlen - overhead + 1 bytes. */
    if (rawlen >= CRYPTO_SEAL_OVERHEAD && rawlen - CRYPTO_SEAL_OVERHEAD < outlen &&
        crypto_open(key, raw, rawlen, out, &len) == 0) {
        out[len] = '\0';
        rc = 0;
    } else {
        out[0] = '\0';
    }
    memset(raw, 0, rawlen);
    PQfreemem(raw);
    return rc;
}

static unsigned char sched_key[CRYPTO_KEY_LEN];

static int sched_open(void *arg, const char *bytea_text, char *out, size_t outlen)
{
    return org_secret_open(arg, bytea_text, out, outlen);
}

void org_creds_sched_config(sched_config_t *cfg, const unsigned char *key)
{
    if (key) {
        memcpy(sched_key, key, sizeof(sched_key));
        cfg->open_secret_arg = sched_key;
    } else {
        cfg->open_secret_arg = NULL;
    }
    cfg->open_secret = sched_open;
}
