/*
 * buf_t: a growable byte buffer with a hard cap, in the manner of curl's dynbuf.
 * The caller owns the struct (init/close); the buffer owns its bytes.
 * Every append fails with BUF_ETOOBIG rather than grow past the cap, so sizes
 * driven by peer input stay bounded. Contents are always NUL-terminated.
 */
#ifndef HERALD_COMMON_BUF_H
#define HERALD_COMMON_BUF_H
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#define BUF_ETOOBIG (-1)

typedef struct buf {
    char *data;   /* NULL until the first append; free with buf_close() */
    size_t len;
    size_t cap;   /* allocated bytes */
    size_t limit; /* maximum len */
} buf_t;

void buf_init(buf_t *b, size_t limit);
void buf_close(buf_t *b);
void buf_reset(buf_t *b); /* len = 0, memory kept */
/* buf_append() when the bytes do not fit in the allocation yet (grows it, or refuses). */
__attribute__((warn_unused_result)) int buf_append_grow(buf_t *b, const void *p, size_t n);
/*
 * Appends n bytes. Inline for the common case, room already allocated: appends are
 * made a few bytes at a time on the request path (headers, JSON, responses).
 */
__attribute__((warn_unused_result)) static inline int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n <= b->limit - b->len && n < b->cap - b->len) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf_append_grow(b, p, n);
}
__attribute__((warn_unused_result)) int buf_puts(buf_t *b, const char *s);
__attribute__((warn_unused_result, format(printf, 2, 3))) int buf_printf(buf_t *b, const char *fmt, ...);
/* Returns the contents (never NULL; "" when empty). Borrowed: valid until the next append. */
const char *buf_str(const buf_t *b);
/* Hands the heap block to the caller (free with free()); the buffer is left empty. */
char *buf_take(buf_t *b, size_t *len);

#endif
