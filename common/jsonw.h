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

/* Appends s[0..n) as a quoted JSON string. Returns 0, BUF_ETOOBIG or JSONW_EUTF8. */
__attribute__((warn_unused_result)) int jsonw_string(buf_t *b, const char *s, size_t n);
/* The same for text the caller has checked with utf8_valid() (common/utf8.h). Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int jsonw_string_utf8(buf_t *b, const char *s, size_t n);
/* Appends v as a JSON integer (what jansson writes for json_integer(v)). Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int jsonw_int(buf_t *b, long long v);

/*
 * The members of an object being written into b, as json_object_set_new() would make
 * them: first says no member is there yet (a comma goes before every other one), and
 * errors (BUF_ETOOBIG) accumulate in rc. Keys are literals: they are not escaped.
 */
typedef struct jsonw_obj {
    buf_t *b;
    int first;
    int rc;
} jsonw_obj_t;

/* "key": */
void jsonw_key(jsonw_obj_t *w, const char *key);
/* A string member; none for NULL or for text that is not UTF-8 (which jansson refuses). */
void jsonw_member_strn(jsonw_obj_t *w, const char *key, const char *v, size_t n);
void jsonw_member_str(jsonw_obj_t *w, const char *key, const char *v);
/* An integer member. */
void jsonw_member_int(jsonw_obj_t *w, const char *key, long long v);

#endif
