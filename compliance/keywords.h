/*
 * Carrier keywords and free-text consent revocations in inbound SMS bodies.
 *
 * Two separate answers for one message:
 *  - cls: the carrier keyword (STOP, START, HELP and friends) when the whole
 *    message, trimmed of ASCII and Unicode white space, is exactly that word in
 *    any case. This is what carriers and Twilio act on.
 *  - revocation: whether the message revokes consent by "any reasonable means"
 *    (FCC 2024 TCPA consent-revocation order), e.g. "Stop.", "STOP please",
 *    "please stop texting me", "remove me", "take me off your list". An exact
 *    opt-out keyword is a revocation too.
 * Pure and allocation-free; any byte sequence (invalid UTF-8, NULs) is accepted.
 */
#ifndef HERALD_COMPLIANCE_KEYWORDS_H
#define HERALD_COMPLIANCE_KEYWORDS_H
#include <stddef.h>

/* Bodies longer than this are only checked for the exact carrier keywords (which they cannot be). */
#define KEYWORDS_MAX_SCAN 2048

typedef enum kw_class {
    KW_NONE = 0,
    KW_OPT_OUT,
    KW_OPT_IN,
    KW_HELP,
} kw_class_t;

typedef struct kw_result {
    kw_class_t cls; /* carrier keyword class; KW_NONE unless the whole message is the keyword */
    int revocation; /* 1 when the message revokes consent (always 1 when cls == KW_OPT_OUT) */
    /*
     * Upper-case keyword that matched: the carrier keyword when cls != KW_NONE, or the
     * opt-out keyword that led a free-text revocation ("STOP" for "Stop."); "" otherwise.
     */
    char keyword[16];
    /* Static string naming the rule that decided, e.g. "keyword", "phrase:remove me"; never NULL. */
    const char *rule;
} kw_result_t;

/*
 * Classifies body[0..len) and fills *out. body need not be NUL-terminated and may hold
 * any bytes; only the first KEYWORDS_MAX_SCAN bytes are scanned for revocation phrases.
 */
void keywords_classify(const char *body, size_t len, kw_result_t *out);

/* Returns "none", "opt-out", "opt-in" or "help" (static strings). */
const char *keywords_class_name(kw_class_t cls);

#endif
