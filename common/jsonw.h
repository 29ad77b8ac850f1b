/*
 * Writing JSON text straight into a buf_t, for documents built on a hot path where a
 * jansson tree (an allocation per value, then json_dumps()) cost more than the rest
 * of the work. The text is what json_dumps(..., JSON_COMPACT) writes for the same
 * values: the same escapes (\" \\ \b \f \n \r \t, other control characters \u00XX,
 * everything else as is) and, like jansson, strings must be well-formed UTF-8.
 */
#ifndef HERALD_COMMON_JSONW_H
#define HERALD_COMMON_JSONW_H
#include "common/buf.h"

#include <stddef.h>

#define JSONW_EUTF8 (-2) /* the string is not well-formed UTF-8; nothing was appended */

/* Whether s[0..n) is well-formed UTF-8 (what jansson accepts in a string). */
int jsonw_utf8_ok(const char *s, size_t n);
/* Appends s[0..n) as a quoted JSON string. Returns 0, BUF_ETOOBIG or JSONW_EUTF8. */
__attribute__((warn_unused_result)) int jsonw_string(buf_t *b, const char *s, size_t n);
/* The same for text the caller has checked with jsonw_utf8_ok(). Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int jsonw_string_utf8(buf_t *b, const char *s, size_t n);
/* Appends v as a JSON integer (what jansson writes for json_integer(v)). Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int jsonw_int(buf_t *b, long long v);

#endif
