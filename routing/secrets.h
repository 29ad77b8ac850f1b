/*
 * Signing secrets of trigger-automation actions in stored rule-set documents.
 *
 * `herald rules load` stores a document with each action's "secret" replaced by
 * "secret_sealed": the secret sealed with AES-256-GCM under HERALD_MASTER_KEY
 * (common/crypto.h), written as lowercase hex. Whoever compiles a stored document opens
 * those again first (rules_secrets_open), so rules_compile() only ever sees "secret" and
 * a user's file may not carry "secret_sealed" itself (it is not a field of the format).
 * A document stored before sealing existed keeps its clear "secret" and still compiles;
 * rules_secrets_seal() on it is what `herald rules seal` stores in its place.
 *
 * Both functions parse the document with jansson and, when they change something, write
 * it again compact (key order kept). They never print a secret in err.
 */
#ifndef HERALD_ROUTING_SECRETS_H
#define HERALD_ROUTING_SECRETS_H
#include "common/crypto.h"

#include <stddef.h>

#define RULES_SECRETS_ENOKEY (-1)  /* a secret is there and no master key was given */
#define RULES_SECRETS_EOPEN (-2)   /* a sealed secret does not open under this key */
#define RULES_SECRETS_EDOC (-3)    /* not a JSON object with the rule-set layout, or out of memory */

#define RULES_SECRET_MAX 256 /* bytes of a secret (rules_compile() refuses longer ones) */
/* One "secret_sealed" value is a crypto_seal_hex() text: crypto_open_hex() opens it. */

/* Opening without the key (rules_secrets_open, key NULL): stand-in for each secret. */
#define RULES_SECRETS_STUB "(sealed)"

/*
 * Seals every clear trigger-automation "secret" of doc (NUL-terminated JSON). key NULL
 * means no master key is configured. On success returns 0 and stores in *sealed how
 * many were sealed, and in *out a new document (free()) or NULL when nothing changed.
 * On failure returns a RULES_SECRETS_E* code with a one-line reason in err.
 */
__attribute__((warn_unused_result)) int rules_secrets_seal(const char *doc, const unsigned char *key, char **out,
                                                           int *sealed, char *err, size_t errlen);

/*
 * Opens every "secret_sealed" of doc back into "secret", for rules_compile(). key NULL
 * with stub set writes RULES_SECRETS_STUB instead of each secret (a dry run that signs
 * nothing); key NULL without stub fails with RULES_SECRETS_ENOKEY. *out as above.
 */
__attribute__((warn_unused_result)) int rules_secrets_open(const char *doc, const unsigned char *key, int stub,
                                                           char **out, char *err, size_t errlen);

#endif
