/*
 * application/x-www-form-urlencoded request bodies, encoded the way Twilio's helper
 * libraries encode them: ALPHA / DIGIT / "-" / "." / "_" / "~" kept, space as "+",
 * every other byte as %XX (uppercase hex). Repeated names (MediaUrl) are simply
 * added once per value.
 */
#ifndef HERALD_PROVIDER_FORM_H
#define HERALD_PROVIDER_FORM_H
#include "common/buf.h"

/*
 * Appends "name=value" (with a leading "&" unless b is empty), both encoded.
 * Returns 0, or BUF_ETOOBIG when b's cap would be exceeded (b is then unchanged).
 */
__attribute__((warn_unused_result)) int twilio_form_add(buf_t *b, const char *name, const char *value);

/* Appends the encoding of the n bytes at s to b. Returns 0 or BUF_ETOOBIG (b may hold a prefix). */
__attribute__((warn_unused_result)) int twilio_form_encode(buf_t *b, const char *s, size_t n);

#endif
