/*
 * Opt-out footer: makes a message body carry opt-out language ("Reply STOP to
 * opt out" unless the campaign configures its own text) when the campaign's
 * policy requires it, and reports what that costs in segments. Pure: no I/O.
 */
#ifndef HERALD_COMPLIANCE_FOOTER_H
#define HERALD_COMPLIANCE_FOOTER_H
#include "common/buf.h"
#include "compliance/segments.h"

#include <stddef.h>

#define FOOTER_DEFAULT_TEXT "Reply STOP to opt out"

/* A configured footer longer than this (bytes) is refused. */
#define FOOTER_MAX_TEXT 160

/*
 * The footer goes after the body on a new line; a body that already ends with a
 * line break, and an empty body, get no extra separator.
 */
#define FOOTER_SEPARATOR "\n"

/* Error codes (negative). */
#define FOOTER_EUTF8 (-1)   /* body or footer text is not valid UTF-8 */
#define FOOTER_ETOOBIG (-2) /* the output buffer's cap was reached */
#define FOOTER_EINVAL (-3)  /* empty or over-long footer text, or unknown policy */

/* When the campaign's messages must carry opt-out language. */
typedef enum footer_policy {
    FOOTER_POLICY_FIRST,  /* the first message to each contact */
    FOOTER_POLICY_ALWAYS, /* every message */
    FOOTER_POLICY_NEVER,  /* never added by Herald (the template must handle it) */
} footer_policy_t;

typedef struct footer_result {
    int required;              /* the policy asks for opt-out language on this message */
    int already_present;       /* the body already carries opt-out language */
    int appended;              /* the footer was appended */
    unsigned segments_before;  /* segments of the body as given */
    unsigned segments_after;   /* segments of the final body */
    unsigned added_segments;   /* segments_after - segments_before */
    sms_encoding_t encoding_before;
    sms_encoding_t encoding_after;
    int encoding_changed;      /* the footer turned GSM-7 into UCS-2 */
    int over_limit;            /* the final body exceeds SMS_MAX_UNITS */
} footer_result_t;

/*
 * Writes the final body into out (appending to what out holds) and fills *res.
 * body is NUL-terminated UTF-8; footer is the campaign's text, or NULL for
 * FOOTER_DEFAULT_TEXT. The footer is appended when the policy requires opt-out
 * language for this message (is_first_message selects FOOTER_POLICY_FIRST) and
 * footer_has_optout() finds none. sms_flags (0 or SMS_SMART_ENCODING) is passed
 * to sms_analyze() for the segment figures; the text itself is not re-encoded.
 * Returns 0, FOOTER_EUTF8, FOOTER_EINVAL or FOOTER_ETOOBIG (out may then hold a
 * partial body and *res is undefined).
 */
__attribute__((warn_unused_result)) int footer_apply(const char *body, const char *footer,
                                                     footer_policy_t policy, int is_first_message,
                                                     unsigned sms_flags, buf_t *out,
                                                     footer_result_t *res);

/*
 * Returns 1 when len bytes of body already carry opt-out language, else 0.
 * Case-insensitive; recognises the footer text itself (NULL: the default, with
 * runs of spaces and punctuation compared loosely) and common phrasings such as
 * "reply STOP", "text STOP to 12345", "txt STOP", "STOP to end", "STOP to opt
 * out", "to unsubscribe reply STOP" and "opt out: reply STOP", but not an
 * unrelated "stop" ("don't stop believing").
 */
int footer_has_optout(const char *body, size_t len, const char *footer);

/* Parses "first", "always" or "never". Returns 0, or FOOTER_EINVAL. */
__attribute__((warn_unused_result)) int footer_policy_parse(const char *name, footer_policy_t *out);

/* Returns "first", "always" or "never". */
const char *footer_policy_name(footer_policy_t policy);

/* Returns a static description of a FOOTER_E* code ("ok" for 0). */
const char *footer_strerror(int err);

#endif
