/*
 * Keyset cursors (see cursor.h): base64url without padding over a short versioned
 * text, so a cursor survives any query-string handling and a future format can be
 * told apart from this one.
 */
#include "http/cursor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64val(int c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

void http_cursor_encode(int64_t key, int64_t id, char out[HTTP_CURSOR_MAX])
{
    char raw[48];
    int n = snprintf(raw, sizeof(raw), "c1:%" PRId64 ":%" PRId64, key, id);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    for (int i = 0; i < n; i++) {
        acc = (acc << 8) | (unsigned char)raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

static int parse_i64(const char *s, const char *end, int64_t *out)
{
    char tmp[24];
    char *e;
    size_t n = (size_t)(end - s);

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return -1;
    errno = 0;
    *out = strtoll(tmp, &e, 10);
    return errno || *e ? -1 : 0;
}

int http_cursor_decode(const char *s, int64_t *key, int64_t *id)
{
    char raw[48];
    size_t o = 0, len;
    unsigned acc = 0;
    int bits = 0;
    const char *c1, *c2;

    if (!s)
        return HTTP_CURSOR_EINVAL;
    len = strlen(s);
    if (len == 0 || len >= HTTP_CURSOR_MAX || len % 4 == 1)
        return HTTP_CURSOR_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            return HTTP_CURSOR_EINVAL;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= sizeof(raw) - 1)
                return HTTP_CURSOR_EINVAL;
            raw[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    /* Leftover bits must be zero, so each cursor has exactly one spelling. */
    if (acc & ((1u << bits) - 1))
        return HTTP_CURSOR_EINVAL;
    raw[o] = '\0';
    if (strlen(raw) != o || strncmp(raw, "c1:", 3) != 0)
        return HTTP_CURSOR_EINVAL;
    c1 = raw + 3;
    c2 = strchr(c1, ':');
    if (!c2 || parse_i64(c1, c2, key) != 0 || parse_i64(c2 + 1, raw + o, id) != 0)
        return HTTP_CURSOR_EINVAL;
    return 0;
}
