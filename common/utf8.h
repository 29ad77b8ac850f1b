/* UTF-8 well-formedness (RFC 3629), shared by every module that checks peer text. */
#ifndef HERALD_COMMON_UTF8_H
#define HERALD_COMMON_UTF8_H
#include <stddef.h>

/*
 * Length of the sequence starting at s (avail bytes left, at least 1): 1 for any
 * ASCII byte (NUL included: callers that refuse NUL check it themselves), 2 to 4 for
 * a well-formed multi-byte sequence, 0 when the bytes there are not well-formed
 * (overlong forms, surrogates, code points above U+10FFFF, truncation).
 */
size_t utf8_seq(const unsigned char *s, size_t avail);

/* The length of the longest well-formed UTF-8 prefix of s[0..n) (NUL bytes count as ASCII). */
size_t utf8_valid_prefix(const char *s, size_t n);
/* Whether s[0..n) is well-formed UTF-8 throughout: utf8_valid_prefix(s, n) == n. */
int utf8_valid(const char *s, size_t n);

#endif
