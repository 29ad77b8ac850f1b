/*
 * Org provider credentials: the one place that opens the secrets stored in table orgs
 * (twilio_auth_token_enc, twilio_api_secret_enc: AES-256-GCM under HERALD_MASTER_KEY,
 * see common/crypto.h) for the webhook signature checks of `herald serve` and for the
 * scheduler, which sends each org's messages under its own Twilio account.
 */
#ifndef HERALD_APP_ORG_CREDS_H
#define HERALD_APP_ORG_CREDS_H
#include "common/crypto.h"
#include "scheduler/scheduler.h"

#include <stddef.h>

/*
 * Reads HERALD_MASTER_KEY into key. Returns 1 when it was set and valid, 0 when unset,
 * -1 when set but malformed (not 32 bytes as 64 hex digits or base64).
 */
int org_creds_master_key(unsigned char key[CRYPTO_KEY_LEN]);

/*
 * Opens one sealed secret as Postgres returns a bytea column in text format ("\x..."
 * hex, as PQgetvalue() gives it) into out (outlen bytes, NUL-terminated). key NULL
 * means no master key is configured. Returns 0, or -1 with out set to "" (no key,
 * malformed or tampered value, another key, or a secret longer than outlen - 1).
 */
__attribute__((warn_unused_result)) int org_secret_open(const unsigned char *key, const char *bytea_text,
                                                        char *out, size_t outlen);

/*
 * Lets the scheduler open the sealed org secrets with key (copied into static storage;
 * NULL: no key, and orgs with sealed secrets cannot send). Sets cfg->open_secret.
 */
void org_creds_sched_config(sched_config_t *cfg, const unsigned char *key);

#endif
