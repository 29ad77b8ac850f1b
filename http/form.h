/*
 * application/x-www-form-urlencoded and query-string parsing (WHATWG URL standard,
 * "application/x-www-form-urlencoded parsing"), strict about percent-encoding:
 * "+" and "%20" both decode to a space; "%" not followed by two hex digits is an
 * error rather than passed through, because a signature or a phone number must not
 * be guessed at. Repeated names are kept, in order. Field count and sizes are
 * capped so a peer cannot make the parser allocate without bound.
 */
#ifndef HERALD_HTTP_FORM_H
#define HERALD_HTTP_FORM_H
#include "http/arena.h"

#include <stddef.h>

#define HTTP_FORM_EPERCENT (-1) /* malformed percent-encoding */
#define HTTP_FORM_ETOOMANY (-2) /* more fields than max_fields */
#define HTTP_FORM_ETOOLONG (-3) /* a name or value longer than max_field_len, or the input too long */
#define HTTP_FORM_ENUL (-4)     /* a decoded name or value holds a NUL byte */

/* One decoded name=value pair; both strings are NUL-terminated and live in the caller's arena. */
typedef struct http_param {
    const char *name;
    const char *value;
    size_t name_len;
    size_t value_len;
} http_param_t;

typedef struct http_form {
    http_param_t *params; /* in input order; arena memory */
    size_t count;
} http_form_t;

typedef struct http_form_limits {
    size_t max_fields;    /* 0 means 256 */
    size_t max_field_len; /* decoded bytes per name or value; 0 means 64 KiB */
    size_t max_input;     /* total input bytes; 0 means 1 MiB */
} http_form_limits_t;

/* Where and why parsing failed. */
typedef struct http_form_error {
    size_t offset;      /* byte offset in the input */
    const char *reason; /* static string */
} http_form_error_t;

/*
 * Parses len bytes of a form body (or a query string without its "?") into *out,
 * allocating from arena. Empty pairs ("a=1&&b=2") are skipped; a pair without "="
 * has an empty value. lim may be NULL for the defaults. Returns 0 or an
 * HTTP_FORM_E* code with *err (may be NULL) filled; *out is then empty.
 */
__attribute__((warn_unused_result)) int http_form_parse(const char *data, size_t len,
                                                        const http_form_limits_t *lim, http_arena_t *arena,
                                                        http_form_t *out, http_form_error_t *err);

/* Returns the value of the first field called name, or NULL. */
const char *http_form_get(const http_form_t *f, const char *name);

/* Returns how many fields are called name. */
size_t http_form_count(const http_form_t *f, const char *name);

/*
 * Appends the form-encoding of s to dst (at most dstlen bytes incl. the NUL), spaces as
 * "+", unreserved characters kept. Returns the length written, or -1 if dst is too small.
 */
long http_form_encode(const char *s, char *dst, size_t dstlen);

/* Returns a static description of an HTTP_FORM_E* code. */
const char *http_form_strerror(int err);

#endif
