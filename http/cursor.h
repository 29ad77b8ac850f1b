/*
 * Opaque keyset-pagination cursors for list endpoints: a position (a sort key in
 * microseconds and a row id) encoded as URL-safe base64 of "c1:<key>:<id>". Clients
 * must treat it as opaque; decoding is strict so a forged or truncated cursor is a
 * 400, never a surprising page.
 */
#ifndef HERALD_HTTP_CURSOR_H
#define HERALD_HTTP_CURSOR_H
#include <stddef.h>
#include <stdint.h>

#define HTTP_CURSOR_EINVAL (-1)

/* Longest encoded cursor, with the NUL. */
#define HTTP_CURSOR_MAX 64

/* Encodes (key, id) into out (HTTP_CURSOR_MAX bytes). */
void http_cursor_encode(int64_t key, int64_t id, char out[HTTP_CURSOR_MAX]);

/* Decodes s into *key and *id. Returns 0, or HTTP_CURSOR_EINVAL for anything else. */
__attribute__((warn_unused_result)) int http_cursor_decode(const char *s, int64_t *key, int64_t *id);

#endif
